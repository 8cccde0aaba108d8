"""Real pipeline processes for the service tests: `ecg-worklist worker` / `watch` as subprocesses
on the real Postgres and Redis, their logs, and polling the database with a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reports import store
from worker.settings import Settings

ECG_WORKLIST = Path(sys.executable).parent / "ecg-worklist"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker and its pool children)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signum)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


@dataclass
class Pipeline:
    """Settings shared by the test and its subprocesses, and the subprocesses themselves."""

    root: Path
    database_url: str
    redis_url: str
    values: dict[str, Any] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = {
            "database_url": self.database_url, "redis_url": self.redis_url, "data_dir": self.root / "var",
            "inbox_dirs": [self.root / "inbox"], "stable_seconds": 0.3, "poll_seconds": 0.2,
            # Only the tests that are about the reconciler run it, explicitly.
            "reconcile_every_seconds": 3600.0, "interpret_batch_size": 8, **self.values,
        }
        store.upgrade(self.database_url)
        self.engine = store.make_engine(self.database_url)

    def settings(self, **overrides: Any) -> Settings:
        return Settings(**{**self.values, **overrides})

    def env(self, **overrides: Any) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ECGWL_")}
        for key, value in {**self.values, **overrides}.items():
            if isinstance(value, list):
                value = json.dumps([str(item) for item in value])
            env[f"ECGWL_{key.upper()}"] = str(value)
        return env

    def start(self, name: str, *args: str, **overrides: Any) -> Process:
        log = self.root / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen([str(ECG_WORKLIST), *args], env=self.env(**overrides), stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)
        handle.close()
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            for process in self.processes:
                if process.popen.poll() not in (None, 0, -signal.SIGKILL, -signal.SIGTERM):
                    raise AssertionError(f"{process.name} exited early\n{process.tail()}")
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                             + "\n".join(process.tail() for process in self.processes))

    def states(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT state FROM studies ORDER BY id")).scalars())

    def close(self) -> None:
        for process in self.processes:
            process.kill(signal.SIGKILL)
        self.engine.dispose()
