"""What every stage function is handed: the settings, the database, the dispatcher, the interpreter.

    ctx = PipelineContext.create(settings)        # in each process's entry point
    with ctx.session() as session: ...            # one transaction (commits at the end)
    ctx.interpreter()                             # loaded on first use, then kept
    ctx.leases                                    # this process's leases and their heartbeat (worker/leases.py)

A process builds one context from `Settings()` at its edge (the CLI command, or the first
task a Celery worker process runs) and passes it down; stage functions never read the
environment. The interpreter is loaded once per process and kept, because loading a
model takes seconds to minutes and the GPU worker runs for days.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from reports import store
from reports.hl7_oru import HL7Endpoints
from worker.dispatch import CeleryDispatcher, Dispatcher, InProcessDispatcher
from worker.settings import Settings

if TYPE_CHECKING:
    from ingest.interpretation import Interpreter
    from worker.leases import LeaseKeeper


@dataclass
class PipelineContext:
    settings: Settings
    engine: sa.Engine
    dispatcher: Dispatcher
    _interpreter: Interpreter | None = field(default=None, repr=False)
    _leases: LeaseKeeper | None = field(default=None, repr=False)

    @classmethod
    def create(cls, settings: Settings, *, dispatcher: Dispatcher | None = None) -> PipelineContext:
        """A context for this process: Celery/Redis when `redis_url` is set, else in-process.

        Folders are made absolute here, so the paths stored in the database (the archive)
        mean the same to every process whatever its working directory.
        """
        settings = settings.model_copy(update={
            "data_dir": settings.data_dir.resolve(),
            "inbox_dirs": [folder.resolve() for folder in settings.inbox_dirs],
        })
        for folder in (settings.data_dir, settings.archive_dir, settings.quarantine_dir,
                       settings.outbound_dir):
            folder.mkdir(parents=True, exist_ok=True)
        engine = store.make_engine(settings.effective_database_url)
        if dispatcher is None:
            dispatcher = make_dispatcher(settings)
        return cls(settings=settings, engine=engine, dispatcher=dispatcher)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with store.session_scope(self.engine) as session:
            yield session

    def interpreter(self) -> Interpreter:
        """The configured interpreter, loaded on the first call and kept for the process."""
        if self._interpreter is None:
            from worker.interpreters import load_interpreter

            self._interpreter = load_interpreter(self.settings)
        return self._interpreter

    @property
    def leases(self) -> LeaseKeeper:
        """This process's lease holder and heartbeat, made on first use (after any fork)."""
        if self._leases is None:
            from worker.leases import LeaseKeeper

            self._leases = LeaseKeeper(self.engine, lease_seconds=self.settings.lease_seconds,
                                       heartbeat_seconds=self.settings.heartbeat_seconds)
        return self._leases

    @property
    def endpoints(self) -> HL7Endpoints:
        return HL7Endpoints(sending_facility=self.settings.sending_facility,
                            receiving_facility=self.settings.receiving_facility)

    @property
    def in_process(self) -> bool:
        return isinstance(self.dispatcher, InProcessDispatcher)

    def close(self) -> None:
        if self._leases is not None:
            self._leases.close()
        self.engine.dispose()


def make_dispatcher(settings: Settings) -> Dispatcher:
    if not settings.redis_url:
        return InProcessDispatcher()
    import redis

    from worker.celery_app import make_celery

    return CeleryDispatcher(make_celery(settings), redis.Redis.from_url(settings.redis_url),
                            prepare_batch_size=settings.prepare_batch_size,
                            report_batch_size=settings.report_batch_size)


_process_context: dict[int, PipelineContext] = {}


def process_context() -> PipelineContext:
    """The context of this worker process, made from the environment on first use.

    Keyed by process id: a prefork child must not reuse database connections made by its
    parent before the fork.
    """
    pid = os.getpid()
    if pid not in _process_context:
        _process_context[pid] = PipelineContext.create(Settings())
    return _process_context[pid]
