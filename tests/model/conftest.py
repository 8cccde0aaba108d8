"""Fixtures of the model tests: one tiny ECG-R1 per session, a saved copy, and inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration
from model.processing_ecg_r1 import EcgR1Processor
from model.tiny import make_tiny_model, make_tiny_processor, save_tiny_model


@pytest.fixture(scope="session")
def tiny_processor() -> EcgR1Processor:
    return make_tiny_processor()


@pytest.fixture(scope="session")
def tiny_model(tiny_processor: EcgR1Processor) -> ECGR1ForConditionalGeneration:
    model, _ = make_tiny_model(seed=0, processor=tiny_processor)
    return model


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-ecg-r1"), seed=0)


@pytest.fixture
def signal() -> np.ndarray:
    """A (12, 5000) signal with some structure (so different leads give different tokens)."""
    t = np.arange(5000) / 500.0
    leads = [np.sin(2 * np.pi * (1 + k / 6) * t) * (0.5 + k / 12) for k in range(12)]
    return np.stack(leads).astype(np.float32)


@pytest.fixture
def other_signal(signal: np.ndarray) -> np.ndarray:
    return np.random.default_rng(1).normal(0.0, 0.3, size=signal.shape).astype(np.float32)


def ecg_like_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A paper-coloured page with random dark strokes (cheap, varied pixels)."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), 240, dtype=np.uint8)
    page[rng.random((height, width)) < 0.05] = (30, 30, 30)
    return Image.fromarray(page)


@pytest.fixture
def small_image() -> Image.Image:
    return ecg_like_image(256, 192)  # 8 x 6 = 48 visual tokens
