"""The three stages of an ECG's journey as plain functions; Celery tasks are thin wrappers over them.

    prepare_studies(ctx, views)         queued_prepare  -> (read, prepare, save)  -> queued_interpret
    interpret_studies(ctx, study_ids)   queued_interpret -> (one batch, verify)    -> interpreted
    build_reports(ctx, views)           interpreted     -> (ORU^R01 drafts, .hl7 files written, outbox) -> awaiting_signoff

Each function starts by looking at the study's state in the database and does nothing
for a study that is not in the state it expects, so a redelivered or duplicated task is
harmless; the store's writes are themselves idempotent (keyed by study id and report
version) and every state change writes its audit row in the same transaction. Work that
takes time (reading, measuring, interpreting) runs OUTSIDE any transaction; the result is
saved in a short transaction that first checks the state again. Which worker may run a
stage on a study (its lease) is decided before, by `worker.runner.run_stage`.

Input that cannot be used quarantines the study: its files are copied to
`quarantine/<hash>/` with a `.reason` text beside them, and the study moves to
`quarantined` with an audit row. That is any error of a reader or of preparation (an
`IngestError` says exactly why; anything else is named by its type and place), and a draft
that cannot be a valid HL7 message because of what the file holds. Other errors are
`worker.runner`'s to sort out (wait, retry later, or `failed` with the reason).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

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
from reports import audit, store
from reports.db import Report, Study, StudyState
from reports.triage import Triage
from worker import artifacts
from worker.context import PipelineContext
from worker.dispatch import Stage, hand_on
from worker.failures import database_errors, error_text, retry_later_reason, unreadable_reason
from worker.leases import StudyView

log = logging.getLogger(__name__)

S = StudyState
ACTORS = {Stage.PREPARE: "worker:prepare", Stage.INTERPRET: "worker:interpret", Stage.REPORT: "worker:report"}


class Outcome(StrEnum):
    DONE = "done"  # this call moved the study on
    SKIPPED = "skipped"  # the study was not in the state this stage takes (already done, or moved on)
    QUARANTINED = "quarantined"
    FAILED = "failed"
    RETRY = "retry"  # a passing condition (disk full, broker down): freed, retried after a backoff


def _test_hooks(ctx: PipelineContext, stage: Stage, views: list[StudyView]) -> None:
    """TEST-ONLY hooks, inert in production: ECGWL_TEST_STAGE_DELAY_SECONDS lets a test kill a
    worker mid-task; ECGWL_TEST_POISON ("stage:text") makes a file that kills its worker."""
    if ctx.settings.test_poison:
        poison_stage, _, marker = ctx.settings.test_poison.partition(":")
        if poison_stage == stage.value and any(marker in view.path.name for view in views):
            log.error("TEST-ONLY poison file at %s: this process kills itself", stage.value)
            os.kill(os.getpid(), signal.SIGKILL)
    if ctx.settings.test_stage_delay_seconds > 0:  # per study: a GPU batch takes longer the larger it is
        time.sleep(ctx.settings.test_stage_delay_seconds * len(views))


def record_files(main: Path, source_format: str) -> list[Path]:
    """The files a study's identity hash covers: the file, or a WFDB header and its signal files."""
    if source_format == SourceFormat.WFDB.value:
        return [main, *wfdb_record_files(main)]
    return [main]


# ---------------------------------------------------------------- prepare


def _report_measurements(ecg: Ecg, prepared: PreparedEcg) -> tuple[Measurements | None, dict[str, str]]:
    """The global measurements the draft reports, one value per quantity: the device's where it
    printed one, ours otherwise (no PR or P axis of ours in fibrillation or flutter), and where
    each came from (`reports.measurements.report_values`)."""
    from reports.measurements import report_values

    return report_values(ecg.device_measurements, prepared.features)


def _copy_to_quarantine(ctx: PipelineContext, view: StudyView, reason: str) -> Path:
    files = [path for path in record_files(view.path, view.source_format) if path.is_file()]
    if files:
        return quarantine_files(files, ctx.settings.quarantine_dir, view.sha256, reason, main=view.path)
    # Nothing left to copy: the reason alone still says what happened.
    return quarantine_files([view.path], ctx.settings.quarantine_dir, view.sha256, reason + " (file missing)")


def keep_in_quarantine(ctx: PipelineContext, study_id: int, reason: str) -> Path:
    """Copy a study's files to quarantine with `reason` beside them (no state change); the reason file."""
    return _copy_to_quarantine(ctx, _read_view(ctx, study_id), reason)


def _quarantine_study(ctx: PipelineContext, view: StudyView, reason: str, stage: Stage,
                      expected: StudyState = S.QUEUED_PREPARE) -> None:
    """Copy the study's files to quarantine with the reason, then mark the study quarantined."""
    _copy_to_quarantine(ctx, view, reason)
    with ctx.session() as session:
        if store.claim_study(session, view.id, expected) is not None:
            store.quarantine(session, view.id, reason, actor=ACTORS[stage])
    log.warning("study %s quarantined: %s", view.id, reason)


def _read_and_prepare(view: StudyView, limits: InputLimits, *, page_images: bool = False) -> tuple[Ecg, PreparedEcg]:
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


def _read_view(ctx: PipelineContext, study_id: int) -> StudyView:
    """The study row as a stage starts from it, when its lease did not bring it (JSON unread)."""
    with ctx.session() as session:
        return StudyView.of(store.get_study(session, study_id, content=False))


def prepare_study(ctx: PipelineContext, study_id: int, *, view: StudyView | None = None) -> Outcome:
    """`prepare_studies` for one study (`view`: the row as its lease read it, else read here)."""
    return prepare_studies(ctx, [view or _read_view(ctx, study_id)])[study_id]


def prepare_studies(ctx: PipelineContext, views: Sequence[StudyView]) -> dict[int, Outcome]:
    """Read, prepare and store each study's files; then save them all in ONE transaction and queue
    them for interpretation. `views`: the rows as their leases read them.

    A batch (`ECGWL_PREPARE_BATCH_SIZE` studies a message) shares one transaction and one Celery
    message: reading and measuring is the work, and each transaction and message cost as much as
    a study's own statements together (benchmarks/pipeline.py). A file that cannot be read or
    prepared quarantines its own study; the rest go on."""
    actor = ACTORS[Stage.PREPARE]
    outcomes = {view.id: Outcome.SKIPPED for view in views}
    waiting = [view for view in views if view.state == S.QUEUED_PREPARE]
    if not waiting:
        return outcomes
    _test_hooks(ctx, Stage.PREPARE, waiting)
    ready: dict[int, tuple[Ecg, PreparedEcg]] = {}
    for view in waiting:
        try:
            ecg, prepared = _read_and_prepare(view, ctx.settings.input_limits)
        except Exception as exc:
            if retry_later_reason(exc) is not None:
                raise
            if not isinstance(exc, IngestError):  # a reader crashed on this file: it still gets a reason
                log.exception("study %s: reading or preparing failed", view.id)
            _quarantine_study(ctx, view, unreadable_reason(exc), Stage.PREPARE)
            outcomes[view.id] = Outcome.QUARANTINED
            continue
        artifacts.save_prepared(ctx.settings.data_dir, view.sha256, prepared,
                                artifacts.source_page_loader(view.path, view.source_format,
                                                             ctx.settings.input_limits))
        ready[view.id] = (ecg, prepared)
    if not ready:
        return outcomes
    with ctx.session() as session:
        # Claimed in id order, all before the first audit row locks the audit head (as a batch of drafts).
        claimed = store.claim_studies(session, ready, S.QUEUED_PREPARE)
        with audit.batched(session):  # the batch's audit rows written in one statement
            for study_id in claimed:
                ecg, prepared = ready[study_id]
                measurements, sources = _report_measurements(ecg, prepared)
                store.save_prepared(session, study_id, actor=actor, demographics=ecg.demographics,
                                    measurements=measurements, measurement_sources=sources,
                                    features=prepared.features)
                store.set_state(session, study_id, S.QUEUED_INTERPRET, actor=actor)
                outcomes[study_id] = Outcome.DONE  # a study another delivery finished first stays SKIPPED
    hand_on(ctx, Stage.INTERPRET, [study_id for study_id, outcome in outcomes.items() if outcome is Outcome.DONE])
    return outcomes


# ---------------------------------------------------------------- interpret


def check_claims(prepared: PreparedEcg, interpretation: Interpretation,
                 critical_labels: list[str] | None = None) -> tuple[list[str], Triage]:
    """(flags, triage): what the recording puts in doubt (muscle artefact, a suspect gain) and where the
    interpretation's numbers or labels disagree with the measured features (`reports.verify`; none for an
    image-only study, nothing was measured), and the
    study's urgency from every reader (`reports.triage`): the measured values, the protocol
    reader as a second reader beside a model (it reads every study with a signal), and the
    interpreter itself."""
    from ingest.protocol import ProtocolReader
    from ingest.protocol.reader import PROTOCOL_READER_NAME
    from reports.triage import triage
    from reports.verify import recording_flags, verify

    flags = recording_flags(prepared.features) + [flag.message for flag in verify(interpretation.parsed,
                                                                                  prepared.features)]
    second = None
    if interpretation.interpreter != PROTOCOL_READER_NAME and prepared.features is not None:
        second = ProtocolReader().interpret_one(prepared).parsed.labels
    demographics = prepared.ecg.demographics if prepared.ecg is not None else None
    return flags, triage(prepared.features, demographics, interpretation, second, critical_labels)


def _load_for_interpretation(ctx: PipelineContext, view: StudyView) -> PreparedEcg:
    """Preparation's saved output; prepared again from the file if those files are gone."""
    try:
        return artifacts.load_prepared(
            ctx.settings.data_dir, view.sha256, view.features,
            page_loader=artifacts.source_page_loader(view.path, view.source_format, ctx.settings.input_limits))
    except artifacts.ArtifactsMissing:
        log.warning("study %s: prepared files missing, preparing again", view.id)
        return _read_and_prepare(view, ctx.settings.input_limits, page_images=True)[1]


def interpret_studies(ctx: PipelineContext, study_ids: Sequence[int], *,
                      views: Sequence[StudyView] | None = None) -> dict[int, Outcome]:
    """Interpret a batch of prepared studies in ONE call of the interpreter; queue their reports.
    `views`: the rows (with their features) as their leases read them, else they are read here."""
    actor = ACTORS[Stage.INTERPRET]
    ids = list(dict.fromkeys(study_ids))
    if views is None:
        with ctx.session() as session:
            rows = session.execute(sa.select(Study).options(*store.without_content(["features"]))
                                   .where(Study.id.in_(ids))).scalars().all()
            views = [StudyView.of(row, features=True) for row in rows]
    by_id = {view.id: view for view in views}
    outcomes = {study_id: Outcome.SKIPPED for study_id in ids}
    waiting = [by_id[i] for i in ids if i in by_id and by_id[i].state == S.QUEUED_INTERPRET]
    if not waiting:
        return outcomes
    _test_hooks(ctx, Stage.INTERPRET, waiting)
    batch: list[tuple[StudyView, PreparedEcg]] = []
    for view in waiting:
        try:
            batch.append((view, _load_for_interpretation(ctx, view)))
        except Exception as exc:  # one unreadable study must not sink the batch
            if retry_later_reason(exc) is not None:
                raise
            mark_failed(ctx, [view.id], Stage.INTERPRET, exc)
            outcomes[view.id] = Outcome.FAILED
    if not batch:
        return outcomes
    interpretations = ctx.interpreter().interpret([prepared for _, prepared in batch])
    if len(interpretations) != len(batch):
        raise RuntimeError(f"interpreter returned {len(interpretations)} results for {len(batch)} ECGs")
    checked = [(view, interpretation, *check_claims(prepared, interpretation, ctx.settings.review_critical_labels))
               for (view, prepared), interpretation in zip(batch, interpretations, strict=True)]
    saved = []
    with ctx.session() as session:  # the whole batch in one transaction: one commit, not one per ECG
        # Every row locked first, in id order, before the first audit row locks the audit head:
        # a transaction never waits for a study while holding the head, so none can deadlock.
        claimed = set(store.claim_studies(session, [c[0].id for c in checked], S.QUEUED_INTERPRET))
        with audit.batched(session):  # the batch's audit rows written in one statement
            for view, interpretation, flags, found in checked:
                if view.id in claimed:
                    store.save_interpretation(session, view.id, interpretation, actor=actor,
                                              critical=found.critical, flags=flags,
                                              triage=found.model_dump(mode="json"))
                    saved.append(view.id)
    outcomes.update(dict.fromkeys(saved, Outcome.DONE))
    hand_on(ctx, Stage.REPORT, saved)
    return outcomes


# ---------------------------------------------------------------- report


def outbound_path(outbound_dir: Path, study_id: int, version: int) -> Path:
    return outbound_dir / f"ecgwl-study-{study_id}-v{version}.hl7"


def write_outbound(outbound_dir: Path, study_id: int, version: int, message: str) -> Path:
    """The message as a `.hl7` file for interface engines that read folders (`write_outbound_files`)."""
    return write_outbound_files(outbound_dir, [(study_id, version, message)])[0]


def write_outbound_files(outbound_dir: Path, messages: Sequence[tuple[int, int, str]]) -> list[Path]:
    """Each (study id, version, message) as a `.hl7` file: written under a temporary name, synced,
    renamed; then the folder synced once for them all, so once this returns every file is on disk
    under its name (a crash never leaves half a message). A full volume raises OSError(ENOSPC) and
    leaves no temporary file behind (the files renamed before it stay: each is whole)."""
    outbound_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for study_id, version, message in messages:
        path = outbound_path(outbound_dir, study_id, version)
        # The temporary name ends in .tmp and starts with a dot: folder readers skip both.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with temporary.open("wb") as handle:
                handle.write((message + "\r").encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        paths.append(path)
    folder = os.open(outbound_dir, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return paths


def rewrite_outbound(ctx: PipelineContext, study_id: int) -> Path | None:
    """Write a published draft's .hl7 file again if it is missing (what `ecg-worklist check
    --repair` does): the stored message, so the same MSH-10. Only while the draft is current
    (awaiting sign-off): a preliminary is never sent again after sign-off. None: nothing to do."""
    path = outbound_path(ctx.settings.outbound_dir, study_id, 1)
    with ctx.session() as session:
        study = store.get_study(session, study_id, content=False)
        if study.state != S.AWAITING_SIGNOFF or path.exists():
            return None
        message = session.execute(sa.select(Report.hl7_message).where(Report.study_id == study_id,
                                                                      Report.version == 1)).scalar_one()
    return write_outbound(ctx.settings.outbound_dir, study_id, 1, message)


def rebuild_artifacts(ctx: PipelineContext, study_id: int) -> None:
    """Read and prepare a study's file again and write preparation's files (model window,
    metadata) that went missing, without touching its state or stored measurements."""
    view = _read_view(ctx, study_id)
    _ecg, prepared = _read_and_prepare(view, ctx.settings.input_limits)
    artifacts.save_prepared(ctx.settings.data_dir, view.sha256, prepared,
                            artifacts.source_page_loader(view.path, view.source_format, ctx.settings.input_limits))


def _refusal_reason(exc: store.InvalidMessage) -> str:
    """The validator's problems without the values they quote (those may be patient data)."""
    problems = [re.sub(r"\(found [^)]*\)|'[^']*'|\"[^\"]*\"", "(value withheld)", problem)
                for problem in exc.problems[:5]]
    return "its draft cannot be a valid HL7 message: " + "; ".join(problems)


def build_report(ctx: PipelineContext, study_id: int, *, view: StudyView | None = None) -> Outcome:
    """`build_reports` for one study (`view`: the row as its lease read it, else read here)."""
    return build_reports(ctx, [view or _read_view(ctx, study_id)])[study_id]


def build_reports(ctx: PipelineContext, views: Sequence[StudyView]) -> dict[int, Outcome]:
    """Build, validate and store each study's draft ORU^R01 (v1, OBR-25 P), write its .hl7 file, then
    queue its deliveries and move it to `awaiting_signoff` (the file first: the state never says more
    than the disk holds). `views`: the rows as their leases read them.

    A batch of studies is drafted in ONE transaction and published in one more, with the folder synced
    once between: a study's claim, draft, state change and audit rows cost a few statements, while
    each transaction and each Celery message cost more than all of them (benchmarks/pipeline.py).
    A study whose file cannot make a valid HL7 message is quarantined on its own, one whose drafting
    fails otherwise is marked failed on its own; the rest go on."""
    actor = ACTORS[Stage.REPORT]
    settings = ctx.settings
    outcomes = {view.id: Outcome.SKIPPED for view in views}
    for view in views:
        if view.state == S.AWAITING_SIGNOFF:
            rewrite_outbound(ctx, view.id)
    waiting = [view for view in views if view.state == S.INTERPRETED]
    if not waiting:
        return outcomes
    _test_hooks(ctx, Stage.REPORT, waiting)
    drafted, set_aside = _draft_reports(ctx, [view.id for view in waiting])
    for view in waiting:
        problem = set_aside.get(view.id)
        if isinstance(problem, store.InvalidMessage):
            # What the file holds cannot make a valid message (e.g. a line break inside an
            # identifier): set the study aside with the validator's reasons.
            _quarantine_study(ctx, view, _refusal_reason(problem), Stage.REPORT, expected=S.INTERPRETED)
            outcomes[view.id] = Outcome.QUARANTINED
        elif problem is not None:
            log.error("study %s: drafting its report failed (%s)", view.id, type(problem).__name__)
            mark_failed(ctx, [view.id], Stage.REPORT, problem)
            outcomes[view.id] = Outcome.FAILED
    if not drafted:
        return outcomes
    paths = write_outbound_files(settings.outbound_dir, [(study_id, version, message)
                                                         for study_id, (version, message) in drafted.items()])
    files = dict(zip(drafted, paths, strict=True))
    with ctx.session() as session:
        claimed = store.claim_studies(session, drafted, S.INTERPRETED)
        store.publish_drafts(session, claimed, actor=actor, destinations=settings.hl7_destination_names,
                             outbound_files={study_id: files[study_id].name for study_id in claimed})
    outcomes.update(dict.fromkeys(claimed, Outcome.DONE))
    return outcomes


def _draft_reports(ctx: PipelineContext, study_ids: list[int]) -> tuple[dict[int, tuple[int, str]],
                                                                          dict[int, Exception]]:
    """({study id: (version, message)} stored, but not yet published; {study id: why it was set aside}),
    in one transaction: the studies stay `interpreted` until their files are written. A study whose draft
    the validator refuses (`store.InvalidMessage`), or whose drafting raises anything but a database
    error or a passing condition (`worker.failures`), rolls the transaction back, and the others are
    drafted again without it (rare: once per such study in a batch)."""
    actor = ACTORS[Stage.REPORT]
    set_aside: dict[int, Exception] = {}
    while True:
        try:
            with ctx.session() as session:
                claimed = store.claim_studies(session, [i for i in study_ids if i not in set_aside], S.INTERPRETED,
                                              content=store.DRAFT_CONTENT)
                drafts = store.draft_reports(session, claimed, endpoints=ctx.endpoints, actor=actor,
                                             result_status=ctx.settings.draft_result_status)
            return {study_id: (report.version, report.hl7_message) for study_id, report in drafts.items()}, set_aside
        except store.DraftRefused as refused:
            problem = refused.problem  # one study's problem must not sink the batch
            if isinstance(problem, database_errors()) or retry_later_reason(problem) is not None:
                raise problem from None  # the runner waits for the database, or retries the batch later
            set_aside[refused.study_id] = problem  # rolled back: again without it


# ---------------------------------------------------------------- failures


def mark_failed(ctx: PipelineContext, study_ids: Sequence[int], stage: Stage, exc: BaseException) -> None:
    """Move the studies to `failed` with the error (an operator may re-queue them)."""
    error = error_text(stage.value, exc)
    for study_id in study_ids:
        try:
            with ctx.session() as session:
                store.fail(session, study_id, error, actor=ACTORS[stage])
        except store.InvalidTransition:
            pass  # it moved on (or was already failed): nothing to record
        except Exception:  # noqa: BLE001 - failing to record a failure must not hide the first error
            log.exception("study %s: could not record the failure", study_id)
