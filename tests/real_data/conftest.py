"""The real-data set measured once per test session and shared by the tests that need it."""

from __future__ import annotations

import pytest

from ingest.validation.evaluate import Evaluation, evaluate
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.run import OURS


@pytest.fixture(scope="session")
def evaluation() -> Evaluation:
    """Our delineator and protocol reader over the whole committed set (about 20 s on one core)."""
    return evaluate(load_references(DEFAULT_DATA_DIR, "all"), DEFAULT_DATA_DIR, "all", delineators=(OURS,))
