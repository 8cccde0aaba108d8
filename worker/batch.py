"""The nightly batch over an existing archive, and the summary it ends with.

    resume_leftovers(ctx)                   re-queue what a stopped earlier run left half-way
    run_batch(ctx, root) -> BatchCounts     walk read-only, register + queue what is new
    run_in_process(ctx)                     (no broker) run every queued stage to the end
    summarize(ctx) -> Summary               studies by state, drafts, quarantined, where things are

The walk never moves, renames or writes anything under `root`, and never reads outside it:
symbolic links are not followed and FIFOs or devices not opened (each is listed as not
usable, with its reason), and a WFDB header may name signal files only in its own folder.
Each study records the original's path and content hash, and preparation reads the
original in place. Content already registered is skipped, so a batch that was stopped
(Ctrl-C, a reboot) and is run again only does what is left; what it left half-way through
the stages is picked up by the reconciler first (`resume_leftovers`).
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel
from tqdm import tqdm

from ingest.intake.quarantine import printable_name
from ingest.intake.watch import walk_records
from reports.db import Report, ReportStatus, Study, StudyState
from worker.context import PipelineContext
from worker.dispatch import InProcessDispatcher, Stage
from worker.intake import TAKE_CHUNK, Taken, prepare_messages, register_batch_items
from worker.progress import ticking
from worker.reconcile import ReconcileReport, reconcile
from worker.settings import Settings, default_data_dir
from worker.stages import outbound_path


# Studies still in a stage of the pipeline (not yet a draft, quarantined or failed).
WAITING_STATES = (StudyState.RECEIVED, StudyState.QUEUED_PREPARE, StudyState.PREPARED,
                  StudyState.QUEUED_INTERPRET, StudyState.INTERPRETED)


@dataclass
class BatchCounts:
    found: int = 0
    taken: Counter[str] = field(default_factory=Counter)
    unusable: list[str] = field(default_factory=list)  # "path: reason", for the summary

    def describe(self) -> str:
        return (f"{self.found} items found: {self.taken[Taken.NEW]} new, {self.taken[Taken.KNOWN]} already "
                f"registered, {self.taken[Taken.UNUSABLE]} not usable")


def resume_leftovers(ctx: PipelineContext) -> ReconcileReport:
    """Queue again what an earlier run left half-way (one reconciler run).

    In-process, nothing else runs these studies, so a `received` study was left by a stopped
    run and is queued at once; with a broker the watcher may be taking it right now, so only
    after `reconcile_after_seconds`.
    """
    seconds = 0.0 if ctx.in_process else ctx.settings.reconcile_after_seconds
    return reconcile(ctx, received_after=dt.timedelta(seconds=seconds))


def run_batch(ctx: PipelineContext, root: Path, *, progress: bool = True) -> BatchCounts:
    """Register and queue every new ECG under `root` (read-only), with a progress bar."""
    root = root.resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    arrivals = list(walk_records(root))
    counts = BatchCounts(found=len(arrivals))
    origin = f"batch:{root.name}"[:255]
    with tqdm(total=len(arrivals), desc="register", unit="ecg", disable=not progress) as bar, \
            prepare_messages(ctx) as queue:
        for first in range(0, len(arrivals), TAKE_CHUNK):  # registered a chunk to a transaction
            chunk = arrivals[first:first + TAKE_CHUNK]
            for arrival, taken in zip(chunk, register_batch_items(ctx, chunk, origin=origin, queue=queue),
                                      strict=True):
                counts.taken[taken] += 1
                if taken is Taken.UNUSABLE:
                    # Printable even when the name is not UTF-8 (the terminal would refuse it).
                    counts.unusable.append(f"{printable_name(str(arrival.main))}: {arrival.problem}")
            bar.update(len(chunk))
            bar.set_postfix(new=counts.taken[Taken.NEW], known=counts.taken[Taken.KNOWN],
                            unusable=counts.taken[Taken.UNUSABLE], refresh=False)
    return counts


def run_in_process(ctx: PipelineContext, *, progress: bool = True) -> None:
    """Run everything queued in this process to the end, with a progress bar."""
    dispatcher = ctx.dispatcher
    if not isinstance(dispatcher, InProcessDispatcher):
        raise RuntimeError("in-process running needs the in-process dispatcher (no ECGWL_REDIS_URL)")
    total = len(set(dispatcher.queues[Stage.PREPARE]) | set(dispatcher.queues[Stage.INTERPRET])
                | set(dispatcher.queues[Stage.REPORT]))
    with tqdm(total=total, desc="process", unit="ecg", disable=not progress) as bar, ticking(bar, progress):
        def started(stage: Stage, ids: list[int]) -> None:
            # Said before the work: an interpretation batch can take minutes on a CPU.
            bar.set_postfix_str(f"{_DOING[stage]} {len(ids)}")

        def finished(stage: Stage, outcomes: dict[int, str]) -> None:
            # A study leaves the pipeline with its report, or when quarantined or failed.
            done = sum(1 for outcome in outcomes.values()
                       if outcome in ("quarantined", "failed") or (stage is Stage.REPORT and outcome == "done"))
            bar.update(done)

        dispatcher.run_until_idle(ctx, on_progress=finished, on_start=started)


_DOING = {Stage.PREPARE: "preparing", Stage.INTERPRET: "interpreting", Stage.REPORT: "reporting"}


SUMMARY_FILES = 20  # draft files a summary lists by name


class Summary(BaseModel):
    studies: int
    by_state: dict[str, int]
    drafts: int
    draft_files: list[str]
    quarantined: int
    failed: int
    waiting: int
    outbound_dir: str
    quarantine_dir: str
    # The command that checks this run's audit trail, as the reader can paste it: with the data
    # folder spelt out when it is not the default one (the main job keeps its data in ./var).
    verify_command: str = "ecg-worklist audit verify"

    def describe(self) -> str:
        lines = [
            f"studies: {self.studies}  ({', '.join(f'{k} {v}' for k, v in sorted(self.by_state.items()))})",
            f"draft reports awaiting cardiologist sign-off: {self.drafts} (HL7 ORU^R01, OBR-25 P)",
            f"  .hl7 files in {self.outbound_dir}",
        ]
        lines += [f"    {path}" for path in self.draft_files[:SUMMARY_FILES]]
        if self.drafts > len(self.draft_files[:SUMMARY_FILES]):
            lines.append(f"    ... and {self.drafts - len(self.draft_files[:SUMMARY_FILES])} more")
        lines.append(f"quarantined: {self.quarantined}" + (f" (reasons beside the files in {self.quarantine_dir})"
                                                          if self.quarantined else ""))
        if self.failed:
            lines.append(f"failed: {self.failed} (see `last_error`; re-queue after fixing the cause)")
        if self.waiting:
            lines.append(f"still in the pipeline: {self.waiting}")
        lines.append(f"audit trail: `{self.verify_command}` checks the hash chain of every audit row")
        return "\n".join(lines)


def summarize(ctx: PipelineContext) -> Summary:
    """What the database says now: studies by state (its counters, `reports.counts`), the number
    of drafts, and the first of their .hl7 files (a summary lists 20; reading every draft and
    stat-ing every file would cost as much as the archive is large)."""
    from reports.counts import counts_by_state

    settings = ctx.settings
    draft_of_awaiting = (sa.select(Report.study_id, Report.version).join(Study)
                         .where(Report.status == ReportStatus.DRAFT.value,
                                Study.state == StudyState.AWAITING_SIGNOFF.value))
    with ctx.session() as session:
        by_state = {state: n for state, n in counts_by_state(session).items() if n}
        drafts = session.execute(sa.select(sa.func.count()).select_from(draft_of_awaiting.subquery())).scalar_one()
        first = session.execute(draft_of_awaiting.order_by(Report.study_id).limit(SUMMARY_FILES)).all()
    files = [outbound_path(settings.outbound_dir, study_id, version) for study_id, version in first]
    return Summary(
        studies=sum(by_state.values()), by_state=by_state, drafts=drafts,
        draft_files=[str(path) for path in files if path.exists()],
        quarantined=by_state.get(StudyState.QUARANTINED.value, 0), failed=by_state.get(StudyState.FAILED.value, 0),
        waiting=sum(by_state.get(state.value, 0) for state in WAITING_STATES),
        outbound_dir=str(settings.outbound_dir), quarantine_dir=str(settings.quarantine_dir),
        verify_command=_verify_command(settings),
    )


def _verify_command(settings: Settings) -> str:
    if settings.database_url or settings.data_dir.resolve() == default_data_dir().resolve():
        return "ecg-worklist audit verify"  # the same settings reach it as reached this run
    return f"ECGWL_DATA_DIR={shlex.quote(str(settings.data_dir.resolve()))} ecg-worklist audit verify"
