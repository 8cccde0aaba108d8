"""The `ecg-worklist watch` process: poll the inboxes, take what is complete, reconcile now and then.

    watch(ctx, stop=threading.Event())      until `stop` is set (SIGTERM/SIGINT in the CLI)

One loop, every `poll_seconds`: scan every inbox (`ingest.intake.watch.InboxScanner`), take each
complete arrival (`worker.intake.take_arrival`), and every `reconcile_every_seconds` run
the reconciler. With no broker (the embedded default) it also runs the queued stages
in this process after each scan. An arrival that fails to be taken (database down, disk
full) stays in the inbox and is tried again on the next scan.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter

from ingest.intake.watch import InboxScanner
from worker.context import PipelineContext
from worker.dispatch import InProcessDispatcher
from worker.intake import take_arrival
from worker.reconcile import reconcile

log = logging.getLogger(__name__)


def scan_once(ctx: PipelineContext, scanner: InboxScanner) -> Counter[str]:
    """Take every arrival that is complete now; returns how each was taken."""
    taken: Counter[str] = Counter()
    for arrival in scanner.scan():
        try:
            taken[take_arrival(ctx, arrival)] += 1
        except Exception:  # keep watching: the files stay in the inbox and are retried next scan
            log.exception("could not take an arrival from inbox %s; retrying next scan", arrival.inbox.name)
            taken["error"] += 1
    return taken


def watch(ctx: PipelineContext, stop: threading.Event) -> None:
    settings = ctx.settings
    scanner = InboxScanner(list(settings.inbox_dirs), stable_seconds=settings.stable_seconds,
                           orphan_seconds=settings.orphan_seconds)
    log.info("watching %d inbox folder(s), taking files stable for %.1f s",
             len(scanner.inboxes), settings.stable_seconds)
    last_reconcile = 0.0
    while not stop.is_set():
        taken = scan_once(ctx, scanner)
        if taken:
            log.info("scan: %s", dict(taken))
        if time.monotonic() - last_reconcile >= settings.reconcile_every_seconds:
            last_reconcile = time.monotonic()
            try:
                reconcile(ctx, older_than=dt.timedelta(seconds=settings.reconcile_after_seconds))
            except Exception:
                log.exception("reconciler run failed; trying again later")
        if isinstance(ctx.dispatcher, InProcessDispatcher):
            ctx.dispatcher.run_until_idle(ctx)
        stop.wait(settings.poll_seconds)
