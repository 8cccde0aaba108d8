"""The fault suite at CI scale: each fault of tests/faults/faults.py injected into the running
pipeline (real Postgres, its own redis-server, real worker processes, size-limited volumes),
with the goals of issue 12 as assertions: nothing lost, nothing duplicated, every study final
within 5 minutes of the fault ending. Bounds are shortened through the settings (lease 4 s,
reconciler every 1 s); benchmarks/faults.py runs the same faults with the real ones.

The table of the run is printed at the end (`pytest -s tests/faults` shows each row as it goes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.faults.faults import FAULTS
from tests.faults.harness import CI_SCALE, FaultLab, Row, format_table
from worker.settings import Settings

pytestmark = [pytest.mark.services, pytest.mark.slow]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI=true: the fault suite must run)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[FaultLab]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed (the lab runs one of its own)")
    with FaultLab(Path(tmp_path_factory.mktemp("faults")), CI_SCALE) as running:
        yield running
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and running.rows:
        reporter.write_line("\nfault suite (CI scale: lease 4 s, reconciler every 1 s, 10 studies per fault):")
        reporter.write_line(format_table(running.rows))


def _explain(row: Row) -> str:
    return format_table([row]) + "\n" + "\n".join(row.notes)


@pytest.mark.parametrize("name", list(FAULTS))
def test_the_pipeline_recovers_from(lab: FaultLab, name: str) -> None:
    fault = FAULTS[name]
    if fault.needs_volumes and not lab.volumes:
        _missing("mounting a size-limited tmpfs needs root")
    row = lab.run(fault)
    print(format_table([row]))
    assert row.lost == 0, _explain(row)
    assert row.duplicated == 0, _explain(row)
    assert row.quarantined == row.expected_quarantined, _explain(row)
    assert row.recovery_seconds is not None and row.recovery_seconds <= 300, _explain(row)
    studies = lab.batch_studies(name)
    if fault.poison:
        [poisoned] = [s for s in studies if s["state"] == "quarantined"]
        assert "killed its worker 3 times" in poisoned["last_error"] and poisoned["holder_deaths"] == 3
        # The good studies that shared its first prepare batch died with it once; after that it was
        # prepared alone (a batch of one from one death on), so no other death is one of theirs, and
        # none of them reached three (only the poison file is quarantined, above).
        batch = Settings.model_fields["prepare_batch_size"].default
        assert 3 <= row.holder_deaths <= 3 + batch - 1, _explain(row)
    elif name == "cpu-worker-kill":
        assert row.holder_deaths >= 1  # what it held was freed by its lease running out
    elif name == "interpret-worker-kill":
        # Exactly the batch it was interpreting; the batch before ran longer than a lease and
        # was kept alive by the heartbeat.
        assert 1 <= row.holder_deaths <= lab.scale.batch_size, _explain(row)
    else:
        assert row.holder_deaths == 0, _explain(row)  # no worker died: none may be judged gone
