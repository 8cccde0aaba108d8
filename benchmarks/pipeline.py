"""Studies per second through the pipeline, and what the database and the queue cost per study.

The same N ECG files (DICOM, WFDB and PDF variants of the samples, each distinct content)
go through four set-ups, each on a fresh Postgres database and Redis db, measured in this run:

    work only         read_ecg + prepare + ProtocolReader.interpret (batches) + claim checks +
                      ORU build and validation: the work itself, no database, no queue (baseline)
    stages in-process the stage functions with the in-process dispatcher on Postgres: register,
                      prepare_study, interpret_studies, build_report            (+ database, files)
    through Celery    the same stages as Celery tasks on Redis, one solo worker for all three
                      queues (one process, like the row above)                  (+ queue)
    watch -> report   the deployment shape: `ecg-worklist watch` + a CPU worker (prefork, one
                      process per core) + a GPU worker (solo); files dropped into the inbox;
                      from the drop to the last draft, stable-file wait included

Processes are started and ready before the clock starts. The database overhead per study is
(in-process - work): transactions with their audit rows, and the files preparation leaves
for the later stages (PNG, model window) written and read back; the queue overhead is
(Celery - in-process). Both in ms; ratios are against the work-only baseline.

Run: .venv/bin/python benchmarks/pipeline.py [--studies 40] [--batch-size 16]
Needs PostgreSQL and Redis (ECGWL_TEST_POSTGRES_URL / ECGWL_TEST_REDIS_URL, or the local servers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.prepare import prepare  # noqa: E402
from ingest.protocol import ProtocolReader  # noqa: E402
from ingest.readers.read import read_ecg  # noqa: E402
from ingest.intake.watch import walk_records  # noqa: E402
from reports import store  # noqa: E402
from reports.hl7_oru import HL7Endpoints, OruReport, OruStudy, build_oru, new_control_id  # noqa: E402
from reports.hl7_validate import validate_oru  # noqa: E402
from reports.verify import verify  # noqa: E402
from worker.context import PipelineContext  # noqa: E402
from worker.intake import register_batch_item  # noqa: E402
from worker.settings import Settings  # noqa: E402

ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ECGWL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
SAMPLES = REPO / "samples"
ECG_WORKLIST = Path(sys.executable).parent / "ecg-worklist"


# ---------------------------------------------------------------- inputs


def make_inputs(folder: Path, count: int) -> dict[str, int]:
    """`count` distinct ECGs: 40 % DICOM, 40 % WFDB, 20 % PDF (variants of the samples)."""
    import pydicom

    folder.mkdir(parents=True)
    n_pdf = max(1, count // 5)
    n_wfdb = (count - n_pdf) // 2
    n_dicom = count - n_pdf - n_wfdb
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    for i in range(n_dicom):
        dataset.AccessionNumber = f"BENCH-{i:05d}"
        dataset.save_as(folder / f"d{i:05d}.dcm")
    header = (SAMPLES / "demo-wfdb.hea").read_text()
    for i in range(n_wfdb):
        # A record keeps the name its header gives it; the variant differs in a comment line.
        record = folder / f"w{i:05d}"
        record.mkdir()
        shutil.copy(SAMPLES / "demo-wfdb.dat", record / "demo-wfdb.dat")
        (record / "demo-wfdb.hea").write_text(header + f"# bench variant {i}\n")
    pdf = (SAMPLES / "demo-report.pdf").read_bytes()
    for i in range(n_pdf):
        (folder / f"p{i:05d}.pdf").write_bytes(pdf + f"% bench variant {i}\n".encode())
    return {"dicom": n_dicom, "wfdb": n_wfdb, "pdf": n_pdf}


# ---------------------------------------------------------------- services


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"ecgwl_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        store.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch_redis() -> Iterator[str]:
    import redis

    url = f"{REDIS_URL}/{14}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def settings_for(root: Path, database_url: str, redis_url: str | None, batch_size: int) -> Settings:
    return Settings(data_dir=root / "var", inbox_dirs=[root / "inbox"], database_url=database_url,
                    redis_url=redis_url, interpret_batch_size=batch_size, stable_seconds=0.2, poll_seconds=0.1,
                    reconcile_every_seconds=3600)


def env_for(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECGWL_")}
    for key, value in settings.model_dump().items():
        if value is None:
            continue
        env[f"ECGWL_{key.upper()}"] = json.dumps([str(v) for v in value]) if isinstance(value, list) else str(value)
    return env


@contextmanager
def processes(settings: Settings, root: Path, commands: list[list[str]]) -> Iterator[None]:
    """Start `ecg-worklist` processes and wait until every worker says it is ready."""
    started = []
    for n, args in enumerate(commands):
        log = root / f"process-{n}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen([str(ECG_WORKLIST), *args], env=env_for(settings), stdout=handle,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
        started.append((popen, log, args[0] == "worker"))
    try:
        deadline = time.monotonic() + 120
        while not all(not is_worker or " ready." in log.read_text(errors="replace")
                      for _, log, is_worker in started):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start: " + " ".join(str(log) for _, log, _ in started))
            time.sleep(0.2)
        time.sleep(1.0)  # the watcher's first scan
        yield
    finally:
        for popen, _, _ in started:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGTERM)
        for popen, _, _ in started:
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)


def wait_for_drafts(engine: sa.Engine, count: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    query = sa.text("SELECT count(*) FROM studies WHERE state IN ('awaiting_signoff', 'quarantined', 'failed')")
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() >= count:
                return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for the drafts")


# ---------------------------------------------------------------- the four set-ups


def work_only(inputs: Path, batch_size: int) -> float:
    """Seconds for the work itself: read, prepare, interpret in batches, build + validate the ORU."""
    reader = ProtocolReader()
    arrivals = [a for a in walk_records(inputs) if a.problem is None]
    start = time.perf_counter()
    for first in range(0, len(arrivals), batch_size):
        batch = [prepare(read_ecg(a.main)) for a in arrivals[first:first + batch_size]]
        for n, (prepared, interpretation) in enumerate(zip(batch, reader.interpret(batch), strict=True)):
            verify(interpretation.parsed, prepared.features)
            study = OruStudy(study_id=first + n + 1, demographics=prepared.ecg.demographics,
                             placer_order_number=f"P{first + n}", filler_order_number=f"F{first + n}")
            report = OruReport(labels=interpretation.parsed.labels, impression=interpretation.parsed.narrative)
            measurements = prepared.features.global_ if prepared.features else None
            message = build_oru(study, report, measurements, interpretation, result_status="P",
                                endpoints=HL7Endpoints(), control_id=new_control_id())
            assert validate_oru(message) == []
    return time.perf_counter() - start


def in_process(inputs: Path, root: Path, batch_size: int) -> float:
    with scratch_database() as url:
        ctx = PipelineContext.create(settings_for(root, url, None, batch_size))
        try:
            start = time.perf_counter()
            for arrival in walk_records(inputs):
                register_batch_item(ctx, arrival, origin="bench")
            ctx.dispatcher.run_until_idle(ctx)
            return time.perf_counter() - start
        finally:
            ctx.close()


def through_celery(inputs: Path, root: Path, batch_size: int, count: int) -> float:
    with scratch_database() as url, scratch_redis() as redis_url:
        settings = settings_for(root, url, redis_url, batch_size)
        ctx = PipelineContext.create(settings)
        try:
            with processes(settings, root, [["worker", "--queues", "prepare,interpret,report"]]):
                start = time.perf_counter()
                for arrival in walk_records(inputs):
                    register_batch_item(ctx, arrival, origin="bench")
                wait_for_drafts(ctx.engine, count)
                return time.perf_counter() - start
        finally:
            ctx.close()


def watch_to_report(inputs: Path, root: Path, batch_size: int, count: int) -> float:
    with scratch_database() as url, scratch_redis() as redis_url:
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
            ]):
                start = time.perf_counter()
                for entry in sorted(staged.iterdir()):
                    entry.rename(inbox / entry.name)
                wait_for_drafts(engine, count)
                return time.perf_counter() - start
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecgwl-bench-") as tmp:
        tmp_path = Path(tmp)
        mix = make_inputs(tmp_path / "inputs", args.studies)
        n = args.studies
        work_only(tmp_path / "inputs", args.batch_size)  # warm-up: imports, caches
        rows = {
            "work only (no database, no queue)": work_only(tmp_path / "inputs", args.batch_size),
            "stages in-process on Postgres": in_process(tmp_path / "inputs", tmp_path / "inproc", args.batch_size),
            "stages through Redis/Celery (1 process)": through_celery(tmp_path / "inputs", tmp_path / "celery",
                                                                      args.batch_size, n),
            "watch -> queues -> report (3 processes)": watch_to_report(tmp_path / "inputs", tmp_path / "watch",
                                                                       args.batch_size, n),
        }
    print(f"{n} studies ({mix['dicom']} DICOM, {mix['wfdb']} WFDB, {mix['pdf']} PDF), protocol reader, "
          f"interpret batch {args.batch_size}, {os.cpu_count()} cores")
    base = rows["work only (no database, no queue)"]
    print(f"{'set-up':42s} {'ms/study':>9s} {'studies/s':>10s} {'vs work':>8s}")
    for name, seconds in rows.items():
        print(f"{name:42s} {seconds * 1000 / n:9.1f} {n / seconds:10.1f} {seconds / base:8.2f}")
    database = rows["stages in-process on Postgres"] - base
    queue = rows["stages through Redis/Celery (1 process)"] - rows["stages in-process on Postgres"]
    print(f"database + files overhead per study (in-process - work): {database * 1000 / n:7.1f} ms")
    print(f"queue overhead per study (Celery - in-process):          {queue * 1000 / n:7.1f} ms")
    print(f"queue + database overhead per study:                     {(database + queue) * 1000 / n:7.1f} ms "
          f"({(database + queue) / base:.2f} x the work)")


if __name__ == "__main__":
    main()
