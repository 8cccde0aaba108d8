"""Fixtures of the model-window and renderer tests."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ingest_render.synthetic import N


@pytest.fixture
def flat() -> np.ndarray:
    """(12, 5000) zeros: every trace on its baseline."""
    return np.zeros((12, N), dtype=np.float32)
