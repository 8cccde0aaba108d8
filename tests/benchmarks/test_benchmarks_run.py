"""The benchmarks run: each is started at a small size, as CI does, so none can rot unnoticed.

Timings are not asserted here (they belong to the benchmarks' own output); what is asserted
is that every set-up ran to the end on real services and printed its rows and its goal line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, require_service

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_pipeline_benchmark_runs_every_set_up_to_the_last_draft(redis_url: str) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    out = _run("pipeline.py", "--studies", "5", "--rounds", "1", "--batch-size", "4",
               "--postgres-admin-url", POSTGRES_ADMIN_URL, "--redis-url", redis_url)
    for label in ("work only", "stages in-process on Postgres", "through Redis/Celery", "watch -> queues -> report"):
        assert label in out
    # The same work in one process per core at once, and the share of the ratio that is.
    assert re.search(r"work only, \d+ processes at once\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+awaiting_signoff 5", out)
    assert "processes run it at once (median round)" in out
    assert "5 inputs: 2 dicom-1000" in out and out.count("goal: end-to-end CPU per study") == 2
    # Batches of 4 in process, and the interpret worker's batches read from its log (5 studies in all).
    assert re.search(r"stages in-process on Postgres\s+4: 1, 1: 1; 0 empty", out)
    watch = re.search(r"watch -> queues -> report \(3 processes\)\s+([0-9:, ]+); \d+ empty", out)
    assert watch and sum(int(size) * int(times) for size, times in
                         (pair.split(": ") for pair in watch.group(1).split(", "))) == 5


def test_the_interpret_batches_are_read_from_the_celery_log(tmp_path) -> None:
    from benchmarks.pipeline import drained_batches

    log = tmp_path / "worker.log"
    log.write_text(
        "[2026-12-05 23:30:01,101: INFO/MainProcess] Task ecgwl.interpret_drain[9f2c-1] succeeded in 0.51s: "
        "'16 studies: done=16'\n"
        "[2026-12-05 23:30:01,202: INFO/MainProcess] Task ecgwl.prepare[9f2c-2] succeeded in 0.03s: '1 studies: done=1'\n"
        "[2026-12-05 23:30:01,303: INFO/MainProcess] Task ecgwl.interpret_drain[9f2c-3] succeeded in 2.1e-05s: 'empty'\n"
        "[2026-12-05 23:30:01,404: INFO/MainProcess] Task ecgwl.interpret_drain[9f2c-4] succeeded in 0.2s: "
        "'3 studies: done=2, failed=1'\n")
    assert drained_batches([log]) == ([16, 3], 1)


@pytest.mark.slow
def test_the_preparation_benchmark_runs_ours_and_the_naive_pipeline() -> None:
    out = _run("prepare.py", "--count", "5", "--rounds", "1")
    assert "5 inputs: 2 dicom-1000" in out and "naive/ours CPU" in out and "goal: <= 25 ms CPU per ECG" in out
