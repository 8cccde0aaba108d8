"""The hostile-input corpus through the real watcher and stages, on a real Postgres.

Each item of `hostile_corpus` is dropped into an inbox of its own and watched until nothing
more happens. What must hold, for every item:
- it is quarantined with a `.reason` that says why (or, for the few that are only
  reported, logged once and left alone; an awkward but valid ECG becomes a study);
- nothing is left looping: the inbox is empty afterwards and no scan fails;
- nothing outside the inbox is read: no copy of the bait files anywhere under the data
  folder, no study of their content, and (where the file system keeps access times) not
  even a read of them.
Peak memory per input is measured by `benchmarks/hostile_inputs.py`, one process per input.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.intake.archive import file_sha256
from ingest.intake.watch import InboxScanner
from reports import store
from reports.db import Study, StudyState
from tests.faults.hostile_corpus import SECRET, Corpus, HostileItem, build_corpus
from worker.context import PipelineContext
from worker.settings import Settings
from worker.watch_loop import FailureLog, scan_once

pytestmark = pytest.mark.slow


def _reads_are_visible(folder: Path) -> bool:
    """Does this file system record a read in the access time (relatime does, noatime not)?"""
    probe = folder / "atime-probe"
    probe.write_bytes(b"probe")
    os.utime(probe, (1, time.time()))
    probe.read_bytes()
    visible = probe.stat().st_atime > 1
    probe.unlink()
    return visible


def _reason_files(ctx: PipelineContext) -> set[Path]:
    return set(ctx.settings.quarantine_dir.rglob("*.reason"))


def _run_item(ctx: PipelineContext, corpus: Corpus, item: HostileItem) -> tuple[str, list[str], int]:
    """Watch the item's folder until it settles; (outcome, reasons, failed scans)."""
    before = _reason_files(ctx)
    with ctx.session() as session:
        studies_before = session.scalar(sa.select(sa.func.count()).select_from(Study))
    scanner = InboxScanner([corpus.inbox / item.name], stable_seconds=0.0, orphan_seconds=0.0)
    failures = FailureLog()
    errors = 0
    for _ in range(3):
        errors += scan_once(ctx, scanner, failures)["error"]
        ctx.dispatcher.run_until_idle(ctx)
    reasons = [path.read_text(encoding="utf-8") for path in sorted(_reason_files(ctx) - before)]
    with ctx.session() as session:
        new_studies = session.execute(sa.select(Study.state).order_by(Study.id).offset(studies_before)).scalars().all()
    if reasons:
        return "quarantined", reasons, errors
    if new_studies and all(state == StudyState.AWAITING_SIGNOFF.value for state in new_studies):
        return "study", [], errors
    return "left", [], errors


@pytest.fixture
def pg_ctx(postgres_url: str, tmp_path: Path) -> PipelineContext:
    settings = Settings(data_dir=tmp_path / "var", inbox_dirs=[tmp_path / "inbox"], database_url=postgres_url,
                        redis_url=None, stable_seconds=0.0, orphan_seconds=0.0)
    store.upgrade(settings.effective_database_url)
    context = PipelineContext.create(settings)
    yield context
    context.close()


def test_every_hostile_input_is_quarantined_with_a_reason_or_reported_once(
    pg_ctx: PipelineContext, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    corpus = build_corpus(tmp_path / "inbox", tmp_path / "outside", scale="test")
    atime_visible = _reads_are_visible(corpus.outside)
    for bait in corpus.outside_files:
        os.utime(bait, (1, time.time()))  # any read now moves the access time
    caplog.set_level(logging.WARNING)

    outcomes = {}
    for item in corpus.items:
        outcome, reasons, errors = _run_item(pg_ctx, corpus, item)
        outcomes[item.name] = outcome
        assert errors == 0, f"{item.name}: a scan failed (it would be retried, and logged, forever)"
        assert outcome == item.expect or (item.expect == "reported" and outcome == "left"), \
            f"{item.name} ({item.description}): {outcome}, expected {item.expect}"
        if item.expect == "quarantined":
            assert any(item.reason.lower() in text.lower() for text in reasons), \
                f"{item.name}: no reason mentions {item.reason!r}: {reasons}"
            assert not any((corpus.inbox / item.name).iterdir()), f"{item.name}: left in the inbox"
        if item.expect == "reported":
            assert all(entry.exists() for entry in item.entries)  # left alone, not deleted
            matching = [r for r in caplog.records if item.reason in r.getMessage()]
            assert len(matching) == 1, f"{item.name}: reported {len(matching)} times"
        if item.expect == "study":
            assert not any((corpus.inbox / item.name).iterdir())
    assert len(outcomes) >= 40

    # Nothing outside the inbox was read (checked first: the checks below read the bait),
    # copied or registered.
    if atime_visible:
        for bait in corpus.outside_files:
            assert bait.stat().st_atime == 1, f"{bait.name} outside the inbox was read"
    for path in pg_ctx.settings.data_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix != ".sqlite3":
            assert SECRET not in path.read_bytes(), f"{path} holds bytes from outside the inbox"
    outside_hashes = {file_sha256(bait) for bait in corpus.outside_files}
    with pg_ctx.session() as session:
        assert not set(session.execute(sa.select(Study.sha256)).scalars()) & outside_hashes
    assert all(bait.exists() for bait in corpus.outside_files)  # and nothing outside was removed


def test_a_failing_arrival_is_logged_once_not_every_poll(
    pg_ctx: PipelineContext, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox = pg_ctx.settings.inbox_dirs[0]
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "junk.bin").write_bytes(b"not an ECG")

    def disk_full(*_args: object, **_kwargs: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("worker.intake.quarantine_files", disk_full)
    scanner = InboxScanner([inbox], stable_seconds=0.0)
    failures = FailureLog()
    caplog.set_level(logging.ERROR)
    for _ in range(5):
        assert scan_once(pg_ctx, scanner, failures)["error"] == 1
    assert len([r for r in caplog.records if "could not take" in r.getMessage()]) == 1
    assert (inbox / "junk.bin").exists()  # still there: tried again when space comes back
    monkeypatch.undo()
    assert scan_once(pg_ctx, scanner, failures)["quarantined"] == 1
    assert not failures.failing


def test_the_batch_lists_links_and_traversal_headers_as_unusable_and_reads_nothing_outside(
    tmp_path: Path,
) -> None:
    from worker.batch import run_batch

    corpus = build_corpus(tmp_path / "root", tmp_path / "outside", scale="test")
    settings = Settings(data_dir=tmp_path / "var", inbox_dirs=[tmp_path / "unused"], database_url=None,
                        redis_url=None)
    store.upgrade(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    try:
        counts = run_batch(ctx, corpus.inbox, progress=False)
        unusable = "\n".join(counts.unusable)
        for expected in ("symbolic link", "FIFO", "socket", "outside its own folder", "not valid UTF-8",
                         "hidden folder"):
            assert expected in unusable
        outside = {file_sha256(bait) for bait in corpus.outside_files}
        with ctx.session() as session:
            registered = set(session.execute(sa.select(Study.sha256)).scalars())
        assert not registered & outside
        # The batch never alters its source: every entry is still there.
        assert all(entry.exists() or entry.is_symlink() for item in corpus.items for entry in item.entries)
    finally:
        ctx.close()
