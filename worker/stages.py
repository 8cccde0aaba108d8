"""The three stages of an ECG's journey as plain functions; Celery tasks are thin wrappers over them.

    prepare_study(ctx, study_id)        queued_prepare  -> (read, prepare, save)  -> queued_interpret
    interpret_studies(ctx, study_ids)   queued_interpret -> (one batch, verify)    -> interpreted
    build_report(ctx, study_id)         interpreted     -> (ORU^R01 draft, outbox, .hl7 file) -> awaiting_signoff

Each function starts by looking at the study's state in the database and does nothing
for a study that is not in the state it expects, so a redelivered or duplicated task is
harmless; the store's writes are themselves idempotent (keyed by study id and report
version) and every state change writes its audit row in the same transaction. Work that
takes time (reading, measuring, interpreting) runs OUTSIDE any transaction; the result is
saved in a short transaction that first checks the state again.

Unusable input found while preparing (`IngestError`) quarantines the study: its files are
copied to `quarantine/<hash>/` with a `.reason` text beside them, and the study moves to
`quarantined` with an audit row. Other errors are the caller's to handle (`run_stage` in
process, `worker.tasks` under Celery).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ingest.intake.archive import record_sha256
from ingest.ecg import Ecg, Measurements, SourceFormat
from ingest.errors import IngestError
from ingest.interpretation import Interpretation
from ingest.prepare import PreparedEcg, prepare
from ingest.intake.quarantine import quarantine_files
from ingest.readers.limits import InputLimits
from ingest.readers.read import read_ecg
from ingest.intake.watch import wfdb_record_files
from reports import store
from reports.db import Report, Study, StudyState
from worker import artifacts
from worker.context import PipelineContext
from worker.dispatch import Stage

log = logging.getLogger(__name__)

S = StudyState
ACTORS = {Stage.PREPARE: "worker:prepare", Stage.INTERPRET: "worker:interpret", Stage.REPORT: "worker:report"}


class Outcome(StrEnum):
    DONE = "done"  # this call moved the study on
    SKIPPED = "skipped"  # the study was not in the state this stage takes (already done, or moved on)
    QUARANTINED = "quarantined"
    FAILED = "failed"


@dataclass(frozen=True)
class _StudyView:
    """What a stage reads from the study row before working outside a transaction."""

    id: int
    state: str
    sha256: str
    source_format: str
    path: Path  # the archived copy, or the original for a batch study
    features: dict[str, Any] | None

    @classmethod
    def of(cls, study: Study) -> _StudyView:
        return cls(study.id, study.state, study.sha256, study.source_format,
                   Path(study.archive_path or study.source_path), study.features)


def _test_delay(ctx: PipelineContext) -> None:
    """TEST-ONLY hook (ECGWL_TEST_STAGE_DELAY_SECONDS): lets a test kill a worker mid-task."""
    if ctx.settings.test_stage_delay_seconds > 0:
        time.sleep(ctx.settings.test_stage_delay_seconds)


def record_files(main: Path, source_format: str) -> list[Path]:
    """The files a study's identity hash covers: the file, or a WFDB header and its signal files."""
    if source_format == SourceFormat.WFDB.value:
        return [main, *wfdb_record_files(main)]
    return [main]


# ---------------------------------------------------------------- prepare


def _report_measurements(ecg: Ecg, prepared: PreparedEcg) -> Measurements | None:
    """The global measurements the draft reports: the device's own when it printed any, else ours."""
    device = ecg.device_measurements
    if device is not None and any(value is not None for value in device.model_dump().values()):
        return device
    return prepared.features.global_ if prepared.features is not None else None


def _quarantine_study(ctx: PipelineContext, view: _StudyView, reason: str) -> None:
    """Copy the study's files to quarantine with the reason, then mark the study quarantined."""
    files = [path for path in record_files(view.path, view.source_format) if path.is_file()]
    if files:
        quarantine_files(files, ctx.settings.quarantine_dir, view.sha256, reason, main=view.path)
    else:  # nothing left to copy: the reason alone still says what happened
        quarantine_files([view.path], ctx.settings.quarantine_dir, view.sha256, reason + " (file missing)")
    with ctx.session() as session:
        if store.claim_study(session, view.id, S.QUEUED_PREPARE) is not None:
            store.quarantine(session, view.id, reason, actor=ACTORS[Stage.PREPARE])
    log.warning("study %s quarantined: %s", view.id, reason)


def _read_and_prepare(view: _StudyView, limits: InputLimits, *, page_images: bool = False) -> tuple[Ecg, PreparedEcg]:
    """Read the study's file (checking it is still the content registered) and prepare it.
    A PDF's pages are drawn only with `page_images` (nothing kept from preparation needs them)."""
    try:
        files = record_files(view.path, view.source_format)
        if record_sha256(files) != view.sha256:
            raise IngestError(view.path, "content changed since it was registered (sha256 differs)")
    except OSError as exc:
        raise IngestError(view.path, f"cannot read the registered file ({type(exc).__name__})") from exc
    ecg = read_ecg(view.path, limits, page_images=page_images)
    return ecg, prepare(ecg)


def prepare_study(ctx: PipelineContext, study_id: int) -> Outcome:
    """Read, prepare and save one study; then queue it for interpretation."""
    actor = ACTORS[Stage.PREPARE]
    with ctx.session() as session:
        view = _StudyView.of(store.get_study(session, study_id))
    if view.state != S.QUEUED_PREPARE:
        return Outcome.SKIPPED
    _test_delay(ctx)
    try:
        ecg, prepared = _read_and_prepare(view, ctx.settings.input_limits)
    except IngestError as exc:
        _quarantine_study(ctx, view, exc.reason)
        return Outcome.QUARANTINED
    artifacts.save_prepared(ctx.settings.data_dir, view.sha256, prepared)
    with ctx.session() as session:
        if store.claim_study(session, study_id, S.QUEUED_PREPARE) is None:
            return Outcome.SKIPPED  # another delivery of this task finished first
        store.save_prepared(session, study_id, actor=actor, demographics=ecg.demographics,
                            measurements=_report_measurements(ecg, prepared), features=prepared.features)
        store.set_state(session, study_id, S.QUEUED_INTERPRET, actor=actor)
    ctx.dispatcher.interpret([study_id])
    return Outcome.DONE


# ---------------------------------------------------------------- interpret


def check_claims(prepared: PreparedEcg, interpretation: Interpretation) -> tuple[list[str], bool]:
    """(flags, critical): where the interpretation's numbers or labels disagree with the
    measured features (`reports.verify`; none for an image-only study, nothing was measured),
    and whether its labels name a critical finding (sorted first on the sign-off queue)."""
    from ingest.protocol import is_critical
    from reports.verify import verify

    flags = [flag.message for flag in verify(interpretation.parsed, prepared.features)]
    return flags, is_critical(interpretation.parsed.labels)


def _load_for_interpretation(ctx: PipelineContext, view: _StudyView) -> PreparedEcg:
    """Preparation's saved output; prepared again from the file if those files are gone."""
    try:
        return artifacts.load_prepared(
            ctx.settings.data_dir, view.sha256, view.features,
            page_loader=artifacts.source_page_loader(view.path, view.source_format, ctx.settings.input_limits))
    except artifacts.ArtifactsMissing:
        log.warning("study %s: prepared files missing, preparing again", view.id)
        return _read_and_prepare(view, ctx.settings.input_limits, page_images=True)[1]


def interpret_studies(ctx: PipelineContext, study_ids: Sequence[int]) -> dict[int, Outcome]:
    """Interpret a batch of prepared studies in ONE call of the interpreter; queue their reports."""
    actor = ACTORS[Stage.INTERPRET]
    ids = list(dict.fromkeys(study_ids))
    with ctx.session() as session:
        rows = session.execute(sa.select(Study).where(Study.id.in_(ids))).scalars().all()
        views = {row.id: _StudyView.of(row) for row in rows}
    outcomes = {study_id: Outcome.SKIPPED for study_id in ids}
    waiting = [views[i] for i in ids if i in views and views[i].state == S.QUEUED_INTERPRET]
    if not waiting:
        return outcomes
    _test_delay(ctx)
    batch: list[tuple[_StudyView, PreparedEcg]] = []
    for view in waiting:
        try:
            batch.append((view, _load_for_interpretation(ctx, view)))
        except Exception as exc:  # one unreadable study must not sink the batch
            mark_failed(ctx, [view.id], Stage.INTERPRET, exc)
            outcomes[view.id] = Outcome.FAILED
    if not batch:
        return outcomes
    interpretations = ctx.interpreter().interpret([prepared for _, prepared in batch])
    if len(interpretations) != len(batch):
        raise RuntimeError(f"interpreter returned {len(interpretations)} results for {len(batch)} ECGs")
    saved = []
    for (view, prepared), interpretation in zip(batch, interpretations, strict=True):
        flags, critical = check_claims(prepared, interpretation)
        with ctx.session() as session:
            if store.claim_study(session, view.id, S.QUEUED_INTERPRET) is None:
                continue
            store.save_interpretation(session, view.id, interpretation, actor=actor, critical=critical, flags=flags)
        saved.append(view.id)
        outcomes[view.id] = Outcome.DONE
    ctx.dispatcher.report(saved)
    return outcomes


# ---------------------------------------------------------------- report


def outbound_path(outbound_dir: Path, study_id: int, version: int) -> Path:
    return outbound_dir / f"ecgwl-study-{study_id}-v{version}.hl7"


def write_outbound(outbound_dir: Path, study_id: int, version: int, message: str) -> Path:
    """The message as a `.hl7` file for interface engines that read folders (written atomically)."""
    path = outbound_path(outbound_dir, study_id, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name ends in .tmp and starts with a dot: folder readers skip both.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes((message + "\r").encode("utf-8"))
    os.replace(temporary, path)
    return path


def build_report(ctx: PipelineContext, study_id: int) -> Outcome:
    """Build, validate and store the draft ORU^R01 (v1, OBR-25 P), its outbox rows and its .hl7 file."""
    actor = ACTORS[Stage.REPORT]
    settings = ctx.settings
    with ctx.session() as session:
        state = store.get_study(session, study_id).state
        if state == S.AWAITING_SIGNOFF and not outbound_path(settings.outbound_dir, study_id, 1).exists():
            # A redelivered task after a crash between the commit and the file: write the file.
            # (Only while the draft is current: never re-send a preliminary after sign-off.
            # A folder engine that already took it gets the same MSH-10 again and can drop it.)
            draft = session.execute(sa.select(Report).where(Report.study_id == study_id, Report.version == 1)
                                    ).scalar_one()
            write_outbound(settings.outbound_dir, study_id, 1, draft.hl7_message)
    if state != S.INTERPRETED:
        return Outcome.SKIPPED
    _test_delay(ctx)
    with ctx.session() as session:
        if store.claim_study(session, study_id, S.INTERPRETED) is None:
            return Outcome.SKIPPED
        report = store.draft_report(session, study_id, endpoints=ctx.endpoints, actor=actor,
                                    result_status=settings.draft_result_status,
                                    destinations=settings.hl7_destination_names)
        version, message = report.version, report.hl7_message
    write_outbound(settings.outbound_dir, study_id, version, message)
    return Outcome.DONE


# ---------------------------------------------------------------- failures


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying later: the database or the broker could not be reached."""
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    return (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError,
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError,
            ConnectionError, TimeoutError)


def _error_text(stage: Stage, exc: BaseException) -> str:
    """A failure as stored and audited: the stage and the error type. Messages of our own
    errors are kept; other libraries' messages may quote values (patient data), so not."""
    if isinstance(exc, (store.StoreError, IngestError)):
        text = str(exc.reason) if isinstance(exc, IngestError) else str(exc)
        return f"{stage.value} failed: {type(exc).__name__}: {text[:300]}"
    return f"{stage.value} failed: {type(exc).__name__} (see the worker log)"


def mark_failed(ctx: PipelineContext, study_ids: Sequence[int], stage: Stage, exc: BaseException) -> None:
    """Move the studies to `failed` with the error (an operator may re-queue them)."""
    error = _error_text(stage, exc)
    for study_id in study_ids:
        try:
            with ctx.session() as session:
                store.fail(session, study_id, error, actor=ACTORS[stage])
        except store.InvalidTransition:
            pass  # it moved on (or was already failed): nothing to record
        except Exception:  # noqa: BLE001 - failing to record a failure must not hide the first error
            log.exception("study %s: could not record the failure", study_id)


def run_stage(ctx: PipelineContext, stage: Stage, study_ids: Sequence[int]) -> dict[int, Outcome]:
    """Run one stage in-process (the embedded runner). A transient error leaves the studies
    queued (the reconciler retries them: outcome SKIPPED); any other error marks them failed."""
    try:
        if stage is Stage.INTERPRET:
            return interpret_studies(ctx, study_ids)
        runner = prepare_study if stage is Stage.PREPARE else build_report
        return {study_id: runner(ctx, study_id) for study_id in study_ids}
    except transient_errors() as exc:
        log.warning("%s of studies %s: transient %s, left queued for the reconciler",
                    stage.value, list(study_ids), type(exc).__name__)
        return {study_id: Outcome.SKIPPED for study_id in study_ids}
    except Exception as exc:
        log.exception("%s of studies %s failed", stage.value, list(study_ids))
        mark_failed(ctx, study_ids, stage, exc)
        return {study_id: Outcome.FAILED for study_id in study_ids}
