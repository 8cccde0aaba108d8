"""CPU per study through the worklist against the stage work alone, on real recordings, interleaved.

The same N distinct real ECGs (`benchmarks/mix.py`: DICOM at 1000 Hz, WFDB at 250/500/1000 Hz,
vector PDF pages, each a different record) go through these set-ups, each on a fresh Postgres
database and a Redis database of its own, in the same run:

    work only         the stage work itself, in this process, no database, no queue, no files:
                      read (a PDF page not drawn, as the prepare stage reads), prepare, interpret
                      (the protocol reader, in batches), the claim checks, the HL7 draft
                      written and checked once (`work_only` below)                            (baseline)
    work side by side the same work dealt to one process per core running at once (the CPU
                      worker's prefork pool runs that way): what sharing the machine's caches
                      and memory costs the work itself, with nothing of the pipeline
    stages in-process the stage functions with the in-process dispatcher on Postgres: register
                      (as `ecg-worklist batch`), prepare_studies, interpret_studies,
                      build_reports                                             (+ database, files)
    through Celery    the same stages as Celery tasks on Redis, one solo worker for all three
                      queues, the studies registered as `ecg-worklist batch` does (+ queue)
    watch -> report   the deployment shape: `ecg-worklist watch` + a CPU worker (prefork, one
                      process per core) + a GPU worker (solo); files dropped into the inbox;
                      from the drop to the last draft, stable-file wait and archive copy included

Each round runs every set-up once; the order of the set-ups alternates between rounds, so
the load of other jobs on the machine falls on all of them alike. For every set-up and round:
wall time, and CPU time of EVERY process doing its work: this process (`time.process_time`,
which registers the studies in the Celery set-ups), the worker and watcher processes with
their prefork children, and the Postgres backends serving the set-up's database, read from
/proc (benchmarks/cpu.py) while they run (sampled every 0.2 s, so a process that exits is
counted up to its last sample). The shared Redis server is not counted (it serves every job
on the machine; its share is small: a few commands per study). Processes are started and
ready before the clock starts.

Run: .venv/bin/python benchmarks/pipeline.py [--studies 40] [--rounds 3] [--batch-size 16]
Needs PostgreSQL and Redis (ECGWL_TEST_POSTGRES_URL / ECGWL_TEST_REDIS_URL, or the local servers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cpu import database_backends, load_average, process_cpu, tree_pids  # noqa: E402
from benchmarks.mix import MixItem, mix_summary, write_mix  # noqa: E402
from ingest.prepare import prepare  # noqa: E402
from ingest.protocol import ProtocolReader  # noqa: E402
from ingest.readers.read import read_ecg  # noqa: E402
from reports import store  # noqa: E402
from reports.hl7_oru import HL7Endpoints, OruReport, OruStudy, build_oru, new_control_id  # noqa: E402
from reports.hl7_validate import validate_oru  # noqa: E402
from worker.context import PipelineContext  # noqa: E402
from worker.dispatch import Stage  # noqa: E402
from worker.batch import run_batch  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.stages import check_claims  # noqa: E402

ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ECGWL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
ECG_WORKLIST = Path(sys.executable).parent / "ecg-worklist"
GOAL_RATIO = 1.2
SETUPS = ("work", "work_side_by_side", "inproc", "celery", "watch")
SIDE_BY_SIDE = os.cpu_count() or 1  # processes: as many as the CPU worker's prefork pool runs
LABELS = {"work": "work only (no database, no queue)",
          "work_side_by_side": f"work only, {SIDE_BY_SIDE} processes at once",
          "inproc": "stages in-process on Postgres",
          "celery": "stages through Redis/Celery (1 process)", "watch": "watch -> queues -> report (3 processes)"}


# ---------------------------------------------------------------- CPU of every process


@dataclass
class CpuMeter:
    """CPU seconds used since `start()` by this process and by the watched processes (and their
    children), sampled so a process that exits mid-run keeps what it had used."""

    roots: list[int] = field(default_factory=list)  # started processes: each with its descendants
    engine: sa.Engine | None = None  # whose database's backends to watch
    database: str = ""
    names: list[str] = field(default_factory=list)  # one per root, for the breakdown by process
    _start: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _role: dict[int, str] = field(default_factory=dict)  # pid -> which process it is or serves
    _own_start: float = 0.0

    def _pids(self) -> list[int]:
        pids: list[int] = []
        for n, root in enumerate(self.roots):
            name = self.names[n] if n < len(self.names) else f"process {n}"
            for pid in tree_pids(root):
                # A prefork worker's main process apart from its pool: what the pool costs to run.
                self._role.setdefault(pid, name if pid == root else f"{name} pool")
                pids.append(pid)
        if self.engine is not None:
            for pid in database_backends(self.engine, self.database):
                self._role.setdefault(pid, "postgres backends")
                pids.append(pid)
        return pids

    def start(self) -> None:
        self._own_start = time.process_time()
        self._start = {pid: process_cpu(pid) for pid in self._pids()}
        self._last = dict(self._start)

    def sample(self) -> None:
        for pid in self._pids():
            used = process_cpu(pid)
            if used:
                self._last[pid] = used

    def by_process(self) -> dict[str, float]:
        """CPU seconds since `start()` per process (a root with its children; the database backends together)."""
        self.sample()
        used = {"this process": time.process_time() - self._own_start}
        for pid, last in self._last.items():
            role = self._role.get(pid, "other")
            used[role] = used.get(role, 0.0) + last - self._start.get(pid, 0.0)
        return used


# ---------------------------------------------------------------- services


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    name = f"ecgwl_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        store.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def claimed_redis(base_url: str) -> Iterator[str]:
    """A Redis database (1-15) of our own, claimed the way the tests claim one (SET NX in db 0),
    so a benchmark never empties a database another run is using."""
    import redis

    registry = redis.Redis.from_url(f"{base_url}/0")
    token = uuid.uuid4().hex
    deadline = time.monotonic() + 120
    while True:
        free = [db for db in range(1, 16) if registry.set(f"ecgwl-test-db-claim:{db}", token, nx=True, ex=3600)]
        if free:
            db = free[0]
            for extra in free[1:]:
                registry.delete(f"ecgwl-test-db-claim:{extra}")
            break
        if time.monotonic() > deadline:
            raise RuntimeError("no free Redis database (1-15) for two minutes")
        time.sleep(0.5)
    try:
        yield f"{base_url}/{db}"
    finally:
        if registry.get(f"ecgwl-test-db-claim:{db}") == token.encode():
            registry.delete(f"ecgwl-test-db-claim:{db}")
        registry.close()


@contextmanager
def empty_redis(url: str) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def settings_for(root: Path, database_url: str, redis_url: str | None, batch_size: int) -> Settings:
    return Settings(data_dir=root / "var", inbox_dirs=[root / "inbox"], database_url=database_url,
                    redis_url=redis_url, interpret_batch_size=batch_size, stable_seconds=1.0, poll_seconds=1.0,
                    reconcile_every_seconds=3600)


def env_for(settings: Settings) -> dict[str, str]:
    """The settings as the ECGWL_ environment a worker process reads (JSON for lists and objects)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECGWL_")}
    for key, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        env[f"ECGWL_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@contextmanager
def processes(settings: Settings, root: Path, commands: list[list[str]]) -> Iterator[list[int]]:
    """Start `ecg-worklist` processes, wait until every worker says it is ready; yields their pids."""
    started = []
    root.mkdir(parents=True, exist_ok=True)
    for n, args in enumerate(commands):
        log = root / f"process-{n}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen([str(ECG_WORKLIST), *args], env=env_for(settings), stdout=handle,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
        started.append((popen, log, args[0] == "worker"))
    try:
        deadline = time.monotonic() + 180
        while not all(not is_worker or " ready." in log.read_text(errors="replace")
                      for _, log, is_worker in started):
            exited = [log for popen, log, _ in started if popen.poll() is not None]
            if exited or time.monotonic() > deadline:
                tails = "\n".join(f"--- {log}:\n{log.read_text(errors='replace')[-2000:]}" for _, log, _ in started)
                raise RuntimeError(f"workers did not start:\n{tails}")
            time.sleep(0.2)
        time.sleep(1.0)  # the watcher's first scan
        yield [popen.pid for popen, _, _ in started]
    finally:
        for popen, _, _ in started:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGTERM)
        for popen, _, _ in started:
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)


def wait_for_drafts(engine: sa.Engine, count: int, meter: CpuMeter, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    query = sa.text("SELECT count(*) FROM studies WHERE state IN ('awaiting_signoff', 'quarantined', 'failed')")
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() >= count:
                return
        meter.sample()
        time.sleep(0.2)
    raise RuntimeError("timed out waiting for the drafts")


def outcome(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT state, count(*) FROM studies GROUP BY state")).all())


# ---------------------------------------------------------------- the set-ups


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # CPU seconds of every process counted
    states: dict[str, int] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)  # studies in each interpret batch, in order
    idle_wakeups: int = 0  # interpret tasks that found nothing to take
    cpu_by_process: dict[str, float] = field(default_factory=dict)  # CPU seconds per process counted


# What a Celery worker logs for each interpret task (worker.tasks._run's return value).
_DRAIN_LINE = re.compile(r"ecgwl\.interpret_drain\[[^\]]+\] succeeded in [0-9.e-]+s: '(\d+ studies|empty)")


def drained_batches(logs: list[Path]) -> tuple[list[int], int]:
    """(studies per interpret batch, empty wake-ups) from the Celery workers' logs."""
    found = [match for log in logs for match in _DRAIN_LINE.findall(log.read_text(errors="replace"))]
    return [int(text.split()[0]) for text in found if text != "empty"], sum(text == "empty" for text in found)


def work_only(items: list[MixItem], batch_size: int) -> Run:
    """The stage work itself: read (as the prepare stage does), prepare, interpret in batches, claim
    checks, ORU built and validated."""
    reader = ProtocolReader()
    wall, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(items), batch_size):
        # Read as the prepare stage reads (`worker.stages._read_and_prepare`): a PDF's page is not drawn.
        # Until 2026-12-07 the baseline drew it (page_images=True, ~40 ms a vector page), work the
        # pipeline never does, which made every ratio look better than it was.
        batch = [prepare(read_ecg(item.path, page_images=False)) for item in items[first:first + batch_size]]
        for n, (prepared, interpretation) in enumerate(zip(batch, reader.interpret(batch), strict=True)):
            flags, _critical = check_claims(prepared, interpretation)
            study = OruStudy(study_id=first + n + 1, demographics=prepared.ecg.demographics,
                             placer_order_number=f"P{first + n}", filler_order_number=f"F{first + n}")
            report = OruReport(labels=interpretation.parsed.labels, impression=interpretation.parsed.narrative,
                               flags=flags)
            measurements = prepared.features.global_ if prepared.features else None
            message = build_oru(study, report, measurements, interpretation, result_status="P",
                                endpoints=HL7Endpoints(), control_id=new_control_id())
            assert validate_oru(message, structure=False) == []  # as the stage does with a message it just built
    batches = [len(items[first:first + batch_size]) for first in range(0, len(items), batch_size)]
    return Run(time.perf_counter() - wall, time.process_time() - cpu, {"awaiting_signoff": len(items)}, batches)


def _work_share(share: list[MixItem], batch_size: int) -> float:
    return work_only(share, batch_size).cpu


def work_side_by_side(items: list[MixItem], batch_size: int, processes: int) -> Run:
    """The same stage work, its studies dealt to `processes` processes that run at once, one per core,
    as the CPU worker's pool runs them: no database, no queue, nothing of the pipeline. Processes
    that run side by side share the machine's caches and memory bandwidth, so each study's work
    costs more CPU than in one process alone; this shows how much of a multi-process set-up's
    overhead is that, not the pipeline. Forked after the warm-up, so no process pays for imports."""
    shares = [items[n::processes] for n in range(processes)]
    wall = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        cpus = pool.starmap(_work_share, [(share, batch_size) for share in shares])
    return Run(time.perf_counter() - wall, sum(cpus), {"awaiting_signoff": len(items)})


def in_process(inputs: Path, root: Path, batch_size: int, admin_url: str) -> Run:
    with scratch_database(admin_url) as url:
        ctx = PipelineContext.create(settings_for(root, url, None, batch_size))
        try:
            meter = CpuMeter(engine=ctx.engine, database=_database_name(url))
            meter.start()
            wall = time.perf_counter()
            run_batch(ctx, inputs, progress=False)  # as `ecg-worklist batch` registers and queues
            batches: list[int] = []
            ctx.dispatcher.run_until_idle(ctx, on_start=lambda stage, ids: batches.append(len(ids))
                                          if stage is Stage.INTERPRET else None)
            used = meter.by_process()
            return Run(time.perf_counter() - wall, sum(used.values()), outcome(ctx.engine), batches,
                       cpu_by_process=used)
        finally:
            ctx.close()


def through_celery(inputs: Path, root: Path, batch_size: int, count: int, admin_url: str, redis_url: str) -> Run:
    with scratch_database(admin_url) as url, empty_redis(redis_url):
        settings = settings_for(root, url, redis_url, batch_size)
        ctx = PipelineContext.create(settings)
        try:
            with processes(settings, root, [["worker", "--queues", "prepare,interpret,report"]]) as pids:
                meter = CpuMeter(roots=pids, engine=ctx.engine, database=_database_name(url),
                                 names=["worker (all queues)"])
                meter.start()
                wall = time.perf_counter()
                run_batch(ctx, inputs, progress=False)  # as `ecg-worklist batch` registers and queues
                wait_for_drafts(ctx.engine, count, meter)
                used = meter.by_process()
                run = Run(time.perf_counter() - wall, sum(used.values()), outcome(ctx.engine), cpu_by_process=used)
            # Read once the worker has stopped, so its last lines are written.
            run.batches, run.idle_wakeups = drained_batches([root / "process-0.log"])
            return run
        finally:
            ctx.close()


def watch_to_report(inputs: Path, root: Path, batch_size: int, count: int, admin_url: str, redis_url: str) -> Run:
    with scratch_database(admin_url) as url, empty_redis(redis_url):
        settings = settings_for(root, url, redis_url, batch_size)
        inbox = settings.inbox_dirs[0]
        inbox.mkdir(parents=True)
        staged = root / "staged"
        shutil.copytree(inputs, staged)  # same filesystem as the inbox: the drop is a rename
        engine = store.make_engine(url)
        try:
            with processes(settings, root, [
                ["worker", "--queues", "prepare,report"],
                ["worker", "--queues", "interpret"],
                ["watch"],
            ]) as pids:
                meter = CpuMeter(roots=pids, engine=engine, database=_database_name(url),
                                 names=["CPU worker (prepare, report)", "GPU worker (interpret)", "watcher"])
                meter.start()
                wall = time.perf_counter()
                for entry in sorted(staged.iterdir()):
                    entry.rename(inbox / entry.name)
                wait_for_drafts(engine, count, meter)
                used = meter.by_process()
                run = Run(time.perf_counter() - wall, sum(used.values()), outcome(engine), cpu_by_process=used)
            run.batches, run.idle_wakeups = drained_batches([root / "process-1.log"])  # the interpret worker
            return run
        finally:
            engine.dispose()


# ---------------------------------------------------------------- the run


def _inputs_folder(items: list[MixItem], folder: Path) -> Path:
    """One folder holding every input (a WFDB record keeps its own folder), as an inbox or archive would."""
    folder.mkdir(parents=True)
    for n, item in enumerate(items):
        if item.path.suffix == ".hea":
            shutil.copytree(item.path.parent, folder / f"{n:05d}-{item.path.parent.name}")
        else:
            shutil.copy(item.path, folder / f"{n:05d}-{item.path.name}")
    return folder


def run(count: int, rounds: int, batch_size: int, setups: tuple[str, ...], admin_url: str,
        redis_url: str | None) -> tuple[list[MixItem], list[dict[str, Run]]]:
    with tempfile.TemporaryDirectory(prefix="ecgwl-bench-") as tmp, \
            (claimed_redis(REDIS_URL) if redis_url is None else _given(redis_url)) as redis_db:
        tmp_path = Path(tmp)
        items = write_mix(tmp_path / "mix", count)
        inputs = _inputs_folder(items, tmp_path / "inputs")
        work_only(items[: min(len(items), 5)], batch_size)  # warm-up: imports, caches
        actions: dict[str, Callable[[Path], Run]] = {
            "work": lambda _root: work_only(items, batch_size),
            "work_side_by_side": lambda _root: work_side_by_side(items, batch_size, SIDE_BY_SIDE),
            "inproc": lambda root: in_process(inputs, root, batch_size, admin_url),
            "celery": lambda root: through_celery(inputs, root, batch_size, count, admin_url, redis_db),
            "watch": lambda root: watch_to_report(inputs, root, batch_size, count, admin_url, redis_db),
        }
        results: list[dict[str, Run]] = []
        for number in range(rounds):
            order = list(setups) if number % 2 == 0 else list(reversed(setups))
            results.append({name: actions[name](tmp_path / f"round{number}-{name}") for name in order})
            print(f"round {number + 1}: " + ", ".join(
                f"{name} {results[-1][name].cpu * 1000 / count:.1f} ms CPU/study" for name in setups), flush=True)
    return items, results


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def report(items: list[MixItem], results: list[dict[str, Run]], batch_size: int) -> None:
    n = len(items)
    setups = list(results[0])
    print(f"{mix_summary(items)} (real recordings, benchmarks/mix.py), protocol reader, interpret batch "
          f"{batch_size}; {load_average()} at the end")
    print("CPU is every process's: this one, the workers and watcher with their children, the set-up's "
          "Postgres backends")
    print(f"{'round':<6}{'set-up':<42}{'wall ms/study':>14}{'CPU ms/study':>14}{'CPU / work CPU':>16}  outcome")
    ordered = [name for name in SETUPS if name in setups]
    for number, result in enumerate(results, 1):
        base = result["work"].cpu if "work" in result else None
        for name in ordered:
            row = result[name]
            ratio = f"{row.cpu / base:16.2f}" if base else f"{'':>16}"
            states = ", ".join(f"{k} {v}" for k, v in sorted(row.states.items()))
            print(f"{number:<6}{LABELS[name]:<42}{row.wall * 1000 / n:14.1f}{row.cpu * 1000 / n:14.1f}{ratio}  {states}")
    print(f"{'over rounds (min / median / max)':<48}{'wall ms/study':>24}{'CPU ms/study':>24}{'CPU / work CPU':>22}")
    summary: dict[str, list[float]] = {}
    for name in ordered:
        walls = [r[name].wall * 1000 / n for r in results]
        cpus = [r[name].cpu * 1000 / n for r in results]
        ratios = [r[name].cpu / r["work"].cpu for r in results] if "work" in setups else []
        summary[name] = ratios

        def triple(values: list[float], digits: int = 1) -> str:
            if not values:
                return f"{'':>24}"
            return f"{min(values):8.{digits}f}{statistics.median(values):8.{digits}f}{max(values):8.{digits}f}"

        print(f"  {LABELS[name]:<46}{triple(walls)}{triple(cpus)}{triple(ratios, 2)}")
    print("interpret batches (studies per batch: how many batches; the last round), and the interpret tasks "
          "that found nothing to take")
    for name in ordered:
        last = results[-1][name]
        sizes = ", ".join(f"{size}: {times}" for size, times in sorted(Counter(last.batches).items(), reverse=True))
        print(f"  {LABELS[name]:<46}{sizes or 'none seen'}; {last.idle_wakeups} empty")
    print("CPU ms per study by process (the last round)")
    for name in ordered:
        used = results[-1][name].cpu_by_process
        if used:
            parts = ", ".join(f"{role} {seconds * 1000 / n:.1f}" for role, seconds in
                              sorted(used.items(), key=lambda pair: -pair[1]))
            print(f"  {LABELS[name]:<46}{parts}")
    if "work" in setups and "work_side_by_side" in setups:
        side = statistics.median(summary["work_side_by_side"])
        print(f"the stage work alone costs {side:.2f}x its one-process CPU when {SIDE_BY_SIDE} processes run it at once "
              "(median round): that much of a multi-process set-up's ratio is processes sharing the machine")
    if "work" in setups:
        for name in ("celery", "watch"):
            if name in setups:
                ratio = statistics.median(summary[name])
                print(f"goal: end-to-end CPU per study <= {GOAL_RATIO:g}x the stage work alone, {LABELS[name]}: "
                      f"{ratio:.2f}x (median round) {'met' if ratio <= GOAL_RATIO else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    parser.add_argument("--postgres-admin-url", default=ADMIN_URL)
    parser.add_argument("--redis-url", default=None, help="a Redis database of our own (default: claim one)")
    args = parser.parse_args()
    setups = tuple(s for s in args.setups.split(",") if s)
    unknown = set(setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown set-ups {sorted(unknown)}")
    items, results = run(args.studies, args.rounds, args.batch_size, setups, args.postgres_admin_url, args.redis_url)
    report(items, results, args.batch_size)
    failed = [name for result in results for name, r in result.items()
              if r.states.get("awaiting_signoff", 0) != args.studies]
    if failed:
        print(f"not every study reached a draft in: {sorted(set(failed))}")
        sys.exit(1)


if __name__ == "__main__":
    main()
