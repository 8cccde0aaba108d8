"""deploy/: the systemd units pass `systemd-analyze verify`, and the commands they start exist."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.worker.conftest import REPO
from worker.cli import main

UNITS = REPO / "deploy" / "systemd"
INSTALL_PREFIX = "/opt/ecg-worklist"  # where the units expect the checkout (with its .venv)
LONG_RUNNING = {"ecg-worklist-watch.service", "ecg-worklist-worker-cpu.service", "ecg-worklist-worker-gpu@.service",
                "ecg-worklist-deliver.service", "ecg-worklist-review.service"}


def _exec_start(unit: Path) -> list[str]:
    [line] = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_there_is_a_unit_per_long_running_process_and_an_example_environment() -> None:
    assert LONG_RUNNING <= {path.name for path in UNITS.iterdir()}
    example = (REPO / "deploy" / "ecg-worklist.env.example").read_text()
    for variable in ("ECGWL_DATABASE_URL", "ECGWL_REDIS_URL", "ECGWL_INBOX_DIRS", "ECGWL_VISIBILITY_TIMEOUT_SECONDS",
                     "ECGWL_LEASE_SECONDS", "ECGWL_POISON_AFTER"):
        assert f"\n{variable}=" in example


def test_every_variable_of_the_example_environment_is_a_setting() -> None:
    """A variable the settings do not know is ignored silently: the example must not name one."""
    import re

    from worker.settings import Settings

    example = (REPO / "deploy" / "ecg-worklist.env.example").read_text()
    named = set(re.findall(r"^#?(ECGWL_[A-Z0-9_]+)=", example, flags=re.MULTILINE))
    fields = {f"ECGWL_{name.upper()}" for name in Settings.model_fields}
    assert named and named <= fields, sorted(named - fields)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # The units name the installed checkout; point them at this one so ExecStart resolves.
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALL_PREFIX, str(REPO)))
    (tmp_path / "ecg-worklist-worker-gpu@0.service").symlink_to(tmp_path / "ecg-worklist-worker-gpu@.service")
    names = sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith("@.service"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no ignored keys, no warnings


@pytest.mark.parametrize("unit", ["ecg-worklist-watch.service", "ecg-worklist-worker-cpu.service",
                                  "ecg-worklist-worker-gpu@.service", "ecg-worklist-batch.service"])
def test_pipeline_units_start_commands_that_exist(unit: str) -> None:
    argv = _exec_start(UNITS / unit)
    assert argv[0] == f"{INSTALL_PREFIX}/.venv/bin/ecg-worklist"
    options = [arg for arg in argv[1:] if arg.startswith("--")]
    command = [arg for arg in argv[1:] if not arg.startswith("-") and not arg.startswith("/")
               and arg not in ("prepare,report", "interpret")]
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output
