"""What an operator sees while waiting: the watcher's lines about files it waits on, scan lines in
words, JSON logs, and the `--wait` bar that reads the database's counters."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ingest.intake.watch import InboxScanner
from worker.intake import Taken
from worker.logs import JsonFormatter, configure_logging
from worker.progress import watch_pipeline
from worker.watch_loop import describe_taken

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waiting on" in r.getMessage()]


def test_a_header_naming_a_missing_signal_file_is_logged_once_with_why(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    inbox = tmp_path / "cardio"
    inbox.mkdir()
    shutil.copy(SAMPLES / "demo-wfdb.hea", inbox / "rec.hea")  # names demo-wfdb.dat, not there yet
    clock = Clock()
    scanner = InboxScanner([inbox], stable_seconds=2.0, orphan_seconds=600.0, clock=clock)
    caplog.set_level(logging.INFO, logger="ingest.intake.watch")
    for _ in range(5):  # five polls, one line
        assert scanner.scan() == []
        clock.now += 3.0
    [line] = _waiting_lines(caplog)
    assert "inbox cardio" in line and "WFDB header" in line
    assert "signal file demo-wfdb.dat named in the header is missing" in line
    assert "quarantined in 600 s" in line and "rec.hea" not in line  # a hash of the path, not its name
    # A signal file that grows while it is copied is still one line (its reason changes only in numbers).
    data = (SAMPLES / "demo-wfdb.dat").read_bytes()
    (inbox / "demo-wfdb.dat").write_bytes(data[:1000])
    scanner.scan()
    clock.now += 3.0
    (inbox / "demo-wfdb.dat").write_bytes(data[:5000])
    scanner.scan()
    clock.now += 3.0
    lines = _waiting_lines(caplog)
    assert len(lines) == 2 and "is truncated" in lines[1]
    # Complete and stable: taken, and no more waiting lines.
    (inbox / "demo-wfdb.dat").write_bytes(data)
    scanner.scan()
    clock.now += 3.0
    [arrival] = scanner.scan()
    assert arrival.main == inbox / "rec.hea" and arrival.problem is None
    assert len(_waiting_lines(caplog)) == 2


def test_a_part_file_and_a_headerless_signal_file_are_logged(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "upload.dcm.part").write_bytes(b"half a file")
    shutil.copy(SAMPLES / "demo-wfdb.dat", inbox / "lonely.dat")
    caplog.set_level(logging.INFO, logger="ingest.intake.watch")
    scanner = InboxScanner([inbox], stable_seconds=0.0, orphan_seconds=600.0, clock=Clock())
    scanner.scan()
    scanner.scan()
    lines = _waiting_lines(caplog)
    assert len(lines) == 2
    assert any("temporary or hidden name" in line for line in lines)
    assert any("signal file waiting for its header" in line for line in lines)


def test_scan_lines_are_words_not_enum_reprs() -> None:
    text = describe_taken(Counter({Taken.NEW: 2, Taken.QUARANTINED: 1, "error": 1}))
    assert text == "1 error, 2 new, 1 quarantined"
    assert "<" not in text and "Taken" not in text


def test_json_logs_one_object_per_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("scan: %s", "2 new")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "scan: 2 new" and first["level"] == "INFO" and first["logger"] == "test.json"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]


def test_configure_logging_switches_the_root_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json")
        logging.getLogger("worker.watch_loop").info("watching %d inbox folder(s)", 1)
        assert json.loads(capsys.readouterr().err.strip())["message"] == "watching 1 inbox folder(s)"
        configure_logging("text")
        logging.getLogger("worker.watch_loop").info("again")
        assert "INFO worker.watch_loop: again" in capsys.readouterr().err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def test_the_wait_follows_the_counts_until_nothing_is_left() -> None:
    readings = iter([(3, {"queued_prepare": 3}), (2, {"queued_interpret": 2}), (0, {})])
    calls = Counter()

    def left() -> tuple[int, dict[str, int]]:
        calls["n"] += 1
        return next(readings)

    assert watch_pipeline(left, timeout=10, enabled=False, poll_seconds=0.0) is True
    assert calls["n"] == 3
    assert watch_pipeline(lambda: (1, {"prepared": 1}), timeout=0.05, enabled=False, poll_seconds=0.01) is False


@pytest.mark.services
def test_a_worker_logs_json_when_asked(tmp_path: Path, redis_url: str) -> None:
    """ECGWL_LOG_FORMAT=json reaches Celery's own lines too: every line the worker writes parses."""
    import os
    import signal
    import subprocess
    import sys
    import time

    exe = str(Path(sys.executable).parent / "ecg-worklist")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGWL_")}
    env |= {"ECGWL_DATA_DIR": str(tmp_path / "var"), "ECGWL_REDIS_URL": redis_url, "ECGWL_LOG_FORMAT": "json"}
    subprocess.run([exe, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([exe, "worker", "--queues", "prepare", "--concurrency", "1"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "ready" not in log.read_text():
            time.sleep(0.5)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    # Every line up to "ready" (Celery prints its shutdown notice itself, after SIGTERM).
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    ready = next(i for i, line in enumerate(lines) if "ready" in line)
    for line in lines[:ready + 1]:
        entry = json.loads(line)  # Celery's lines and Python warnings included
        assert {"time", "level", "logger", "message"} <= set(entry)
    assert json.loads(lines[ready])["logger"].startswith("celery")
