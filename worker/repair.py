"""What an operator asks after a bad night: is anything missing, and send these studies back.

    find_missing(ctx) -> list[Missing]        every study whose expected files or rows are missing
    repair(ctx, missing) -> list[str]         redo what can be redone, say what cannot
    requeue(ctx, ...) -> RequeueResult        send studies back to their stage, audited

What each study is expected to have, by state:

    every state                 its original: the archived copy (watch) or the batch original
    queued_interpret            preparation's files (model window, metadata, the review page's display copy)
    interpreted and later       the display copy the review page draws (a slim review host has no
                                readers to fall back on; studies prepared before it existed have none)
    awaiting_signoff and later  report version 1 (the draft); signed: a signed version; rejected: an X version
    awaiting_signoff            the draft's outbound .hl7 file (unless ECGWL_CHECK_OUTBOUND_FILES=false,
                                for a folder reader that removes the files it takes)
    quarantined                 the `.reason` file beside its copy in quarantine

`repair` writes a missing .hl7 again from the stored message (same MSH-10), prepares a
study again to rewrite missing preparation files or its display copy, rewrites a missing `.reason`, and sends
a study whose stage can redo the work back to it. A missing original or a missing report
row cannot be made here: it is listed for a person (restore from backup).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ingest.intake.quarantine import REASON_SUFFIX, quarantine_folder
from reports import leases as lease_sql
from reports.db import Report, ReportStatus, Study, StudyState
from reports.review.ecg_source import DISPLAY_META
from worker import artifacts
from worker.context import PipelineContext
from worker.dispatch import Stage
from worker.leases import STAGE_OF
from worker.stages import keep_in_quarantine, outbound_path, rebuild_artifacts, record_files, rewrite_outbound

log = logging.getLogger(__name__)

S = StudyState
_REPORTED = (S.AWAITING_SIGNOFF.value, S.SIGNED.value, S.REJECTED.value)
_PREPARED_BEFORE = (S.INTERPRETED.value, *_REPORTED)  # past preparation: its display copy must exist


@dataclass(frozen=True)
class Missing:
    study_id: int
    state: str
    what: str  # "original", "prepared files", "display copy", "report v1", "signed report", "outbound .hl7",
    #            "reason file"
    path: str | None = None

    def describe(self) -> str:
        return f"study {self.study_id} ({self.state}): {self.what} missing" + (f": {self.path}" if self.path else "")


def _expected_reports(state: str) -> list[tuple[str, set[str]]]:
    needed = [("report v1", {ReportStatus.DRAFT.value})] if state in _REPORTED else []
    if state == S.SIGNED.value:
        needed.append(("signed report", {ReportStatus.SIGNED.value, ReportStatus.AMENDED.value}))
    if state == S.REJECTED.value:
        needed.append(("rejection report", {ReportStatus.REJECTED.value}))
    return needed


def _study_missing(ctx: PipelineContext, study: Study, statuses: set[str]) -> list[Missing]:
    settings = ctx.settings
    missing: list[Missing] = []
    original = Path(study.archive_path or study.source_path)
    lost = [path for path in [original, *record_files(original, study.source_format)[1:]] if not path.is_file()]
    missing += [Missing(study.id, study.state, "original", str(path)) for path in lost]
    folder = artifacts.prepared_folder(settings.data_dir, study.sha256)
    if study.state == S.QUEUED_INTERPRET.value:
        needed = [folder / "ecg.json", folder / DISPLAY_META]
        if study.source_format != "pdf":
            needed.append(folder / "signal.npy")
        missing += [Missing(study.id, study.state, "prepared files", str(p)) for p in needed if not p.is_file()]
    elif study.state in _PREPARED_BEFORE and not (folder / DISPLAY_META).is_file():
        # display.json is written last (it promises the signal), so it stands for the whole copy.
        missing.append(Missing(study.id, study.state, "display copy", str(folder / DISPLAY_META)))
    for what, wanted in _expected_reports(study.state):
        if not wanted & statuses:
            missing.append(Missing(study.id, study.state, what))
    if study.state == S.AWAITING_SIGNOFF.value and settings.check_outbound_files:
        path = outbound_path(settings.outbound_dir, study.id, 1)
        if not path.is_file():
            missing.append(Missing(study.id, study.state, "outbound .hl7", str(path)))
    if study.state == S.QUARANTINED.value:
        reason = quarantine_folder(settings.quarantine_dir, study.sha256) / f"{original.name}{REASON_SUFFIX}"
        if not reason.is_file():
            missing.append(Missing(study.id, study.state, "reason file", str(reason)))
    return missing


def find_missing(ctx: PipelineContext, *, batch: int = 1000) -> list[Missing]:
    """Every study whose expected files or rows are missing (see the module docstring)."""
    missing: list[Missing] = []
    last_id = 0
    while True:
        with ctx.session() as session:
            rows = list(session.execute(sa.select(Study).where(Study.id > last_id).order_by(Study.id)
                                        .limit(batch)).scalars())
            if not rows:
                return missing
            ids = [study.id for study in rows]
            statuses: dict[int, set[str]] = {}
            for study_id, status in session.execute(
                    sa.select(Report.study_id, Report.status).where(Report.study_id.in_(ids))):
                statuses.setdefault(study_id, set()).add(status)
        for study in rows:
            missing += _study_missing(ctx, study, statuses.get(study.id, set()))
        last_id = ids[-1]


def repair(ctx: PipelineContext, missing: Sequence[Missing], *, actor: str) -> list[str]:
    """Redo what can be redone for `missing`; one line per study saying what was done."""
    lines: list[str] = []
    by_study: dict[int, list[Missing]] = {}
    for item in missing:
        by_study.setdefault(item.study_id, []).append(item)
    for study_id, items in by_study.items():
        kinds = {item.what for item in items}
        state = items[0].state
        try:
            if kinds & {"original", "report v1", "signed report", "rejection report"}:
                lines.append(f"study {study_id}: cannot be repaired here ({', '.join(sorted(kinds))}); "
                             "restore from a backup")
                continue
            if "prepared files" in kinds:  # the interpret stage prepares again by itself; do it now
                rebuild_artifacts(ctx, study_id)
                lines.append(f"study {study_id}: preparation's files written again")
            if "display copy" in kinds:  # read and prepare the original again; state and rows untouched
                rebuild_artifacts(ctx, study_id)
                lines.append(f"study {study_id}: the review page's display copy written again")
            if "outbound .hl7" in kinds and rewrite_outbound(ctx, study_id) is not None:
                lines.append(f"study {study_id}: outbound .hl7 written again (same MSH-10)")
            if "reason file" in kinds:
                with ctx.session() as session:
                    reason = session.get(Study, study_id).last_error or "quarantined (no reason was recorded)"
                keep_in_quarantine(ctx, study_id, reason)
                lines.append(f"study {study_id}: reason file written")
        except Exception as exc:  # noqa: BLE001 - one study must not stop the repair of the others
            log.exception("repair of study %s failed", study_id)
            lines.append(f"study {study_id} ({state}): repair failed: {type(exc).__name__}")
    return lines


# ---------------------------------------------------------------- requeue


@dataclass
class RequeueResult:
    sent: dict[Stage, list[int]] = field(default_factory=lambda: {stage: [] for stage in Stage})
    skipped: list[str] = field(default_factory=list)  # "study 7: held by host:123:456" ...

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.sent.values())

    def describe(self) -> str:
        parts = [f"{stage.value}: {len(ids)}" for stage, ids in self.sent.items() if ids]
        text = f"re-queued {self.total} studies" + (f" ({', '.join(parts)})" if parts else "")
        return "\n".join([text, *[f"  not re-queued: {line}" for line in self.skipped]])


def requeue(ctx: PipelineContext, *, study_ids: Sequence[int] = (), states: Sequence[str] = (),
            actor: str, reason: str | None = None) -> RequeueResult:
    """Send studies back to the stage that can finish them, audited (`reports.leases.send_back`).

    By id, or every study in `states` (failed, quarantined, or a waiting state: then it is
    sent now, without waiting for its retry time). A study a live worker holds is left alone.
    """
    result = RequeueResult()
    with ctx.session() as session:
        query = sa.select(Study.id).order_by(Study.id)
        if states:
            query = query.where(Study.state.in_(list(states)))
        ids = list(study_ids) + (list(session.execute(query).scalars()) if states else [])
    for study_id in dict.fromkeys(ids):
        with ctx.session() as session:
            outcome = lease_sql.send_back(session, study_id, actor=actor, reason=reason)
        if isinstance(outcome, StudyState):
            result.sent[STAGE_OF[outcome.value]].append(study_id)
        else:
            result.skipped.append(f"study {study_id}: {outcome}")
    ctx.dispatcher.prepare(result.sent[Stage.PREPARE])
    if result.sent[Stage.INTERPRET]:
        ctx.dispatcher.interpret(result.sent[Stage.INTERPRET])
    ctx.dispatcher.report(result.sent[Stage.REPORT])
    return result

