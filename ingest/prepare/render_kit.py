"""An ECG-image-kit-like page: the image style the released ECG-R1 was trained on.

The release's training images (its MIMIC-IV-ECG pages and PULSE's ECGInstruct) were made
with ECG-image-kit, whose default page is a US-letter sheet in landscape drawn at 200 dpi:

    2200 x 1700 px (11 x 8.5 in), grid over the whole sheet: 5 mm squares in red,
    1 mm squares in light pink; black traces about 0.75 pt wide; lead names about 11 pt;
    a 1 mV, 0.2 s calibration pulse at the start of each row;
    rows: I aVR V1 V4 | II aVL V2 V5 | III aVF V3 V6 (2.5 s each) | II, 10 s rhythm strip

Qwen3-VL's processor then shrinks the page to at most 768 visual tokens (2200 x 1700 ->
992 x 768, 744 tokens), which is what the model saw. This module draws that kind of page
(our own code, from the kit's documented defaults; no augmentation: no wrinkles, noise or
rotation) so that a checkpoint trained on it is fed what it knows. At 200 dpi a millimetre
is 7.874 px, so grid lines are placed at the nearest pixel of each millimetre.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ingest.ecg import STANDARD_LEADS

DPI = 200
MM_PER_INCH = 25.4
PX_PER_MM = DPI / MM_PER_INCH  # 7.874
PAGE_WIDTH_MM = 11 * MM_PER_INCH  # 279.4
PAGE_HEIGHT_MM = 8.5 * MM_PER_INCH  # 215.9
MM_PER_S = 25.0
MM_PER_MV = 10.0
COLUMN_S = 2.5
RHYTHM_S = 10.0
# Row baselines (0 mV), mm from the top: four rows, evenly spaced down the sheet.
ROW_BASELINES_MM = (40.0, 87.0, 134.0, 181.0)
PULSE_START_MM = 4.0  # the calibration pulse: 0.2 s wide, 1 mV high
PULSE_WIDTH_S = 0.2
TRACE_START_MM = 16.0  # traces begin after the pulse; 4 x 62.5 mm of 2.5 s panels follow
LAYOUT: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
RHYTHM_LEAD = "II"
PAPER = (255, 255, 255)
MAJOR_GRID = (255, 0, 0)  # the kit's standard major colour
MINOR_GRID = (254, 223, 219)  # and its light-pink minor colour
INK = (0, 0, 0)
TRACE_WIDTH_PX = 2  # 0.75 pt at 200 dpi ~ 2.1 px
FONT_PX = 30  # 11 pt at 200 dpi ~ 30.6 px


def page_size() -> tuple[int, int]:
    """(width, height) in pixels: 2200 x 1700."""
    return round(PAGE_WIDTH_MM * PX_PER_MM), round(PAGE_HEIGHT_MM * PX_PER_MM)


def _px(mm: float) -> int:
    return round(mm * PX_PER_MM)


@lru_cache(maxsize=1)
def _background() -> Image.Image:
    """The grid, calibration pulses and lead names (independent of the signal). Callers copy it."""
    width, height = page_size()
    paper = np.full((height, width, 3), PAPER, dtype=np.uint8)
    for step_mm, colour in ((1, MINOR_GRID), (5, MAJOR_GRID)):  # major lines drawn over minor ones
        columns = [_px(k) for k in range(0, int(PAGE_WIDTH_MM) + 1, step_mm)]
        rows = [_px(k) for k in range(0, int(PAGE_HEIGHT_MM) + 1, step_mm)]
        paper[:, [c for c in columns if c < width]] = colour
        paper[[r for r in rows if r < height], :] = colour
    image = Image.fromarray(paper, mode="RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_PX)
    pulse_end = PULSE_START_MM + PULSE_WIDTH_S * MM_PER_S
    for row, baseline in enumerate(ROW_BASELINES_MM):
        top = baseline - MM_PER_MV
        pulse = [(PULSE_START_MM - 2, baseline), (PULSE_START_MM, baseline), (PULSE_START_MM, top),
                 (pulse_end, top), (pulse_end, baseline), (pulse_end + 2, baseline)]
        draw.line([(_px(x), _px(y)) for x, y in pulse], fill=INK, width=TRACE_WIDTH_PX)
        names = LAYOUT[row] if row < len(LAYOUT) else (RHYTHM_LEAD,)
        for column, lead in enumerate(names):
            x = TRACE_START_MM + column * COLUMN_S * MM_PER_S
            draw.text((_px(x + 1), _px(baseline - 14)), lead, fill=INK, font=font)
    return image


def _points(samples: np.ndarray, fs: float, x0_mm: float, baseline_mm: float, height_px: int) -> list[float]:
    x = (x0_mm + np.arange(samples.size) * (MM_PER_S / fs)) * PX_PER_MM
    y = np.clip((baseline_mm - samples * MM_PER_MV) * PX_PER_MM, -height_px, 2 * height_px)
    return np.rint(np.column_stack([x, y])).astype(np.int64).ravel().tolist()


def render_image_kit(signal: np.ndarray, fs: float) -> Image.Image:
    """Draw a (12, N) mV signal in STANDARD_LEADS order as an ECG-image-kit-like page (RGB, 2200 x 1700).

    Deterministic; non-finite samples are drawn at 0 mV; the first 10 s are shown.
    """
    data = np.asarray(signal, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] != len(STANDARD_LEADS):
        raise ValueError(f"expected a (12, N) signal in STANDARD_LEADS order, got shape {data.shape}")
    if not fs or fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    image = _background().copy()
    draw = ImageDraw.Draw(image)
    index = {lead: i for i, lead in enumerate(STANDARD_LEADS)}
    for row, leads in enumerate(LAYOUT):
        for column, lead in enumerate(leads):
            piece = data[index[lead], round(column * COLUMN_S * fs):round((column + 1) * COLUMN_S * fs)]
            if piece.size >= 2:
                x0 = TRACE_START_MM + column * COLUMN_S * MM_PER_S
                draw.line(_points(piece, fs, x0, ROW_BASELINES_MM[row], image.height), fill=INK,
                          width=TRACE_WIDTH_PX)
    rhythm = data[index[RHYTHM_LEAD], :round(RHYTHM_S * fs)]
    if rhythm.size >= 2:
        draw.line(_points(rhythm, fs, TRACE_START_MM, ROW_BASELINES_MM[-1], image.height), fill=INK,
                  width=TRACE_WIDTH_PX)
    return image


__all__ = ["page_size", "render_image_kit"]
