"""The fault lab: the whole pipeline as real processes on real Postgres and Redis, a fault
injected while it works, and what came out counted.

    with FaultLab(root, CI_SCALE) as lab:       # a database, its own redis-server, volumes, processes
        row = lab.run(FAULTS["cpu-worker-kill"])
    print(format_table([row]))

Used by tests/faults/ (small N, shortened bounds, in CI) and benchmarks/faults.py (200 studies,
the default bounds, by hand). What each piece is:

- Postgres: a fresh database on the test server, reached by the pipeline through a TCP proxy
  in this process (`TcpProxy`), so "Postgres down" is the proxy refusing and dropping every
  connection; the shared server itself is never stopped. The lab watches through a direct one.
- Redis: a redis-server of its own on a free port (no persistence), so FLUSHALL and a restart
  touch nothing shared.
- Volumes: the data folder and the outbound folder are two size-limited tmpfs mounts (needs
  root: `mount -t tmpfs -o size=...`); "full" is a filler file written until ENOSPC, removed
  when the fault ends. Real ENOSPC from the kernel, no write hook.
- Processes: `ecg-worklist watch`, a CPU worker (prefork, 2 children) and a GPU worker (solo),
  each restarted by a supervisor thread when it dies, as systemd's Restart=on-failure does.
  The reconciler in `watch` judges holders by their lease only (check_local_holders=false),
  as it must for workers on other machines: the slow path, measured.
- Inputs: distinct DICOM ECGs (the sample with a different accession number each), dropped
  into the inbox by rename; one poison file for the poison fault (TEST-ONLY hook
  ECGWL_TEST_POISON: its worker process kills itself when it prepares it).

Counted per fault: studies in (files dropped), drafts out (awaiting sign-off, report v1 and an
outbound .hl7 file equal to it), quarantined (expected: the poison file only), lost (in - out),
duplicated (a second study, report row, draft audit row or .hl7 content for one input), holder
deaths seen, and recovery: seconds from the end of the fault to every study final.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
ECG_WORKLIST = Path(sys.executable).parent / "ecg-worklist"
ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# ---------------------------------------------------------------- scales


@dataclass(frozen=True)
class Scale:
    """The sizes and timings of one kind of run."""

    studies: int
    lease_seconds: float
    heartbeat_seconds: float
    reconcile_every_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    fault_seconds: float  # how long Postgres is cut, a volume full, Redis down
    restart_seconds: float  # the supervisor's RestartSec
    stage_delay_seconds: float  # TEST-ONLY sleep per study and stage, so faults land mid-task
    gpu_seconds_per_study: float  # the interpret fault's long GPU batches (TEST-ONLY sleep)
    batch_size: int
    data_volume_mb: int
    outbound_volume_mb: int
    deadline_seconds: float  # stop waiting for "every study final" after this (then: lost)


# CI: a few studies, bounds shortened through the settings, minutes in all.
CI_SCALE = Scale(studies=10, lease_seconds=4, heartbeat_seconds=1, reconcile_every_seconds=1,
                 retry_base_seconds=1, retry_max_seconds=2, fault_seconds=15, restart_seconds=1,
                 stage_delay_seconds=0.3, gpu_seconds_per_study=1.5, batch_size=4,
                 data_volume_mb=64, outbound_volume_mb=4, deadline_seconds=300)
# benchmarks/faults.py: 200 studies with the product's default bounds (lease 90 s, heartbeat
# 15 s, reconciler every 30 s, retries up to 60 s), a Postgres outage of 150 s, a GPU batch of
# 64 that takes 96 s (longer than a lease), systemd's RestartSec.
BENCH_SCALE = Scale(studies=200, lease_seconds=90, heartbeat_seconds=15, reconcile_every_seconds=30,
                    retry_base_seconds=5, retry_max_seconds=60, fault_seconds=150, restart_seconds=5,
                    stage_delay_seconds=0.0, gpu_seconds_per_study=1.5, batch_size=64,
                    data_volume_mb=256, outbound_volume_mb=16, deadline_seconds=1200)


# ---------------------------------------------------------------- Postgres behind a proxy we can cut


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new
    ones until `restore()`, which listens on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = self._listen(0)

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener.getsockname()[1]

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._sockets.discard(sock)

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave that
            # call accepting on the old socket, and the "outage" would let new connections in.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._listen(self.port)

    def close(self) -> None:
        self.cut()


# ---------------------------------------------------------------- processes, restarted when they die


@dataclass
class Managed:
    name: str
    args: list[str]
    overrides: dict[str, Any]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0


class Supervisor:
    """Starts the pipeline's processes and restarts any that dies, after `restart_seconds`."""

    def __init__(self, env: Callable[[dict[str, Any]], dict[str, str]], cwd: Path, restart_seconds: float) -> None:
        self.env, self.cwd, self.restart_seconds = env, cwd, restart_seconds
        self.processes: dict[str, Managed] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def start(self, name: str, *args: str, **overrides: Any) -> Managed:
        with self._lock:
            managed = Managed(name, list(args), overrides, self.cwd / f"{name}.log")
            self.processes[name] = managed
            self._spawn(managed)
        return managed

    def _spawn(self, managed: Managed) -> None:
        with managed.log.open("ab") as log:
            managed.popen = subprocess.Popen([str(ECG_WORKLIST), *managed.args], env=self.env(managed.overrides),
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                             cwd=self.cwd)

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            with self._lock:
                dead = [m for m in self.processes.values() if m.popen is not None and m.popen.poll() is not None]
                for managed in dead:
                    managed.popen = None
            for managed in dead:
                time.sleep(self.restart_seconds)
                with self._lock:
                    if not self._stop.is_set() and self.processes.get(managed.name) is managed:
                        managed.restarts += 1
                        self._spawn(managed)

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children (a Celery worker and its pool)."""
        managed = self.processes[name]
        if managed.popen is not None and managed.popen.poll() is None:
            os.killpg(managed.popen.pid, signal.SIGKILL)

    def replace(self, name: str, **overrides: Any) -> None:
        """Stop a process and start it again with other settings (between faults)."""
        with self._lock:
            managed = self.processes.pop(name)
        self._terminate(managed)
        managed.log.rename(managed.log.with_suffix(f".{time.time_ns()}.log"))  # a fresh log shows readiness
        self.start(name, *managed.args, **{**managed.overrides, **overrides})

    @staticmethod
    def _terminate(managed: Managed) -> None:
        if managed.popen is None or managed.popen.poll() is not None:
            return
        os.killpg(managed.popen.pid, signal.SIGTERM)
        try:
            managed.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(managed.popen.pid, signal.SIGKILL)
            managed.popen.wait(timeout=10)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            processes = list(self.processes.values())
            self.processes.clear()
        for managed in processes:
            if managed.popen is not None and managed.popen.poll() is None:
                os.killpg(managed.popen.pid, signal.SIGKILL)
                managed.popen.wait(timeout=10)

    def tails(self, lines: int = 30) -> str:
        out = []
        for managed in self.processes.values():
            text = managed.log.read_text(errors="replace") if managed.log.exists() else ""
            out.append(f"--- {managed.name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(out)


# ---------------------------------------------------------------- volumes


def mount_tmpfs(path: Path, megabytes: int) -> bool:
    """A size-limited tmpfs at `path` (root only); False when the system does not allow it."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(path)],
                            capture_output=True, check=False)
    return result.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a filler file in `folder` until the volume is full (real ENOSPC); its path."""
    filler = folder / ".fault-filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        try:
            handle.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError), filler.open("ab") as handle:  # the last few pages
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    return filler


# ---------------------------------------------------------------- inputs


def write_dicom_variants(folder: Path, names: list[str]) -> None:
    """One distinct DICOM ECG per name: the sample with its own accession number."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    dataset = pydicom.dcmread(REPO / "samples" / "demo-dicom.dcm")
    for name in names:
        dataset.AccessionNumber = ("ACC-" + uuid.uuid4().hex[:12]).upper()
        dataset.save_as(folder / name)


def drop(files: list[Path], inbox: Path) -> None:
    """Into the inbox the way a sender should: written under .part, then renamed."""
    inbox.mkdir(parents=True, exist_ok=True)
    for path in files:
        temporary = inbox / f"{path.name}.part"
        shutil.copyfile(path, temporary)
        os.replace(temporary, inbox / path.name)


# ---------------------------------------------------------------- one fault, counted


@dataclass
class Row:
    fault: str
    studies_in: int
    drafts_out: int
    quarantined: int
    lost: int
    duplicated: int
    holder_deaths: int
    fault_seconds: float
    recovery_seconds: float | None  # fault end -> every study final; None: not within the deadline
    total_seconds: float | None = None  # first drop -> every study final
    expected_quarantined: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def goals_met(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.quarantined == self.expected_quarantined
                and self.recovery_seconds is not None and self.recovery_seconds <= 300)


def format_table(rows: list[Row], *, baseline: Row | None = None) -> str:
    """The table; with a `baseline` (the same run with no fault) each whole run as a ratio to it."""
    header = ("| fault | studies in | drafts out | quarantined | lost | duplicated | holder deaths | "
              "fault lasted | recovery (fault end -> all final) |" + (" whole run vs no fault |" if baseline else "")
              + " goals |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if baseline else "") + "---|"]
    for row in rows:
        recovery = f"{row.recovery_seconds:.0f} s" if row.recovery_seconds is not None else "NOT within deadline"
        ratio = ""
        if baseline is not None:
            ratio = (f" {row.total_seconds / baseline.total_seconds:.1f}x |"
                     if row.total_seconds and baseline.total_seconds else " - |")
        lines.append(f"| {row.fault} | {row.studies_in} | {row.drafts_out} | {row.quarantined} | {row.lost} | "
                     f"{row.duplicated} | {row.holder_deaths} | {row.fault_seconds:.0f} s | {recovery} |{ratio} "
                     f"{'met' if row.goals_met else 'NOT met'} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    # inject(lab, prefix, arrive): waits until the run is where the fault should strike (half
    # the files dropped and being worked on), strikes, calls arrive() to drop the other half
    # during the fault, and returns when the fault is over (a kill at once, an outage when the
    # service is back) with how long it lasted.
    inject: Callable[[FaultLab, str, Callable[[], None]], float]
    poison: bool = False
    needs_volumes: bool = False
    before: Callable[[FaultLab], None] | None = None  # set-up for this fault (e.g. long GPU batches)
    after: Callable[[FaultLab], None] | None = None


class FaultLab:
    """One database, one redis-server, two volumes and the pipeline's processes, for a series of faults."""

    def __init__(self, root: Path, scale: Scale) -> None:
        self.root, self.scale = root, scale
        self.rows: list[Row] = []

    # -- setting up and tearing down

    def __enter__(self) -> FaultLab:
        from reports import store

        root, scale = self.root, self.scale
        root.mkdir(parents=True, exist_ok=True)
        self.database = f"ecgwl_faults_{uuid.uuid4().hex[:12]}"
        self._admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        admin = sa.engine.make_url(ADMIN_URL)
        self.direct_url = admin.set(database=self.database).render_as_string(hide_password=False)
        store.upgrade(self.direct_url)
        self.engine = sa.create_engine(self.direct_url, pool_pre_ping=True)
        self.proxy = TcpProxy((admin.host or "127.0.0.1", admin.port or 5432))
        self.proxied_url = admin.set(database=self.database, host="127.0.0.1", port=self.proxy.port) \
            .render_as_string(hide_password=False)
        self.redis_port = _free_port()
        self._redis: subprocess.Popen[bytes] | None = None
        self.start_redis()
        self.data_dir = root / "var"
        self.outbound_dir = self.data_dir / "outbound"
        self.volumes = mount_tmpfs(self.data_dir, scale.data_volume_mb)
        if self.volumes:
            self.volumes = mount_tmpfs(self.outbound_dir, scale.outbound_volume_mb)
        self.inbox = root / "inbox"
        self.inbox.mkdir(exist_ok=True)
        self.values: dict[str, Any] = {
            "database_url": self.proxied_url, "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
            "data_dir": self.data_dir, "inbox_dirs": [self.inbox], "stable_seconds": 0.2, "poll_seconds": 0.2,
            "lease_seconds": scale.lease_seconds, "heartbeat_seconds": scale.heartbeat_seconds,
            "reconcile_every_seconds": scale.reconcile_every_seconds, "reconcile_after_seconds": 10,
            "retry_base_seconds": scale.retry_base_seconds, "retry_max_seconds": scale.retry_max_seconds,
            "interpret_batch_size": scale.batch_size, "test_stage_delay_seconds": scale.stage_delay_seconds,
            "test_poison": "prepare:kills-its-worker",
            # The visibility timeout stays at its 6-hour default: recovery must not depend on it.
        }
        self.supervisor = Supervisor(self._env, root, scale.restart_seconds)
        self.supervisor.start("watch", "watch", check_local_holders=False)
        self.supervisor.start("cpu", "worker", "--queues", "prepare,report", "--concurrency", "2")
        self.supervisor.start("gpu", "worker", "--queues", "interpret")
        self.wait_until_ready()
        return self

    def wait_until_ready(self) -> None:
        """Until every worker says it is ready and the watcher watches (so runs time the work, not imports)."""
        def ready() -> bool:
            logs = {name: m.log.read_text(errors="replace") if m.log.exists() else ""
                    for name, m in self.supervisor.processes.items()}
            return all((" ready." in text) if name != "watch" else ("watching" in text) for name, text in logs.items())

        self.wait_for(ready, 180, "the pipeline's processes to start")

    def __exit__(self, *exc: object) -> None:
        self.supervisor.close()
        self.stop_redis()
        self.proxy.close()
        if self.volumes:
            unmount(self.outbound_dir)
            unmount(self.data_dir)
        self.engine.dispose()
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        self._admin.dispose()

    def _env(self, overrides: dict[str, Any]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ECGWL_")}
        for key, value in {**self.values, **overrides}.items():
            if isinstance(value, list):
                value = json.dumps([str(item) for item in value])
            env[f"ECGWL_{key.upper()}"] = str(value)
        return env

    def start_redis(self) -> None:
        self._redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=(self.root / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        self.wait_for(lambda: _port_open(self.redis_port), 30, "redis-server to listen")

    def stop_redis(self) -> None:
        if self._redis is not None and self._redis.poll() is None:
            self._redis.kill()
            self._redis.wait(timeout=10)

    def redis(self) -> Any:
        import redis

        return redis.Redis(port=self.redis_port)

    # -- observing

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if condition():
                    return
            time.sleep(0.25)
        tails = self.supervisor.tails() if hasattr(self, "supervisor") else ""
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")

    def batch_studies(self, prefix: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT id, sha256, state, lease_holder, last_error, holder_deaths FROM studies "
                "WHERE source_path LIKE :p"),
                {"p": f"%/{prefix}-%"}).mappings().all()
        return [dict(row) for row in rows]

    def count(self, prefix: str, state: str | None = None, *, held: bool = False) -> int:
        return sum(1 for study in self.batch_studies(prefix)
                   if (state is None or study["state"] == state) and (not held or study["lease_holder"]))

    # -- a run

    def run(self, fault: Fault) -> Row:
        scale = self.scale
        prefix = re.sub(r"[^a-z0-9]+", "-", fault.name.lower()).strip("-")  # file names, and how studies are found
        names = [f"{prefix}-{i:04d}.dcm" for i in range(scale.studies - (1 if fault.poison else 0))]
        if fault.poison:
            names.insert(len(names) // 4, f"{prefix}-kills-its-worker.dcm")
        source = self.root / "source" / prefix
        write_dicom_variants(source, names)
        if fault.before is not None:
            fault.before(self)
        with self.engine.connect() as conn:
            audit_start = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM audit_events")).scalar_one()
        half = len(names) // 2
        arrived: list[bool] = []

        def arrive() -> None:
            if not arrived:
                arrived.append(True)
                drop([source / name for name in names[half:]], self.inbox)

        drop([source / name for name in names[:half]], self.inbox)
        started = time.monotonic()
        lasted = fault.inject(self, prefix, arrive)
        arrive()
        fault_end = time.monotonic()
        expected_quarantined = 1 if fault.poison else 0
        final_states = ("awaiting_signoff", "quarantined", "failed")

        def all_final() -> bool:
            studies = self.batch_studies(prefix)
            in_inbox = [p for p in self.inbox.glob(f"{prefix}-*") if p.is_file()]
            return len(studies) >= len(names) and not in_inbox and all(s["state"] in final_states for s in studies)

        recovery: float | None = None
        deadline = fault_end + scale.deadline_seconds
        while time.monotonic() < deadline:
            if all_final():
                recovery = time.monotonic() - fault_end
                break
            time.sleep(0.5)
        time.sleep(min(2.0, scale.reconcile_every_seconds * 2))  # let any duplicate show itself
        row = self._count(fault, prefix, names, audit_start, lasted, recovery, expected_quarantined)
        row.total_seconds = None if recovery is None else fault_end + recovery - started
        self.rows.append(row)
        if fault.after is not None:
            fault.after(self)
        self._clear_volumes()
        return row

    def _clear_volumes(self) -> None:
        """Counted: make room for the next fault (the studies are final; nothing reads these now)."""
        for folder in ("archive", "prepared"):
            shutil.rmtree(self.data_dir / folder, ignore_errors=True)
            (self.data_dir / folder).mkdir(exist_ok=True)
        for path in self.outbound_dir.glob("*.hl7"):
            path.unlink()

    def _count(self, fault: Fault, prefix: str, names: list[str], audit_start: int, lasted: float,
               recovery: float | None, expected_quarantined: int) -> Row:
        studies = self.batch_studies(prefix)
        ids = [study["id"] for study in studies]
        with self.engine.connect() as conn:
            reports = conn.execute(sa.text(
                "SELECT study_id, version, hl7_message, id FROM reports WHERE study_id = ANY(:ids)"),
                {"ids": ids}).all() if ids else []
            draft_audits = conn.execute(sa.text(
                "SELECT count(*) FROM audit_events WHERE action = 'report.draft' AND id > :start "
                "AND entity_id = ANY(:rids)"), {"start": audit_start, "rids": [str(r.id) for r in reports]}
            ).scalar_one() if reports else 0
            deaths = conn.execute(sa.text(
                "SELECT count(*) FROM audit_events WHERE action = 'study.holder_lost' AND id > :start "
                "AND entity_id = ANY(:ids)"), {"start": audit_start, "ids": [str(i) for i in ids]}).scalar_one() \
                if ids else 0
        messages = {(r.study_id, r.version): r.hl7_message for r in reports}
        drafts, bad_files = 0, 0
        for study in studies:
            message = messages.get((study["id"], 1))
            path = self.outbound_dir / f"ecgwl-study-{study['id']}-v1.hl7"
            if study["state"] == "awaiting_signoff" and message is not None and path.is_file():
                if path.read_bytes() == (message + "\r").encode():
                    drafts += 1
                else:
                    bad_files += 1  # a second, different message for the same draft
        quarantined = sum(1 for s in studies if s["state"] == "quarantined")
        duplicated = (max(0, len(studies) - len(names)) + (len(reports) - len(messages))
                      + max(0, draft_audits - len(messages)) + bad_files)
        notes = [f"study {s['id']} {s['state']}: {s['last_error']}" for s in studies
                 if s["state"] not in ("awaiting_signoff",)]
        return Row(fault=fault.name, studies_in=len(names), drafts_out=drafts, quarantined=quarantined,
                   lost=len(names) - drafts - min(quarantined, expected_quarantined), duplicated=duplicated,
                   holder_deaths=deaths, fault_seconds=lasted, recovery_seconds=recovery,
                   expected_quarantined=expected_quarantined, notes=notes)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def lab_at(root: Path, scale: Scale) -> Iterator[FaultLab]:
    with FaultLab(root, scale) as lab:
        yield lab
