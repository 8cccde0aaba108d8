"""The stage functions in-process (SQLite): idempotent on redelivery, batched interpretation,
quarantine at preparation, failures recorded (the reconciler and leases: test_leases.py)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ingest.interpretation import Interpretation
from ingest.prepare import PreparedEcg
from ingest.protocol import ProtocolReader
from ingest.intake.watch import walk_records
from reports import store
from reports.db import StudyState
from tests.worker.conftest import SAMPLES, copy_sample
from tests.worker.helpers import audit_actions, audit_details, reports, studies
from worker import artifacts
from worker.context import PipelineContext
from worker.dispatch import Stage
from worker.intake import register_batch_item
from worker.settings import Settings
from worker.stages import Outcome, build_report, interpret_studies, outbound_path, prepare_study


class RecordingReader:
    """The real protocol reader, remembering the size of every batch it was given."""

    name, version = "protocol-reader", "test"

    def __init__(self) -> None:
        self.reader = ProtocolReader()
        self.batch_sizes: list[int] = []

    def interpret(self, batch: list[PreparedEcg]) -> list[Interpretation]:
        self.batch_sizes.append(len(batch))
        return self.reader.interpret(batch)


class BrokenReader:
    name, version = "broken", "0"

    def interpret(self, batch: list[PreparedEcg]) -> list[Interpretation]:
        raise RuntimeError("the interpreter fell over")


def _register(ctx: PipelineContext, folder: Path) -> list[int]:
    for arrival in walk_records(folder):
        register_batch_item(ctx, arrival, origin="test")
    return [study.id for study in studies(ctx.engine)]


def _dicom_variants(folder: Path, count: int) -> None:
    import pydicom

    folder.mkdir(parents=True)
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    for i in range(count):
        dataset.AccessionNumber = f"DEMO-ACC-8{i:03d}"
        dataset.save_as(folder / f"v{i}.dcm")


def test_every_stage_is_idempotent_on_redelivery(ctx: PipelineContext, tmp_path: Path) -> None:
    copy_sample("wfdb", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    assert prepare_study(ctx, study_id) is Outcome.DONE
    assert prepare_study(ctx, study_id) is Outcome.SKIPPED  # a redelivered prepare
    assert interpret_studies(ctx, [study_id, study_id]) == {study_id: Outcome.DONE}
    assert interpret_studies(ctx, [study_id]) == {study_id: Outcome.SKIPPED}
    assert build_report(ctx, study_id) is Outcome.DONE
    audit_before = audit_actions(ctx.engine)
    outbound = outbound_path(ctx.settings.outbound_dir, study_id, 1)
    outbound.unlink()  # the published draft's file went missing (what `check --repair` mends)
    assert build_report(ctx, study_id) is Outcome.SKIPPED
    assert outbound.read_text().startswith("MSH|")  # the redelivery wrote the file, nothing else
    assert audit_actions(ctx.engine) == audit_before
    assert [(sid, version, status) for sid, version, status, _ in reports(ctx.engine)] == [(study_id, 1, "P")]
    [study] = studies(ctx.engine)
    assert study.state == StudyState.AWAITING_SIGNOFF and study.features and study.measurements
    assert study.demographics["patient_id"] == "DEMO-0001"
    # No image is written by the pipeline: the review page draws from the file, a model from the window.
    assert study.image_path is None and not (ctx.settings.data_dir / "images").exists()


def test_the_in_process_runner_interprets_full_batches(ctx: PipelineContext, tmp_path: Path) -> None:
    _dicom_variants(tmp_path / "src", 7)
    _register(ctx, tmp_path / "src")
    reader = RecordingReader()
    ctx._interpreter = reader
    ctx.dispatcher.run_until_idle(ctx)  # batch size 3 (tests/worker/conftest.py)
    assert reader.batch_sizes == [3, 3, 1]
    assert len(reports(ctx.engine)) == 7


def test_interpretation_uses_the_saved_preparation_or_prepares_again(ctx: PipelineContext, tmp_path: Path) -> None:
    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    prepare_study(ctx, study_id)
    [study] = studies(ctx.engine)
    loaded = artifacts.load_prepared(ctx.settings.data_dir, study.sha256, study.features)
    assert loaded.model_signal.shape == (12, 5000) and loaded.ecg.demographics.patient_id == "DEMO-0001"
    # Nothing is decoded or drawn until an image reader asks; then the 12-lead is drawn from the window.
    assert loaded.image is None and "image" in loaded.modalities
    assert loaded.page().size == (1056, 640) and loaded.image is loaded.page()
    # Beside it, what the review page draws: the recording at its own rate, not the model's 500 Hz copy.
    from ingest.readers.read import read_ecg
    from reports.review.ecg_source import load_display_copy

    recorded = read_ecg(Path(study.source_path))
    copy, shown = load_display_copy(artifacts.prepared_folder(ctx.settings.data_dir, study.sha256))
    assert copy.sampling_rate_hz == recorded.sampling_rate_hz and copy.lead_names == recorded.lead_names
    assert np.allclose(shown, recorded.signal[:, :shown.shape[1]], atol=1e-6)
    shutil.rmtree(artifacts.prepared_folder(ctx.settings.data_dir, study.sha256))
    with pytest.raises(artifacts.ArtifactsMissing):
        artifacts.load_prepared(ctx.settings.data_dir, study.sha256, study.features)
    assert interpret_studies(ctx, [study_id]) == {study_id: Outcome.DONE}


def test_a_pdf_page_is_rendered_from_the_kept_file_only_when_an_image_reader_asks(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    copy_sample("scan", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    assert prepare_study(ctx, study_id) is Outcome.DONE
    [study] = studies(ctx.engine)
    path = Path(study.archive_path or study.source_path)
    asked: list[Path] = []

    def loader() -> object:
        asked.append(path)
        return artifacts.source_page_loader(path, study.source_format, ctx.settings.input_limits)()

    loaded = artifacts.load_prepared(ctx.settings.data_dir, study.sha256, study.features, page_loader=loader)
    assert loaded.model_signal is None and loaded.image is None and asked == []
    assert loaded.modalities == ["image"]
    page = loaded.page()
    assert page.width > 1000 and asked == [path]
    loaded.page()
    assert asked == [path]  # rendered once, then kept
    assert artifacts.source_page_loader(path, "dicom", ctx.settings.input_limits) is None
    # For people, preparation kept the scan's page beside the display copy: the review host
    # shows it without a PDF library.
    from reports.review.ecg_source import DISPLAY_PAGE, load_display_copy

    folder = artifacts.prepared_folder(ctx.settings.data_dir, study.sha256)
    copy, shown = load_display_copy(folder)
    assert copy.has_page and shown is None
    kept = (folder / DISPLAY_PAGE).read_bytes()
    assert kept.startswith(b"\x89PNG") and int.from_bytes(kept[16:20], "big") == page.width


def test_unusable_input_is_quarantined_at_preparation(ctx: PipelineContext, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "cut.dcm").write_bytes((SAMPLES / "demo-dicom.dcm").read_bytes()[:6000])
    [study_id] = _register(ctx, src)
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    assert prepare_study(ctx, study_id) is Outcome.QUARANTINED
    [study] = studies(ctx.engine)
    assert study.state == StudyState.QUARANTINED and study.last_error
    folder = ctx.settings.quarantine_dir / study.sha256[:16]
    assert (folder / "cut.dcm").read_bytes() == (src / "cut.dcm").read_bytes()
    assert (folder / "cut.dcm.reason").read_text().startswith(study.last_error)
    assert (src / "cut.dcm").exists()  # a batch original is copied, never moved
    assert audit_details(ctx.engine, "study.state")[-1]["to"] == "quarantined"


def test_a_batch_original_changed_after_registration_is_not_read_as_the_registered_study(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    [path] = copy_sample("pdf", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    shutil.copy(SAMPLES / "demo-scan.pdf", path)  # someone overwrote the original
    assert prepare_study(ctx, study_id) is Outcome.QUARANTINED
    assert "content changed since it was registered" in studies(ctx.engine)[0].last_error


def test_an_interpreter_error_fails_the_batch_with_the_error_type_only(ctx: PipelineContext, tmp_path: Path) -> None:
    _dicom_variants(tmp_path / "src", 2)
    _register(ctx, tmp_path / "src")
    ctx._interpreter = BrokenReader()
    ctx.dispatcher.run_until_idle(ctx)
    assert [s.state for s in studies(ctx.engine)] == ["failed", "failed"]
    # The error type and where it happened, never the message (another library's may quote patient data).
    error = studies(ctx.engine)[0].last_error
    assert error.startswith("interpret failed: RuntimeError at tests/worker/test_stages.py:")
    assert error.endswith("(see the worker log)") and "fell over" not in error


def test_the_model_interpreter_is_loaded_once_per_process(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ECGWL_INTERPRETER=model: ECG-R1 (here a tiny random demonstration checkpoint) behind the
    same interface; loaded on first use and kept; its drafts say it is a demonstration."""
    import model.engines
    from model.tiny import save_tiny_model

    checkpoint = save_tiny_model(tmp_path / "tiny", demonstration=True)
    loads = []
    real_load = model.engines.load_engine

    def counting_load(*args: object, **kwargs: object) -> object:
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(model.engines, "load_engine", counting_load)
    settings = make_settings(interpreter="model", model_path=str(checkpoint), max_new_tokens=8)
    store.upgrade(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    copy_sample("dicom", tmp_path / "src")
    copy_sample("scan", tmp_path / "src")
    ids = _register(ctx, tmp_path / "src")
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    for study_id in ids:
        prepare_study(ctx, study_id)
    for study_id in ids:  # two separate interpret calls, as two drain tasks would be
        assert interpret_studies(ctx, [study_id]) == {study_id: Outcome.DONE}
        build_report(ctx, study_id)
    assert len(loads) == 1
    for _sid, _version, status, message in reports(ctx.engine):
        assert status == "P" and "DEMONSTRATION MODEL - NOT FOR CLINICAL USE" in message
        assert "Interpreter: ecg-r1" in message
    ctx.close()


def test_a_reader_crash_quarantines_the_study_with_a_reason(ctx: PipelineContext, tmp_path: Path) -> None:
    """A WFDB record at fs = 0.001 Hz: the input limits refuse it with their own reason; with
    that limit lowered, preparation raises a plain ValueError (not an IngestError) and the
    study is still quarantined, with a reason naming the error and where it happened."""
    import numpy as np
    import wfdb

    src = tmp_path / "src"
    src.mkdir()
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    wfdb.wrsamp("slow", fs=0.001, units=["mV"] * 12, sig_name=names, fmt=["16"] * 12, write_dir=str(src),
                p_signal=np.random.default_rng(0).normal(0, 0.1, (5000, 12)))
    ctx.settings.input_limits = ctx.settings.input_limits.model_copy(update={"min_sampling_rate_hz": 0.0001})
    [study_id] = _register(ctx, src)
    ctx.dispatcher.run_until_idle(ctx)
    [study] = studies(ctx.engine)
    assert study.state == StudyState.QUARANTINED
    assert study.last_error.startswith("could not be read or prepared: ValueError at ingest/")
    reason = ctx.settings.quarantine_dir / study.sha256[:16] / "slow.hea.reason"
    assert reason.read_text().startswith(study.last_error)
    assert (ctx.settings.quarantine_dir / study.sha256[:16] / "slow.dat").is_file()


def test_a_draft_that_cannot_be_valid_hl7_quarantines_the_study_without_quoting_values(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    """A line break inside the accession number: whatever the reader does with it, the study
    ends with a reason (here or at the reader), never `failed` without one."""
    import pydicom

    src = tmp_path / "src"
    src.mkdir()
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    dataset.AccessionNumber = "ACC\r\n4711"
    dataset.save_as(src / "crlf.dcm")
    _register(ctx, src)
    ctx.dispatcher.run_until_idle(ctx)
    [study] = studies(ctx.engine)
    if study.state == StudyState.AWAITING_SIGNOFF:  # the reader cleaned the value: a valid draft
        [(_sid, _version, _status, message)] = reports(ctx.engine)
        assert "\n" not in message and "4711" in message
        return
    assert study.state == StudyState.QUARANTINED and study.last_error
    assert "4711" not in study.last_error  # the reason names the problem, not the value
    reason = ctx.settings.quarantine_dir / study.sha256[:16] / "crlf.dcm.reason"
    assert reason.read_text().startswith(study.last_error)


def test_each_stage_reads_the_study_with_its_lease_and_once_to_save(ctx: PipelineContext, tmp_path: Path) -> None:
    """The row a stage works from comes with its lease; saving locks it once more; only the
    interpret stage reads the features; a completed stage needs no transaction to free its lease."""
    import sqlalchemy as sa

    from worker.runner import run_stage

    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    seen: list[str] = []
    sa.event.listen(ctx.engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_rest: seen.append(" ".join(statement.split())))
    for stage, saves in ((Stage.PREPARE, 1), (Stage.INTERPRET, 1), (Stage.REPORT, 2)):
        seen.clear()
        assert run_stage(ctx, stage, [study_id]) == {study_id: Outcome.DONE}
        whole_rows = [s for s in seen if s.startswith("SELECT studies.id, studies.sha256")]
        assert len(whole_rows) == 1 + saves, (stage, whole_rows)  # the lease, then each saving transaction
        assert any("studies.features" in s for s in whole_rows) == (stage is Stage.INTERPRET)
        assert sum(s.startswith("SELECT audit_head") for s in seen) == saves  # one head lock per transaction
        assert not any(s.startswith("UPDATE studies SET lease_holder=?, lease_expires_at=? WHERE studies.id IN")
                       for s in seen)  # no release: the state change ended the lease
    assert studies(ctx.engine)[0].state == StudyState.AWAITING_SIGNOFF
    assert studies(ctx.engine)[0].lease_holder is None


def _interpreted(ctx: PipelineContext, folder: Path, count: int) -> list[int]:
    """`count` DICOM studies (accession numbers differ) prepared and interpreted, their report messages dropped."""
    from worker.runner import run_stage

    _dicom_variants(folder, count)
    ids = _register(ctx, folder)
    for study_id in ids:
        run_stage(ctx, Stage.PREPARE, [study_id])
    run_stage(ctx, Stage.INTERPRET, ids)
    ctx.dispatcher.queues = {stage: type(queue)() for stage, queue in ctx.dispatcher.queues.items()}
    assert {study.state for study in studies(ctx.engine)} == {StudyState.INTERPRETED}
    return ids


def test_a_batch_of_drafts_is_drafted_in_one_transaction_and_published_in_one_more(
    ctx: PipelineContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three reports: their lease, their drafts and their publication are three transactions in all
    (one per study and step before batching: nine), the outbound folder is synced once, and each
    study's own audit rows and file are as a report of its own would leave them."""
    import os

    import sqlalchemy as sa

    from worker.runner import run_stage

    ids = _interpreted(ctx, tmp_path / "src", 3)
    commits: list[int] = []
    sa.event.listen(ctx.engine, "commit", lambda _connection: commits.append(1))
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    assert run_stage(ctx, Stage.REPORT, ids) == dict.fromkeys(ids, Outcome.DONE)
    assert len(commits) == 3  # the lease, the drafts, the publication
    assert len(synced) == 3 + 1  # each file, then the folder once
    assert {study.state for study in studies(ctx.engine)} == {StudyState.AWAITING_SIGNOFF}
    for study_id, version, status, message in reports(ctx.engine):
        assert (version, status) == (1, "P")
        assert outbound_path(ctx.settings.outbound_dir, study_id, 1).read_bytes() == (message + "\r").encode()
    published = [d for d in audit_details(ctx.engine, "study.state") if d["to"] == "awaiting_signoff"]
    assert sorted(d["outbound_file"] for d in published) == sorted(
        outbound_path(ctx.settings.outbound_dir, study_id, 1).name for study_id in ids)
    assert len(audit_details(ctx.engine, "report.draft")) == 3


def test_one_draft_that_cannot_be_made_is_set_aside_and_the_rest_of_its_batch_goes_on(
    ctx: PipelineContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a batch of three, the store refuses the second study's message (quarantined, with the
    validator's reason) and drafting the third crashes (failed, with the error); the first is
    drafted and published once, and nothing of the other two is stored."""
    from worker.runner import run_stage

    ids = _interpreted(ctx, tmp_path / "src", 3)
    refused, crashing = ids[1], ids[2]
    real_drafts = store.draft_reports

    def drafts(session, study_ids, **kwargs):  # type: ignore[no-untyped-def]
        made = real_drafts(session, study_ids, **kwargs)  # the batch written first: the roll-back must undo it
        if refused in study_ids:
            raise store.DraftRefused(refused, store.InvalidMessage(["PID-3 'X\nY' holds a line break"]))
        if crashing in study_ids:
            raise store.DraftRefused(crashing, ZeroDivisionError("a bug in drafting"))
        return made

    monkeypatch.setattr(store, "draft_reports", drafts)
    outcomes = run_stage(ctx, Stage.REPORT, ids)
    assert outcomes == {ids[0]: Outcome.DONE, refused: Outcome.QUARANTINED, crashing: Outcome.FAILED}
    by_id = {study.id: study for study in studies(ctx.engine)}
    assert by_id[ids[0]].state == StudyState.AWAITING_SIGNOFF
    assert by_id[refused].state == StudyState.QUARANTINED
    assert "line break" in by_id[refused].last_error and "X\nY" not in by_id[refused].last_error
    assert by_id[crashing].state == StudyState.FAILED and "ZeroDivisionError" in by_id[crashing].last_error
    assert [(sid, version) for sid, version, _status, _message in reports(ctx.engine)] == [(ids[0], 1)]
    assert [d["study_id"] for d in audit_details(ctx.engine, "report.draft")] == [ids[0]]
    assert not outbound_path(ctx.settings.outbound_dir, refused, 1).exists()
    assert not outbound_path(ctx.settings.outbound_dir, crashing, 1).exists()


def test_a_batch_of_studies_is_prepared_and_saved_in_one_transaction_with_a_bad_file_set_aside(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    """Three studies to prepare, the second's file cut short after it was registered: the lease and
    the saves of the other two are two transactions in all (one lease and one save per study
    before batching: six), the cut file is quarantined with its reason, and both good studies go on
    to interpretation with their measurements."""
    import sqlalchemy as sa

    from worker.runner import run_stage

    _dicom_variants(tmp_path / "src", 3)
    ids = _register(ctx, tmp_path / "src")
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    broken = Path(studies(ctx.engine)[1].source_path)
    broken.write_bytes(broken.read_bytes()[:2000])  # the registered content is no longer there
    commits: list[int] = []
    sa.event.listen(ctx.engine, "commit", lambda _connection: commits.append(1))
    outcomes = run_stage(ctx, Stage.PREPARE, ids)
    assert outcomes == {ids[0]: Outcome.DONE, ids[1]: Outcome.QUARANTINED, ids[2]: Outcome.DONE}
    assert len(commits) == 3  # the lease, the quarantine, the two saves together
    by_id = {study.id: study for study in studies(ctx.engine)}
    assert "content changed since it was registered" in by_id[ids[1]].last_error
    for study_id in (ids[0], ids[2]):
        assert by_id[study_id].state == StudyState.QUEUED_INTERPRET and by_id[study_id].measurements
    assert list(ctx.dispatcher.queues[Stage.INTERPRET]) == [ids[0], ids[2]]
    assert [d["to"] for d in audit_details(ctx.engine, "study.state")].count("queued_interpret") == 2
