"""`ecg-worklist check [--repair]` and `ecg-worklist requeue`, in-process on SQLite (no broker)."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner, Result

from reports import store
from reports.db import StudyState
from tests.worker.conftest import copy_sample
from tests.worker.helpers import audit_details, reports, studies
from worker.batch import run_batch, run_in_process
from worker.cli import main
from worker.context import PipelineContext
from worker.settings import Settings
from worker.stages import outbound_path

S = StudyState


def _cli(args: list[str], data_dir: Path) -> Result:
    env = {"ECGWL_DATA_DIR": str(data_dir), "ECGWL_DATABASE_URL": "", "ECGWL_REDIS_URL": ""}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def _processed(make_settings: Callable[..., Settings], tmp_path: Path, *kinds: str) -> Settings:
    settings = make_settings()
    store.upgrade(settings.effective_database_url)
    for kind in kinds:
        copy_sample(kind, tmp_path / "src")
    ctx = PipelineContext.create(settings)
    run_batch(ctx, tmp_path / "src", progress=False)
    run_in_process(ctx, progress=False)
    ctx.close()
    return settings


def test_check_lists_what_is_missing_and_repair_writes_it_again(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    settings = _processed(make_settings, tmp_path, "dicom", "wfdb")
    engine = store.make_engine(settings.effective_database_url)
    by_format = {study.source_format: study for study in studies(engine)}
    dicom, wfdb = by_format["dicom"], by_format["wfdb"]
    assert _cli(["check"], settings.data_dir).output.startswith("0 missing")

    hl7 = outbound_path(settings.data_dir.resolve() / "outbound", dicom.id, 1)
    message = hl7.read_bytes()
    hl7.unlink()  # e.g. the outbound volume was restored from an old backup
    (Path(wfdb.archive_path or wfdb.source_path).with_suffix(".dat")).unlink()  # the original's signal file
    result = _cli(["check"], settings.data_dir)
    assert result.exit_code == 1
    assert f"study {dicom.id} (awaiting_signoff): outbound .hl7 missing: {hl7}" in result.output
    assert f"study {wfdb.id} (awaiting_signoff): original missing" in result.output
    assert "2 missing" in result.output

    repaired = _cli(["check", "--repair"], settings.data_dir)
    assert f"study {dicom.id}: outbound .hl7 written again (same MSH-10)" in repaired.output
    assert f"study {wfdb.id}: cannot be repaired here (original)" in repaired.output
    assert hl7.read_bytes() == message
    assert "after repair: 1 missing" in repaired.output and repaired.exit_code == 1
    engine.dispose()


def test_check_finds_and_rewrites_missing_preparation_files(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    import shutil

    from worker import artifacts
    from worker.stages import prepare_study

    settings = make_settings()
    store.upgrade(settings.effective_database_url)
    copy_sample("dicom", tmp_path / "src")
    ctx = PipelineContext.create(settings)
    run_batch(ctx, tmp_path / "src", progress=False)
    [study] = studies(ctx.engine)
    prepare_study(ctx, study.id)  # prepared, waiting for the GPU
    folder = artifacts.prepared_folder(ctx.settings.data_dir, study.sha256)
    signal = (folder / "signal.npy").read_bytes()
    shutil.rmtree(folder)
    ctx.close()
    result = _cli(["check"], settings.data_dir)
    assert f"study {study.id} (queued_interpret): prepared files missing" in result.output
    repaired = _cli(["check", "--repair"], settings.data_dir)
    assert f"study {study.id}: preparation's files written again" in repaired.output
    assert "after repair: 0 missing" in repaired.output and repaired.exit_code == 0
    assert (folder / "signal.npy").read_bytes() == signal  # the same model window


def test_check_rewrites_a_missing_display_copy_of_a_reported_study(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    """A study prepared before the display copy existed (or whose copy was lost): the slim review
    host cannot read the original, so `check` lists it and `check --repair` writes it again."""
    from reports.review.ecg_source import DISPLAY_META, DISPLAY_SIGNAL
    from worker import artifacts

    settings = _processed(make_settings, tmp_path, "dicom")
    engine = store.make_engine(settings.effective_database_url)
    [study] = studies(engine)
    engine.dispose()
    folder = artifacts.prepared_folder(settings.data_dir, study.sha256)
    drawn = (folder / DISPLAY_SIGNAL).read_bytes()
    (folder / DISPLAY_META).unlink()
    (folder / DISPLAY_SIGNAL).unlink()
    result = _cli(["check"], settings.data_dir)
    assert f"study {study.id} (awaiting_signoff): display copy missing: {folder / DISPLAY_META}" in result.output
    assert result.exit_code == 1
    repaired = _cli(["check", "--repair"], settings.data_dir)
    assert f"study {study.id}: the review page's display copy written again" in repaired.output
    assert "after repair: 0 missing" in repaired.output and repaired.exit_code == 0
    assert (folder / DISPLAY_SIGNAL).read_bytes() == drawn  # the same samples as the stage wrote
    engine = store.make_engine(settings.effective_database_url)
    assert [s.state for s in studies(engine)] == [S.AWAITING_SIGNOFF.value]  # the study itself untouched
    engine.dispose()


def test_requeue_sends_failed_and_quarantined_studies_back_audited(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    settings = _processed(make_settings, tmp_path, "dicom", "pdf")
    engine = store.make_engine(settings.effective_database_url)
    by_format = {study.source_format: study for study in studies(engine)}
    dicom, pdf = by_format["dicom"], by_format["pdf"]
    with store.session_scope(engine) as session:  # as a bug in the report stage would leave them
        session.execute(sa.text("DELETE FROM outbox"))
        session.execute(sa.text("DELETE FROM reports"))
        for study_id, state in ((dicom.id, "failed"), (pdf.id, "quarantined")):
            session.execute(sa.text("UPDATE studies SET state = :s, last_error = 'x' WHERE id = :id"),
                            {"s": state, "id": study_id})
    for path in (settings.data_dir / "outbound").iterdir():
        path.unlink()

    assert "re-queued 0" in _cli(["requeue", "--study", "999"], settings.data_dir).output
    result = _cli(["requeue", "--state", "failed", "--state", "quarantined", "--reason", "fixed the bug"],
                  settings.data_dir)
    # failed with its interpretation stored -> straight to the report; quarantined -> prepared again
    assert "re-queued 2 studies (prepare: 1, report: 1)" in result.output
    assert [s.state for s in studies(engine)] == [S.AWAITING_SIGNOFF, S.AWAITING_SIGNOFF]
    assert len(reports(engine)) == 2
    moves = [d for d in audit_details(engine, "study.state") if d.get("by") == "operator"]
    assert [(d["from"], d["to"], d["reason"]) for d in moves] == [
        ("failed", "interpreted", "fixed the bug"), ("quarantined", "queued_prepare", "fixed the bug")]
    with engine.connect() as conn:
        actors = set(conn.execute(sa.text(
            "SELECT actor FROM audit_events WHERE details LIKE '%fixed the bug%'")).scalars())
    assert actors == {f"operator:{getpass.getuser()}"}
    engine.dispose()


def test_requeue_leaves_a_study_a_live_worker_holds(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from reports.db import utcnow

    settings = make_settings()
    store.upgrade(settings.effective_database_url)
    copy_sample("dicom", tmp_path / "src")
    ctx = PipelineContext.create(settings)
    run_batch(ctx, tmp_path / "src", progress=False)
    [study] = studies(ctx.engine)
    with ctx.session() as session:
        row = store.get_study(session, study.id, for_update=True)
        row.lease_holder, row.lease_expires_at = "gpu-host:77:1", utcnow() + dt.timedelta(minutes=5)
    ctx.close()
    result = _cli(["requeue", "--state", "queued_prepare"], settings.data_dir)
    assert "re-queued 0 studies" in result.output and "held by gpu-host:77:1" in result.output
