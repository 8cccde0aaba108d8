"""The ECG-image-kit-like page (`ingest.prepare.render_kit`): its geometry, and that it draws the signal."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.prepare.render import render_page
from ingest.prepare.render_kit import (
    LAYOUT,
    MM_PER_MV,
    PX_PER_MM,
    ROW_BASELINES_MM,
    TRACE_START_MM,
    page_size,
    render_image_kit,
)


def _signal(level_mv: float = 0.0) -> np.ndarray:
    return np.full((12, 5000), level_mv, dtype=np.float32)


def test_a_letter_page_at_200_dpi() -> None:
    image = render_image_kit(_signal(), 500)
    assert image.size == page_size() == (2200, 1700) and image.mode == "RGB"
    assert render_page(_signal(), 500, style="ecg-image-kit").tobytes() == image.tobytes()  # deterministic
    with pytest.raises(ValueError, match="unknown page style"):
        render_page(_signal(), 500, style="photo")


def test_each_lead_is_drawn_at_its_place_and_gain() -> None:
    """A flat 1 mV signal in one lead puts ink 10 mm above that lead's baseline, in its panel only."""
    image = np.asarray(render_image_kit(np.zeros((12, 5000)) + 0.0, 500))
    signal = _signal()
    signal[5] = 1.0  # aVF: row 3, column 2
    drawn = np.asarray(render_image_kit(signal, 500))
    changed = np.argwhere((drawn != image).any(axis=2))
    row_px = round((ROW_BASELINES_MM[2] - MM_PER_MV) * PX_PER_MM)
    x0 = round((TRACE_START_MM + 62.5) * PX_PER_MM)
    assert LAYOUT[2][1] == "aVF"
    assert abs(np.median(changed[:, 0]) - row_px) <= 2
    assert changed[:, 1].min() >= x0 - 2 and changed[:, 1].max() <= round((TRACE_START_MM + 125) * PX_PER_MM) + 2


def test_the_model_sees_about_768_tokens() -> None:
    from model.processing_ecg_r1 import make_image_processor

    processor = make_image_processor()
    tokens = processor.get_number_of_image_patches(1700, 2200, {}) // 4
    assert 700 <= tokens <= 768
