"""CPU seconds of processes, for benchmarks that must count every process's work, not only wall time.

    process_cpu(pid)                      user + system CPU seconds of one live process (/proc)
    tree_cpu(pid)                         of a process and all its live descendants
    database_backends(engine, database)   the Postgres server processes serving one database

Read from /proc/<pid>/stat (Linux): utime + stime, in clock ticks. A process that has already
exited cannot be read, so benchmarks read their worker processes while they still run, and
Postgres backends while their connections are open (connection pools keep them open). The
Postgres server must run on this machine for its backends to be read; where it does not,
`database_backends` returns nothing and the benchmark says the database's CPU is not included.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of `pid` (0.0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_pids(pid: int) -> list[int]:
    """`pid` and every live descendant."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue += _children(current)
    return pids


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants (e.g. a Celery prefork parent and children)."""
    return sum(process_cpu(child) for child in tree_pids(pid))


def database_backends(engine: sa.Engine, database: str) -> list[int]:
    """Pids of the Postgres backends connected to `database`, when the server runs here."""
    with engine.connect() as connection:
        pids = connection.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
                                  {"name": database}).scalars().all()
    return [pid for pid in pids if Path(f"/proc/{pid}/stat").exists()]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"
