"""Scale-out shown: Celery workers on separate "hosts" (network namespaces), one Postgres, one Redis.

Each worker host is a Linux network namespace with its own veth interface and address on a
private test bridge, and its own hostname (a UTS namespace), so its worker reaches Postgres
and Redis over the network exactly as a second machine would; nothing is shared but the
servers and the data folder (an NFS mount in a real cluster). The servers are started for
the run, bound to the bridge address only: a Postgres of its own (initdb in a scratch folder,
as the `postgres` user) and a redis-server. Addresses come from 198.18.0.0/15, the range set
aside for benchmarking (RFC 2544), one /24 per run.

"Linear in the CPU given": every host's worker runs in a cgroup with a CPU quota (default
0.5 CPU: 50 ms per 100 ms period), so a host is a fixed amount of CPU whatever the machine
has, and N hosts are N times that. The parent group gets a high CPU weight, so the other
work on the machine cannot take a host's quota away (the servers run in a sibling group
without a quota: they play the database server, which a real cluster has on its own machine).

A round with k hosts: a fresh database and Redis db; `ecg-worklist batch` registers the
studies and queues them (before any worker runs); then one `ecg-worklist worker --queues
prepare,interpret,report` per host (one process, solo pool, the protocol reader) works them
all off. Throughput is drafts per second in the steady part of the round: from the 10th to
the 90th percentile of the moments the studies reached `awaiting_signoff` (the audit trail's
times), which leaves out the workers' start-up and the last stragglers. Scaling efficiency =
throughput(k) / (k x throughput(1)), measured in the same run; 1.0 is linear. CPU used is
each worker's own user+system time (/proc) from the moment it said "ready" (its start-up
left out), which gives the sizing figure: studies per worker CPU-core-hour. The CPU of the
database and Redis is reported beside it.

    sudo .venv/bin/python benchmarks/scaleout.py [--studies 300] [--hosts 1,2,3] [--cpu 0.5]

Needs root (namespaces, cgroups), iproute2, cgroup v1 or v2 with the cpu controller, and
PostgreSQL's server binaries and redis-server on the machine. tests/deploy/test_scaleout.py
runs it small.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ECG_WORKLIST = Path(sys.executable).parent / "ecg-worklist"
SAMPLES = REPO / "samples"
BENCH_RANGE = ipaddress.ip_network("198.18.0.0/16")  # RFC 2544 benchmarking addresses
PG_PORT = 5432
REDIS_PORT = 6379
CFS_PERIOD_US = 100_000
DONE_STATES = ("awaiting_signoff", "quarantined", "failed")


class Unavailable(RuntimeError):
    """This machine cannot run the scale-out (not root, no namespaces, no cgroups, no servers)."""


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def server_binaries() -> tuple[Path, Path, Path]:
    """initdb, postgres and redis-server, or Unavailable naming what is missing."""
    pg_bin = [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))]
    initdb = shutil.which("initdb") or (str(pg_bin[-1] / "initdb") if pg_bin else None)
    postgres = shutil.which("postgres") or (str(pg_bin[-1] / "postgres") if pg_bin else None)
    redis_server = shutil.which("redis-server")
    missing = [name for name, path in (("initdb", initdb), ("postgres", postgres), ("redis-server", redis_server))
               if not path]
    if missing:
        raise Unavailable(f"PostgreSQL/Redis server binaries missing: {', '.join(missing)}")
    return Path(initdb), Path(postgres), Path(redis_server)


def why_unavailable() -> str | None:
    """None when namespaces, cgroups and the server binaries are all usable here; else the reason."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and cgroups)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"ecgwl-probe-{os.getpid()}"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "del", probe)
    except (RuntimeError, OSError) as exc:
        return f"cannot make a network namespace: {exc}"
    try:
        CpuGroups.detect()
        server_binaries()
    except Unavailable as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------- the network


@dataclass
class Host:
    name: str  # also its hostname
    netns: str
    address: str


@dataclass
class TestNetwork:
    """A bridge in the root namespace and `count` namespaces joined to it by veth pairs."""

    count: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:4])
    bridge_address: str = ""
    hosts: list[Host] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"ewl{self.run_id}br"  # interface names: 15 characters at most

    def _free_subnet(self) -> ipaddress.IPv4Network:
        """A /24 of the benchmarking range that no interface here uses (another run may)."""
        used = _run("ip", "-4", "-o", "addr", "show")
        subnets = list(BENCH_RANGE.subnets(new_prefix=24))[1:]
        random.shuffle(subnets)
        for subnet in subnets:
            if f" {str(subnet.network_address).rsplit('.', 1)[0]}." not in used:
                return subnet
        raise Unavailable("no free /24 in 198.18.0.0/16")

    def __enter__(self) -> TestNetwork:
        subnet = self._free_subnet()
        addresses = list(subnet.hosts())
        self.bridge_address = str(addresses[0])
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for n in range(1, self.count + 1):
                host = Host(name=f"scaleout-h{n}", netns=f"ecgwl-{self.run_id}-h{n}", address=str(addresses[10 + n]))
                outside, inside = f"ewl{self.run_id}h{n}a", f"ewl{self.run_id}h{n}b"
                _run("ip", "netns", "add", host.netns)
                self.hosts.append(host)
                _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
                _run("ip", "link", "set", outside, "master", self.bridge, "up")
                _run("ip", "link", "set", inside, "netns", host.netns)
                _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", inside)
                _run("ip", "-n", host.netns, "link", "set", inside, "up")
                _run("ip", "-n", host.netns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for host in self.hosts:  # deleting a namespace deletes its end of the veth, and so the pair
            with contextlib.suppress(RuntimeError):
                _run("ip", "netns", "del", host.netns)
        with contextlib.suppress(RuntimeError):
            _run("ip", "link", "del", self.bridge)

    def command_on(self, host: Host, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the host: its network namespace and a hostname of its own."""
        return ["ip", "netns", "exec", host.netns, "unshare", "--uts", "sh", "-c",
                f'hostname {host.name} && exec "$0" "$@"', *argv]


# ---------------------------------------------------------------- CPU shares


@dataclass
class CpuGroups:
    """A cgroup per host with a CPU quota, under a parent with a high CPU weight (v1 or v2)."""

    version: int
    root: Path
    run_id: str = ""
    created: list[Path] = field(default_factory=list)

    @classmethod
    def detect(cls) -> CpuGroups:
        v1 = Path("/sys/fs/cgroup/cpu")
        if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
            return cls(version=1, root=v1)
        v2 = Path("/sys/fs/cgroup")
        if (v2 / "cgroup.controllers").exists() and "cpu" in (v2 / "cgroup.controllers").read_text().split() \
                and os.access(v2, os.W_OK):
            return cls(version=2, root=v2)
        raise Unavailable("no writable cgroup with the cpu controller (cgroup v1 cpu or v2 cpu.max)")

    @property
    def parent(self) -> Path:
        return self.root / f"ecgwl-scaleout-{self.run_id}"

    def __enter__(self) -> CpuGroups:
        self.run_id = uuid.uuid4().hex[:6]
        self.parent.mkdir()
        self.created.append(self.parent)
        if self.version == 1:
            (self.parent / "cpu.shares").write_text("262144")  # the most: other load cannot starve a host
        else:
            (self.parent / "cpu.weight").write_text("10000")
            (self.parent / "cgroup.subtree_control").write_text("+cpu")
        return self

    def group(self, name: str, cpus: float | None) -> Path:
        """A child group limited to `cpus` CPUs (None: no limit)."""
        path = self.parent / name
        path.mkdir()
        self.created.append(path)
        quota = int(cpus * CFS_PERIOD_US) if cpus else None
        if self.version == 1:
            (path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota if quota else -1))
        else:
            (path / "cpu.max").write_text(f"{quota if quota else 'max'} {CFS_PERIOD_US}")
        return path

    def __exit__(self, *_: object) -> None:
        for path in reversed(self.created):
            # A group can only be removed once empty: its processes were stopped before this.
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self.created.clear()


def join_group(group: Path) -> None:
    """Move the calling process into `group` (used between fork and exec: children inherit it)."""
    (group / "cgroup.procs").write_text(str(os.getpid()))


def _join_group_as_postgres(group: Path) -> None:
    """Join the group while still root, then become `postgres` (the server refuses to run as root)."""
    import pwd

    join_group(group)
    account = pwd.getpwnam("postgres")
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[n]) for n in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the servers


@dataclass
class Servers:
    """A Postgres and a Redis of this run's own, listening on the bridge address only."""

    address: str
    folder: Path
    group: Path
    postgres: subprocess.Popen | None = None
    redis: subprocess.Popen | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.address}:{PG_PORT}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@{self.address}:{PG_PORT}/{name}"

    def redis_url(self, db: int) -> str:
        return f"redis://{self.address}:{REDIS_PORT}/{db}"

    def __enter__(self) -> Servers:
        initdb, postgres, redis_server = server_binaries()
        data = self.folder / "pg"
        data.mkdir(parents=True)
        self.folder.chmod(0o755)
        shutil.chown(data, "postgres", "postgres")
        try:
            subprocess.run([str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                           user="postgres", check=True, capture_output=True, timeout=300, cwd="/")
            with (data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.address.rsplit('.', 1)[0]}.0/24 trust\n")
            with (self.folder / "postgres.log").open("wb") as log:
                self.postgres = subprocess.Popen(
                    [str(postgres), "-D", str(data), "-c", f"listen_addresses={self.address}", "-p", str(PG_PORT),
                     "-c", f"unix_socket_directories={data}", "-c", "max_connections=200"],
                    stdout=log, stderr=subprocess.STDOUT, cwd="/",
                    preexec_fn=lambda: _join_group_as_postgres(self.group))
            with (self.folder / "redis.log").open("wb") as log:
                self.redis = subprocess.Popen(
                    [str(redis_server), "--bind", self.address, "--port", str(REDIS_PORT), "--save", "",
                     "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.folder)],
                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: join_group(self.group))
            self._wait_until_up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_up(self) -> None:
        import redis
        import sqlalchemy as sa

        deadline = time.monotonic() + 60
        while True:
            try:
                engine = sa.create_engine(self.admin_url)
                with engine.connect():
                    pass
                engine.dispose()
                redis.Redis.from_url(self.redis_url(0)).ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def cpu_seconds(self) -> float:
        """CPU used so far by the servers (Postgres backends that ended count in the postmaster's children)."""
        total = 0.0
        for process in (self.postgres, self.redis):
            if process is not None and process.poll() is None:
                total += process_cpu_seconds(process.pid)
        backends = [int(p) for p in (self.group / "cgroup.procs").read_text().split()
                    if self.postgres is not None and int(p) != self.postgres.pid
                    and (self.redis is None or int(p) != self.redis.pid)]
        for pid in backends:
            with contextlib.suppress(OSError):
                total += process_cpu_seconds(pid)
        return total

    def __exit__(self, *_: object) -> None:
        for process in (self.redis, self.postgres):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)  # Postgres: fast shutdown; Redis: exits
        for process in (self.redis, self.postgres):
            if process is not None:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# ---------------------------------------------------------------- inputs


def make_studies(folder: Path, count: int) -> None:
    """`count` distinct ECGs: half DICOM, half WFDB, variants of the bundled samples."""
    import pydicom

    folder.mkdir(parents=True)
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    header = (SAMPLES / "demo-wfdb.hea").read_text()
    for n in range(count):
        if n % 2 == 0:
            dataset.AccessionNumber = f"SCALE-{n:05d}"
            dataset.save_as(folder / f"d{n:05d}.dcm")
        else:
            record = folder / f"w{n:05d}"  # a record keeps its header's name; the variant is a comment line
            record.mkdir()
            shutil.copy(SAMPLES / "demo-wfdb.dat", record / "demo-wfdb.dat")
            (record / "demo-wfdb.hea").write_text(header + f"# scale-out variant {n}\n")


# ---------------------------------------------------------------- one round


@dataclass
class HostResult:
    host: str
    address: str
    tasks: int  # Celery tasks this host's worker finished (its log)
    cpu_seconds: float  # its worker's CPU from "ready" to the end of the round (start-up left out)


@dataclass
class RoundResult:
    hosts: int
    cpu_per_host: float
    studies: int
    drafts: int
    steady_seconds: float  # from the 10th to the 90th percentile draft
    steady_drafts: int
    wall_seconds: float  # from the first worker start to the last draft
    per_host: list[HostResult]
    servers_cpu_seconds: float
    client_addresses: list[str]  # where Postgres saw the workers' connections come from

    @property
    def throughput(self) -> float:
        return self.steady_drafts / self.steady_seconds if self.steady_seconds > 0 else 0.0

    @property
    def worker_cpu_seconds(self) -> float:
        return sum(h.cpu_seconds for h in self.per_host)


def _environment(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECGWL_")}
    env.update({"ECGWL_DATABASE_URL": database_url, "ECGWL_REDIS_URL": redis_url, "ECGWL_DATA_DIR": str(data_dir),
                "ECGWL_INTERPRETER": "protocol", "ECGWL_INTERPRET_BATCH_SIZE": "16",
                "ECGWL_INBOX_DIRS": json.dumps([str(data_dir / "inbox")]),
                # one thread per worker process: the host's quota is the CPU it gets
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


def _cpu_when_ready(workers: Sequence[tuple[Host, subprocess.Popen, Path]], timeout: float) -> dict[str, float]:
    """Each worker's CPU seconds when it said it was ready: its start-up, left out of the work's CPU."""
    ready: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ready) < len(workers):
        for host, process, log in workers:
            if host.name not in ready and " ready." in log.read_text(errors="replace"):
                ready[host.name] = process_cpu_seconds(process.pid)
            elif process.poll() is not None:
                raise RuntimeError(f"the worker on {host.name} ended: see {log}")
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not get ready")
        time.sleep(0.05)
    return ready


def _draft_times(engine: object, count: int, timeout: float) -> list[float]:
    """Wait until every study is done; the epoch seconds each one reached awaiting_signoff."""
    import sqlalchemy as sa

    deadline = time.monotonic() + timeout
    done_query = sa.text("SELECT count(*) FROM studies WHERE state IN :states").bindparams(
        sa.bindparam("states", expanding=True))
    while True:
        with engine.connect() as conn:  # type: ignore[attr-defined]
            done = conn.execute(done_query, {"states": list(DONE_STATES)}).scalar_one()
        if done >= count:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {count} studies done after {timeout:.0f} s")
        time.sleep(0.25)
    with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(sa.text(
            "SELECT extract(epoch FROM at) FROM audit_events WHERE action = 'study.state' "
            "AND details->>'to' = 'awaiting_signoff' ORDER BY at")).scalars().all()
    return [float(t) for t in rows]


def steady_window(times: Sequence[float]) -> tuple[float, int]:
    """(seconds, drafts) between the 10th and the 90th percentile of the draft times."""
    if len(times) < 5:
        return (times[-1] - times[0], len(times) - 1) if len(times) > 1 else (0.0, 0)
    ordered = sorted(times)
    first, last = int(round(0.1 * (len(ordered) - 1))), int(round(0.9 * (len(ordered) - 1)))
    return ordered[last] - ordered[first], last - first


def run_round(network: TestNetwork, groups: CpuGroups, servers: Servers, studies_dir: Path, count: int,
              hosts: int, cpu_per_host: float, work: Path, timeout: float = 1800) -> RoundResult:
    """Register `count` studies, then let `hosts` worker hosts work them off; measure."""
    import redis
    import sqlalchemy as sa

    from reports import store

    name = f"scaleout_{hosts}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(servers.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database_url, redis_url = servers.database_url(name), servers.redis_url(hosts % 16)
    store.upgrade(database_url)
    redis.Redis.from_url(redis_url).flushdb()
    data_dir = work / name
    env = _environment(database_url, redis_url, data_dir)
    # Everything is queued before a worker runs, so every host starts on a full queue.
    subprocess.run([str(ECG_WORKLIST), "batch", str(studies_dir), "--no-progress"], env=env, check=True,
                   capture_output=True, timeout=timeout, cwd=work)
    workers: list[tuple[Host, subprocess.Popen, Path]] = []
    engine = store.make_engine(database_url)
    try:
        started = time.time()
        for host in network.hosts[:hosts]:
            group = groups.group(f"{name}-{host.name}", cpu_per_host)
            log = work / f"{name}-{host.name}.log"
            argv = network.command_on(host, [str(ECG_WORKLIST), "worker", "--queues", "prepare,interpret,report",
                                             "--loglevel", "INFO"])
            with log.open("wb") as handle:
                process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=work,
                                           start_new_session=True, preexec_fn=lambda g=group: join_group(g))
            workers.append((host, process, log))
        ready_cpu = _cpu_when_ready(workers, timeout)
        times = _draft_times(engine, count, timeout)
        with engine.connect() as conn:
            addresses = sorted(str(a) for a in conn.execute(sa.text(
                "SELECT DISTINCT client_addr FROM pg_stat_activity WHERE datname = :db AND client_addr IS NOT NULL "
                "AND client_addr <> CAST(:bridge AS inet)"), {"db": name, "bridge": network.bridge_address}).scalars())
            drafts = conn.execute(sa.text("SELECT count(*) FROM studies WHERE state = 'awaiting_signoff'")).scalar_one()
        per_host = [HostResult(host.name, host.address, tasks=0,
                               cpu_seconds=process_cpu_seconds(process.pid) - ready_cpu[host.name])
                    for host, process, _ in workers]
    finally:
        for _, process, _ in workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process, _ in workers:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    for result, (_, _, log) in zip(per_host, workers, strict=True):
        result.tasks = log.read_text(errors="replace").count("] succeeded in ")
    steady_seconds, steady_drafts = steady_window(times)
    return RoundResult(hosts=hosts, cpu_per_host=cpu_per_host, studies=count, drafts=drafts,
                       steady_seconds=steady_seconds, steady_drafts=steady_drafts,
                       wall_seconds=(max(times) - started) if times else 0.0, per_host=per_host,
                       servers_cpu_seconds=0.0, client_addresses=addresses)


@contextlib.contextmanager
def scaleout_lab(max_hosts: int) -> Iterator[tuple[TestNetwork, CpuGroups, Servers, Path]]:
    """The hosts, their CPU groups and the servers, torn down afterwards whatever happens."""
    reason = why_unavailable()
    if reason:
        raise Unavailable(reason)
    with tempfile.TemporaryDirectory(prefix="ecgwl-scaleout-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        with TestNetwork(max_hosts) as network, CpuGroups.detect() as groups:
            with Servers(network.bridge_address, work / "servers", groups.group("servers", None)) as servers:
                yield network, groups, servers, work


def run_scaleout(host_counts: Sequence[int], studies: int, cpu_per_host: float, *,
                 progress: bool = False) -> list[RoundResult]:
    """One round per host count, in order, on one set of hosts and servers."""
    with scaleout_lab(max(host_counts)) as (network, groups, servers, work):
        studies_dir = work / "studies"
        make_studies(studies_dir, studies)
        results = []
        for hosts in host_counts:
            if progress:
                print(f"round with {hosts} host(s): {studies} studies...", file=sys.stderr, flush=True)
            before = servers.cpu_seconds()
            result = run_round(network, groups, servers, studies_dir, studies, hosts, cpu_per_host, work)
            result.servers_cpu_seconds = servers.cpu_seconds() - before
            results.append(result)
            if progress:
                print(f"  {result.throughput:.2f} drafts/s", file=sys.stderr, flush=True)
        return results


def report(results: Sequence[RoundResult]) -> str:
    """The table the benchmark prints: throughput per host count, efficiency against 1 host."""
    base = next((r for r in results if r.hosts == 1), results[0])
    per_host_base = base.throughput / base.hosts
    lines = [f"{results[0].studies} studies per round (DICOM and WFDB), protocol reader, one worker process per "
             f"host, {results[0].cpu_per_host:g} CPU per host (cgroup quota), {os.cpu_count()} cores on the machine",
             f"{'hosts':>5} {'CPU given':>9} {'drafts/s':>9} {'vs linear':>9} {'worker CPU-s':>12} "
             f"{'drafts/CPU-s':>12} {'DB+Redis CPU-s':>14} {'tasks per host':>20} {'seen from':>s}"]
    for r in results:
        efficiency = r.throughput / (r.hosts * per_host_base) if per_host_base else 0.0
        per_cpu = r.drafts / r.worker_cpu_seconds if r.worker_cpu_seconds else 0.0
        tasks = "/".join(str(h.tasks) for h in r.per_host)
        lines.append(f"{r.hosts:5d} {r.hosts * r.cpu_per_host:9.2f} {r.throughput:9.2f} {efficiency:9.2f} "
                     f"{r.worker_cpu_seconds:12.1f} {per_cpu:12.2f} {r.servers_cpu_seconds:14.1f} {tasks:>20} "
                     f"{','.join(r.client_addresses)}")
    lines.append("vs linear = drafts/s / (hosts x drafts/s of 1 host); steady part: 10th to 90th percentile draft")
    used = sum(r.worker_cpu_seconds for r in results)
    drafts = sum(r.drafts for r in results)
    if used:
        lines.append(f"sizing: {drafts / used * 3600:,.0f} studies per worker CPU-core-hour (prepare + protocol "
                     f"reader + report, with their queue and database calls; all rounds, start-up left out)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--hosts", default="1,2,3", help="host counts, one round each (1 first: the baseline)")
    parser.add_argument("--cpu", type=float, default=0.5, help="CPUs given to each host (cgroup quota)")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    try:
        results = run_scaleout(counts, args.studies, args.cpu, progress=True)
    except Unavailable as exc:
        raise SystemExit(f"scale-out cannot run here: {exc}") from None
    print(report(results))


if __name__ == "__main__":
    main()
