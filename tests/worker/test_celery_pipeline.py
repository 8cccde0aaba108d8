"""The pipeline on the real services: Postgres, Redis, real `ecg-worklist worker` and `watch`
processes. Each test gets its own database and Redis db number (tests/conftest.py)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest
import redis
import sqlalchemy as sa

from ingest.intake.watch import walk_records
from reports import audit
from reports.hl7_validate import validate_oru
from reports.store import session_scope
from tests.worker.conftest import SAMPLES, copy_sample
from tests.worker.helpers import audit_actions, audit_details, reports, studies
from tests.worker.processes import Pipeline
from worker.context import PipelineContext
from worker.intake import register_batch_item
from worker.reconcile import reconcile

pytestmark = [pytest.mark.services, pytest.mark.slow]

DONE_WITHIN = 120.0  # seconds: generous for 2 cores; a healthy run takes a fraction


@pytest.fixture
def pipeline(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, postgres_url, redis_url)
    yield running
    running.close()


def _queue_studies(pipeline: Pipeline, folder: Path, **overrides: object) -> list[int]:
    """Register every ECG in `folder` and send its prepare message, as `batch` does (no worker yet)."""
    ctx = PipelineContext.create(pipeline.settings(**overrides))
    try:
        for arrival in walk_records(folder):
            register_batch_item(ctx, arrival, origin="test")
    finally:
        ctx.close()
    return [study.id for study in studies(pipeline.engine)]


def _dicom_variants(folder: Path, count: int) -> None:
    """`count` distinct DICOM files (different accession numbers, so different content)."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    for i in range(count):
        dataset.AccessionNumber = f"DEMO-ACC-9{i:03d}"
        dataset.save_as(folder / f"variant-{i}.dcm")


def _check_draft(message: str) -> None:
    """A validated ORU^R01 draft, read back with the independent `hl7` package."""
    assert validate_oru(message) == []
    parsed = hl7.parse(message)
    assert str(parsed.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    obr = parsed.segment("OBR")
    assert str(obr[4]).startswith("34534-8") and str(obr[25]) == "P"
    observations = parsed.segments("OBX")
    assert observations and all(str(obx[11]) == "P" for obx in observations)
    assert any("awaiting cardiologist sign-off" in str(nte) for nte in parsed.segments("NTE"))


def test_dropped_files_become_validated_drafts_duplicates_and_corrupt_files_do_not(pipeline: Pipeline) -> None:
    settings = pipeline.settings()
    inbox = settings.inbox_dirs[0]
    inbox.mkdir(parents=True)
    pipeline.start("cpu", "worker", "--queues", "prepare,report", "--concurrency", "2")
    pipeline.start("gpu", "worker", "--queues", "interpret")
    pipeline.start("watch", "watch")

    for kind in ("dicom", "wfdb", "pdf", "scan"):
        copy_sample(kind, inbox)
    garbage = b"\x00not an ECG\xff" * 100
    (inbox / "corrupt.dcm").write_bytes(garbage)
    # A DICOM that is recognised (preamble + DICM) but cut short: the worker's reader refuses it.
    (inbox / "truncated.dcm").write_bytes((SAMPLES / "demo-dicom.dcm").read_bytes()[:6000])

    pipeline.wait_for(lambda: sorted(pipeline.states()) == ["awaiting_signoff"] * 4 + ["quarantined"],
                      DONE_WITHIN, "4 drafts and 1 quarantined study")
    pipeline.wait_for(lambda: not any(inbox.iterdir()), 30, "an empty inbox")

    # Every ECG: one study, one validated draft (OBR-25 P) with its .hl7 file, and audit rows.
    drafts = reports(pipeline.engine)
    assert sorted(study_id for study_id, *_ in drafts) == sorted({study_id for study_id, *_ in drafts})
    assert [(version, status) for _, version, status, _ in drafts] == [(1, "P")] * 4
    for study_id, _version, _status, message in drafts:
        _check_draft(message)
        assert (settings.outbound_dir / f"ecgwl-study-{study_id}-v1.hl7").read_bytes() == (message + "\r").encode()
        actions = audit_actions(pipeline.engine, entity_type="study", entity_id=study_id)
        assert actions[0] == "study.registered" and actions.count("study.state") == 5
    formats = sorted(study.source_format for study in studies(pipeline.engine))
    assert formats == ["dicom", "dicom", "pdf", "pdf", "wfdb"]

    # The corrupt file never became a study: it is in quarantine with its reason, audited.
    key = hashlib.sha256(garbage).hexdigest()
    assert (settings.quarantine_dir / key[:16] / "corrupt.dcm").read_bytes() == garbage
    reason = (settings.quarantine_dir / key[:16] / "corrupt.dcm.reason").read_text()
    assert reason.startswith("unrecognised content")
    assert audit_details(pipeline.engine, "file.quarantined")[0]["quarantine"] == key[:16]
    # The truncated DICOM became a study that preparation quarantined, with the reader's reason.
    [bad] = [study for study in studies(pipeline.engine) if study.state == "quarantined"]
    assert bad.last_error and (settings.quarantine_dir / bad.sha256[:16] / "truncated.dcm").exists()
    assert bad.last_error in (settings.quarantine_dir / bad.sha256[:16] / "truncated.dcm.reason").read_text()

    # The same DICOM dropped again (another name): no second study, no second report.
    shutil.copy(SAMPLES / "demo-dicom.dcm", inbox / "sent-again.dcm")
    pipeline.wait_for(lambda: "study.duplicate" in audit_actions(pipeline.engine), 30, "the duplicate's audit row")
    assert not (inbox / "sent-again.dcm").exists()
    assert len(studies(pipeline.engine)) == 5 and len(reports(pipeline.engine)) == 4

    with session_scope(pipeline.engine) as session:
        assert audit.verify_chain(session).ok


def test_a_worker_killed_mid_task_is_recovered_by_its_lease_not_the_visibility_timeout(
    pipeline: Pipeline, tmp_path: Path,
) -> None:
    """SIGKILL a whole worker in the middle of preparing, with Redis's visibility timeout at its
    6-hour default: the study's lease runs out (the reconciler is told to judge by leases only,
    as for a worker on another machine), the reconciler frees it and sends a message, and a new
    worker makes exactly one draft."""
    copy_sample("dicom", tmp_path / "source")
    [study_id] = _queue_studies(pipeline, tmp_path / "source")
    broker = redis.Redis.from_url(pipeline.redis_url)
    short_lease = {"lease_seconds": 3, "heartbeat_seconds": 1}
    slow = pipeline.start("slow", "worker", "--queues", "prepare,report", "--concurrency", "1",
                          test_stage_delay_seconds=30, **short_lease)
    pipeline.wait_for(lambda: _holder(pipeline, study_id) is not None, 60, "the worker to lease the study")
    time.sleep(1.0)  # well inside the 30 s the task sleeps
    slow.kill(signal.SIGKILL)
    assert pipeline.states() == ["queued_prepare"]
    assert broker.hlen("unacked") == 1  # its message is stranded for the visibility timeout (6 h)

    pipeline.start("watch", "watch", reconcile_every_seconds=1, check_local_holders=False, **short_lease)
    pipeline.start("fresh", "worker", "--queues", "prepare,interpret,report", **short_lease)
    pipeline.wait_for(lambda: pipeline.states() == ["awaiting_signoff"], DONE_WITHIN, "the draft")
    time.sleep(1.0)  # let any duplicate delivery show itself
    assert [(sid, version) for sid, version, *_ in reports(pipeline.engine)] == [(study_id, 1)]
    assert audit_actions(pipeline.engine).count("report.draft") == 1
    [lost] = audit_details(pipeline.engine, "study.holder_lost")
    assert lost["why"].startswith("its lease ran out") and lost["holder_deaths"] == 1


def _holder(pipeline: Pipeline, study_id: int) -> str | None:
    with pipeline.engine.connect() as conn:
        return conn.execute(sa.text("SELECT lease_holder FROM studies WHERE id = :id"), {"id": study_id}).scalar()


def test_a_killed_pool_child_puts_its_task_back_at_once(pipeline: Pipeline, tmp_path: Path) -> None:
    """Kill only the prefork child running the task: the worker itself requeues the message
    (task_reject_on_worker_lost) long before any visibility timeout, and a new child finishes it."""
    copy_sample("wfdb", tmp_path / "source")
    [study_id] = _queue_studies(pipeline, tmp_path / "source")
    broker = redis.Redis.from_url(pipeline.redis_url)
    cpu = pipeline.start("cpu", "worker", "--queues", "prepare,report", "--concurrency", "1",
                         test_stage_delay_seconds=4)
    pipeline.start("gpu", "worker", "--queues", "interpret")
    pipeline.wait_for(lambda: broker.hlen("unacked") >= 1 and cpu.children(), 60, "the prepare task to start")
    time.sleep(1.0)
    [child] = cpu.children()
    os.kill(child, signal.SIGKILL)
    # The default visibility timeout is 6 hours: only the requeue can finish this study in time.
    pipeline.wait_for(lambda: pipeline.states() == ["awaiting_signoff"], DONE_WITHIN, "the draft")
    assert [(sid, version) for sid, version, *_ in reports(pipeline.engine)] == [(study_id, 1)]
    assert "WorkerLostError" in cpu.log.read_text()
    # The redelivered task found the study held by a process of this machine that is gone.
    [lost] = audit_details(pipeline.engine, "study.holder_lost")
    assert lost["why"] == "its process on this machine is gone" and lost["holder_deaths"] == 1


def test_a_flushed_redis_loses_no_study(pipeline: Pipeline, tmp_path: Path) -> None:
    """Studies queued, then Redis loses everything: the reconciler finds them free in Postgres
    with no message waiting and sends them again; while their messages wait, it sends nothing."""
    _dicom_variants(tmp_path / "source", 2)
    ids = _queue_studies(pipeline, tmp_path / "source")
    broker = redis.Redis.from_url(pipeline.redis_url)
    assert broker.llen("prepare") == 2
    ctx = PipelineContext.create(pipeline.settings())
    try:
        untouched = reconcile(ctx)
        assert untouched.total_requeued == 0  # two free studies, two messages waiting
        broker.flushdb()
        report = reconcile(ctx)
    finally:
        ctx.close()
    assert sorted(report.requeued["prepare"]) == sorted(ids)
    assert broker.llen("prepare") == 1  # one message names both: a prepare batch (ECGWL_PREPARE_BATCH_SIZE 4)
    # Each re-enqueue is audited, and counted as the study's second attempt at this stage.
    assert [d["attempts"] for d in audit_details(pipeline.engine, "study.requeued")] == [2, 2]
    pipeline.start("all", "worker", "--queues", "prepare,interpret,report")
    pipeline.wait_for(lambda: pipeline.states() == ["awaiting_signoff"] * 2, DONE_WITHIN, "both drafts")
    assert len(reports(pipeline.engine)) == 2


def test_the_gpu_worker_interprets_what_is_ready_as_one_batch(pipeline: Pipeline, tmp_path: Path) -> None:
    _dicom_variants(tmp_path / "source", 5)
    _queue_studies(pipeline, tmp_path / "source")
    pipeline.start("cpu", "worker", "--queues", "prepare,report", "--concurrency", "2")
    pipeline.wait_for(lambda: pipeline.states() == ["queued_interpret"] * 5, DONE_WITHIN, "5 prepared studies")
    gpu = pipeline.start("gpu", "worker", "--queues", "interpret", interpret_batch_size=4)
    pipeline.wait_for(lambda: pipeline.states() == ["awaiting_signoff"] * 5, DONE_WITHIN, "5 drafts")
    pipeline.wait_for(lambda: gpu.log.read_text().count("succeeded") >= 2, 30, "both drain tasks")
    log = gpu.log.read_text()
    # One drain message waited for the five prepared studies (each prepare found it and sent none);
    # it took 4 and handed on the last, which the second took. No task woke to find nothing.
    assert log.count("'4 studies: done=4'") == 1 and log.count("'1 studies: done=1'") == 1
    assert log.count("'empty'") == 0 and len(re.findall(r"interpret_drain\[[^\]]+\] succeeded", log)) == 2
