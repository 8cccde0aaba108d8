"""`ecg-worklist batch --wait` with real Celery workers: it says what it waits for, shows a bar,
and each poll reads the database's counters, never the studies or the drafts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.intake.watch import walk_records
from tests.worker.conftest import copy_sample
from tests.worker.processes import ECG_WORKLIST, Pipeline
from worker.cli_pipeline import _wait_until_settled
from worker.context import PipelineContext
from worker.intake import register_batch_item

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def pipeline(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, postgres_url, redis_url)
    yield running
    running.close()


def test_batch_wait_shows_progress_and_polls_only_the_counters(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.start("worker", "worker", "--queues", "prepare,interpret,report")
    archive = tmp_path / "archive"
    copy_sample("dicom", archive)
    copy_sample("wfdb", archive)
    done = subprocess.run([str(ECG_WORKLIST), "batch", "--wait", "240", str(archive)], env=pipeline.env(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "waiting up to 240 s for the workers" in done.stdout
    assert "waiting for the workers" in done.stderr and "2/2" in done.stderr  # the bar, to the end
    assert "draft reports awaiting cardiologist sign-off: 2" in done.stdout
    assert "Traceback" not in done.stderr

    # The same wait in this process, every statement it sends recorded: counters only.
    more = tmp_path / "more"
    copy_sample("pdf", more)
    ctx = PipelineContext.create(pipeline.settings())
    statements: list[str] = []
    try:
        for arrival in walk_records(more):
            register_batch_item(ctx, arrival, origin="test")
        sa.event.listen(ctx.engine, "before_cursor_execute",
                        lambda _c, _cur, statement, *_a: statements.append(statement.lower()))
        assert _wait_until_settled(ctx, 240, progress=False)
    finally:
        ctx.close()
    assert statements
    assert all("study_counts" in s for s in statements if s.lstrip().startswith("select")), statements
    assert not any("from studies" in s or "outbox" in s or "reports" in s for s in statements)
    assert pipeline.states() == ["awaiting_signoff"] * 3
