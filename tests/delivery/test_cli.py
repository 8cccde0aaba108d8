"""`ecg-worklist deliver`: one pass with --once, the daemon stopping on SIGTERM, and its refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.delivery.conftest import draft, outbox
from tests.mllp_engine import FakeInterfaceEngine
from worker.cli import main

REPO = Path(__file__).resolve().parents[2]


def _environment(pg_url: str, destinations: list[dict]) -> dict[str, str]:
    return {"ECGWL_DATABASE_URL": pg_url, "ECGWL_HL7_DESTINATIONS": json.dumps(destinations),
            "ECGWL_DELIVERY_POLL_SECONDS": "0.2"}


def test_once_delivers_and_prints_counts_without_patient_data(pg_url: str, engine: sa.Engine) -> None:
    _, report = draft(engine, ["his"])
    with FakeInterfaceEngine() as his:
        env = _environment(pg_url, [{"name": "his", "host": "127.0.0.1", "port": his.port}])
        result = CliRunner().invoke(main, ["deliver", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert "accepted 1" in result.output and "sent 1" in result.output
    assert "MRN-4711" not in result.output and "Rossi" not in result.output
    assert his.accepted_control_ids == [report.message_control_id]
    assert outbox(engine)[0].state == "acked"


def test_destination_option_limits_the_pass(pg_url: str, engine: sa.Engine) -> None:
    draft(engine, ["his", "ris"])
    with FakeInterfaceEngine() as his, FakeInterfaceEngine() as ris:
        env = _environment(pg_url, [{"name": "his", "host": "127.0.0.1", "port": his.port},
                                    {"name": "ris", "host": "127.0.0.1", "port": ris.port}])
        result = CliRunner().invoke(main, ["deliver", "--once", "--destination", "ris"], env=env)
    assert result.exit_code == 0, result.output
    assert (len(his.received), len(ris.received)) == (0, 1)


@pytest.mark.parametrize(("destinations", "args", "message"), [
    ([{"name": "his", "host": "127.0.0.1", "port": 2575}], ["--destination", "lab"], "not configured: lab"),
    (["his"], [], "without host and port: his"),
])
def test_refuses_what_it_cannot_deliver_to(pg_url: str, destinations: list, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["deliver", "--once", *args], env=_environment(pg_url, destinations))
    assert result.exit_code == 2
    assert message in result.output


def test_daemon_delivers_as_rows_arrive_and_stops_on_sigterm(pg_url: str, engine: sa.Engine) -> None:
    _, first = draft(engine, ["his"])
    with FakeInterfaceEngine() as his:
        env = {**os.environ, **_environment(pg_url, [{"name": "his", "host": "127.0.0.1", "port": his.port}])}
        command = [str(Path(sys.executable).parent / "ecg-worklist"), "deliver"]  # the installed entry point
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        try:
            _wait_for(lambda: len(his.accepted_control_ids) == 1, process)
            _, second = draft(engine, ["his"], patient_id="MRN-0815")  # queued while it runs
            _wait_for(lambda: len(his.accepted_control_ids) == 2, process)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, output
    assert "delivery stopped; in total: sent 2, accepted 2" in output
    assert "MRN-4711" not in output and "MRN-0815" not in output
    assert his.accepted_control_ids == [first.message_control_id, second.message_control_id]
    assert [row.state for row in outbox(engine)] == ["acked", "acked"]


def _wait_for(condition, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"deliver exited early: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError("deliver did not deliver in time")
        time.sleep(0.1)
