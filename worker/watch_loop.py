"""The `ecg-worklist watch` process: poll the inboxes, take what is complete, reconcile now and then.

    watch(ctx, stop=threading.Event())      until `stop` is set (SIGTERM/SIGINT in the CLI)

One loop, every `poll_seconds`: scan every inbox whose lock this watcher holds
(`worker.watch_lock`: one watcher per inbox; a second one stands by and takes over) with
`ingest.intake.watch.InboxScanner`, take the complete arrivals (`worker.intake.take_arrivals`),
every `reconcile_every_seconds` run the reconciler (one `Reconciler` for the life of the
process: it remembers database outages), and every `audit_checkpoint_every_seconds` sign the audit chain's head into
the checkpoint file outside the database (`reports.audit_anchor`, when a key is set). With
no broker (the embedded default) it also runs the queued stages in this process after each
scan. An arrival that fails to be taken (database down, disk
full) stays in the inbox and is tried again on the next scan; its error is logged once
(`FailureLog`), not on every poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ingest.intake.watch import Arrival, InboxScanner
from worker.context import PipelineContext
from worker.dispatch import InProcessDispatcher
from worker.intake import prepare_messages, take_arrivals
from worker.failures import database_errors
from worker.reconcile import Reconciler
from worker.watch_lock import InboxLocks

log = logging.getLogger(__name__)


@dataclass
class FailureLog:
    """Arrivals that could not be taken, so that each failure is logged once, not every poll.

    A file that keeps failing (the database is down, the disk is full, a bug) is tried again
    every scan, but its traceback is written the first time and again only when the error
    changes; when it is finally taken, that is logged too.
    """

    failing: dict[Path, str] = field(default_factory=dict)

    def failed(self, arrival: Arrival, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        if self.failing.get(arrival.main) != text:
            log.error("could not take an arrival from inbox %s (%s); retrying every scan, logged once",
                      arrival.inbox.name, type(error).__name__, exc_info=error)
        self.failing[arrival.main] = text

    def forget_all_but(self, present: set[Path]) -> None:
        """Drop files that are gone from the inboxes (removed by someone): nothing to report."""
        self.failing = {path: text for path, text in self.failing.items() if path in present}

    def succeeded(self, arrival: Arrival) -> None:
        if self.failing.pop(arrival.main, None) is not None:
            log.info("an arrival from inbox %s that failed before was taken", arrival.inbox.name)


def scan_once(ctx: PipelineContext, scanner: InboxScanner, failures: FailureLog | None = None) -> Counter[str]:
    """Take every arrival that is complete now; returns how each was taken."""
    failures = failures if failures is not None else FailureLog()
    taken: Counter[str] = Counter()
    arrivals = scanner.scan()
    failures.forget_all_but({arrival.main for arrival in arrivals})
    with prepare_messages(ctx) as queue:  # a burst of arrivals is registered and prepared in batches
        outcomes = take_arrivals(ctx, arrivals, queue)
    for arrival, outcome in zip(arrivals, outcomes, strict=True):
        if isinstance(outcome, Exception):  # keep watching: the files stay in the inbox and are retried next scan
            failures.failed(arrival, outcome)
            taken["error"] += 1
        else:
            failures.succeeded(arrival)
            taken[outcome] += 1
    return taken


def describe_taken(taken: Counter[str]) -> str:
    """'2 new, 1 quarantined': how a scan's arrivals were taken, in words (never enum reprs)."""
    return ", ".join(f"{number} {str(getattr(kind, 'value', kind))}" for kind, number in sorted(
        taken.items(), key=lambda item: str(item[0])))


def checkpoint_audit(ctx: PipelineContext) -> None:
    """Sign the audit chain's head into the checkpoint file outside the database (no key: nothing).

    A chain that does not verify since the last checkpoint is never signed: that is logged
    as an error every interval until someone looks (`ecg-worklist audit verify`)."""
    from reports.audit_anchor import CheckpointError, write_checkpoint

    key = ctx.settings.audit_key_bytes
    if key is None:
        return
    try:
        with ctx.session() as session:
            checkpoint = write_checkpoint(session, ctx.settings.audit_checkpoint_file, key)
    except CheckpointError as exc:
        log.error("audit checkpoint refused: %s", exc)
        return
    if checkpoint is not None:
        log.info("audit checkpoint: event %s signed", checkpoint.last_id)


def watch(ctx: PipelineContext, stop: threading.Event) -> None:
    settings = ctx.settings
    # One watcher per inbox (worker/watch_lock.py): each scan covers only the inboxes whose
    # lock this process holds; another watcher's inboxes are checked again every poll.
    locks = InboxLocks.create(list(settings.inbox_dirs), ctx.engine, settings.data_dir)
    scanner = InboxScanner([], stable_seconds=settings.stable_seconds, orphan_seconds=settings.orphan_seconds)
    log.info("watching %d inbox folder(s), taking files stable for %.1f s",
             len(settings.inbox_dirs), settings.stable_seconds)
    try:
        _watch_loop(ctx, scanner, locks, stop)
    finally:
        locks.close()


def _watch_loop(ctx: PipelineContext, scanner: InboxScanner, locks: InboxLocks, stop: threading.Event) -> None:
    settings = ctx.settings
    reconciler = Reconciler(ctx)
    last_reconcile = last_checkpoint = 0.0
    failures = FailureLog()
    while not stop.is_set():
        scanner.inboxes = locks.refresh()
        taken = scan_once(ctx, scanner, failures)
        if taken:
            log.info("scan: %s", describe_taken(taken))
        if time.monotonic() - last_reconcile >= settings.reconcile_every_seconds:
            last_reconcile = time.monotonic()
            try:
                reconciler.run()
            except database_errors() as exc:
                log.warning("reconciler: database unreachable (%s); trying again in %.0f s",
                            type(exc).__name__, settings.reconcile_every_seconds)
            except Exception:
                log.exception("reconciler run failed; trying again later")
        if time.monotonic() - last_checkpoint >= settings.audit_checkpoint_every_seconds:
            last_checkpoint = time.monotonic()
            try:
                checkpoint_audit(ctx)
            except Exception:  # the database is down, the file's volume is full...: next interval
                log.exception("audit checkpoint failed; trying again later")
        if isinstance(ctx.dispatcher, InProcessDispatcher):
            ctx.dispatcher.run_until_idle(ctx)
        stop.wait(settings.poll_seconds)
