"""The 12-lead ECG image: a (12, N) mV signal drawn on millimetre paper, fast, without matplotlib.

The layout is the standard 12-lead printout, at 25 mm/s and 10 mm/mV:

    header: optional caller text (left), "25 mm/s  10 mm/mV  500 Hz" (right)
    [1 mV cal] I    0-2.5 s | aVR 2.5-5 s | V1 5-7.5 s | V4 7.5-10 s
    [1 mV cal] II           | aVL         | V2         | V5
    [1 mV cal] III          | aVF         | V3         | V6
    [1 mV cal] II, 10 s rhythm strip

Each panel shows its own 2.5 s of the simultaneous recording, as a 12-lead printer does.

Resolution. One image goes to ECG-R1, whose Qwen3-VL processor caps an image at
max_pixels = 768*32*32 = 786,432 pixels and resizes both sides to multiples of 32. The paper
is 264 x 160 mm, so at the default 4 px/mm the image is 1056 x 640 = 675,840 pixels: under
the cap and already a multiple of 32 on both sides, so the processor does NOT resample it
(660 visual tokens) and every 1 mm grid line and 1-px trace reaches the model crisp. A larger
render (e.g. 8 px/mm, 2112 x 1280, for people) would only be shrunk ~2x by the processor,
blurring the 1 mm grid into grey. Integer px/mm keep every grid line on a whole pixel.
Use `pixels_per_mm=8` for a printable image for people.

Speed. The paper (grid, calibration pulses, lead labels, column ticks, scale text) does not
depend on the signal: it is drawn once per size with numpy and kept in a small cache; each
call copies it and draws 13 polylines with PIL, a few milliseconds per ECG on one core.
Rendering is deterministic: the same signal gives the same pixels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ingest.ecg import STANDARD_LEADS
# The layout lives in ingest.paper (the review host draws it too, without Pillow); used here and re-exported.
from ingest.paper import COLUMN_S, LAYOUT, MM_PER_MV, MM_PER_S, RHYTHM_LEAD, RHYTHM_S  # noqa: F401

DEFAULT_PIXELS_PER_MM = 4

# Paper geometry in millimetres. The grid starts below the header band; x = 0 is the left edge.
PAPER_WIDTH_MM = 264
PAPER_HEIGHT_MM = 160
HEADER_MM = 10
CALIBRATION_MM = 10  # space before the traces: the 1 mV pulse sits in it
TRACE_START_MM = CALIBRATION_MM
# Baselines (0 mV) of the three lead rows and the rhythm strip, measured from the grid top;
# on major lines so the calibration pulse spans exactly two large squares.
ROW_BASELINES_MM = (25, 60, 95, 130)
# The calibration pulse: rises CAL_RISE_MM after the row start, 0.2 s (5 mm) wide, 1 mV (10 mm) high.
CAL_START_MM, CAL_RISE_MM, CAL_WIDTH_S, CAL_END_MM = 1.0, 3.0, 0.2, 9.5

PAPER = (255, 255, 255)
MINOR_GRID = (252, 206, 206)  # 1 mm lines: light pink
MAJOR_GRID = (232, 120, 120)  # 5 mm lines: darker red
INK = (0, 0, 0)


def image_size(pixels_per_mm: int = DEFAULT_PIXELS_PER_MM) -> tuple[int, int]:
    """(width, height) in pixels of a render at this resolution."""
    return PAPER_WIDTH_MM * pixels_per_mm, PAPER_HEIGHT_MM * pixels_per_mm


def _trace_width(pixels_per_mm: int) -> int:
    # About 0.25 mm, never thinner than a pixel: 1 px at 4 px/mm, 2 px at 8 px/mm.
    return max(1, round(pixels_per_mm / 4))


@lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled default font: no font files to ship or find on a server.
    return ImageFont.load_default(size=size_px)


def _grid(pixels_per_mm: int) -> np.ndarray:
    """White paper with the 1 mm / 5 mm grid below the header band, as an (H, W, 3) uint8 array."""
    width, height = image_size(pixels_per_mm)
    paper = np.full((height, width, 3), PAPER, dtype=np.uint8)
    top = HEADER_MM * pixels_per_mm
    grid = paper[top:]  # a view: drawing on it draws on the paper
    columns = np.arange(width)
    rows = np.arange(height - top)
    for step, colour in ((pixels_per_mm, MINOR_GRID), (5 * pixels_per_mm, MAJOR_GRID)):
        grid[:, columns % step == 0] = colour
        grid[rows % step == 0, :] = colour
    return paper


def _row_baseline_px(row: int, pixels_per_mm: int) -> int:
    return (HEADER_MM + ROW_BASELINES_MM[row]) * pixels_per_mm


def _column_start_mm(column: int) -> float:
    return TRACE_START_MM + column * COLUMN_S * MM_PER_S


@lru_cache(maxsize=8)
def _background(pixels_per_mm: int, scale_text: str) -> Image.Image:
    """Everything that does not depend on the signal. Cached: callers must copy it."""
    image = Image.fromarray(_grid(pixels_per_mm), mode="RGB")
    draw = ImageDraw.Draw(image)
    ppm = pixels_per_mm
    font = _font(3 * ppm)
    width = _trace_width(ppm)
    cal_fall = CAL_RISE_MM + CAL_WIDTH_S * MM_PER_S
    for row in range(len(ROW_BASELINES_MM)):
        base = _row_baseline_px(row, ppm)
        top = base - round(MM_PER_MV * ppm)  # 1 mV above the baseline
        pulse = [(CAL_START_MM, base), (CAL_RISE_MM, base), (CAL_RISE_MM, top),
                 (cal_fall, top), (cal_fall, base), (CAL_END_MM, base)]
        draw.line([(round(x * ppm), y) for x, y in pulse], fill=INK, width=width)
        labels = LAYOUT[row] if row < len(LAYOUT) else (RHYTHM_LEAD,)
        for column, lead in enumerate(labels):
            x = round(_column_start_mm(column) * ppm)
            draw.text((x + ppm, base - 12 * ppm), lead, fill=INK, font=font)
            if column > 0:  # a short tick where one panel ends and the next begins
                draw.line([(x, base - 2 * ppm), (x, base + 2 * ppm)], fill=INK, width=width)
    draw.text((PAPER_WIDTH_MM * ppm - 2 * ppm, HEADER_MM * ppm // 2), scale_text, fill=INK,
              font=font, anchor="rm")
    return image


def _polyline(samples: np.ndarray, fs: float, x0_mm: float, baseline_px: int,
              pixels_per_mm: int, height_px: int) -> list[int]:
    """Flat [x0, y0, x1, y1, ...] integer pixel coordinates of one trace."""
    x = x0_mm * pixels_per_mm + np.arange(samples.size) * (MM_PER_S * pixels_per_mm / fs)
    y = baseline_px - samples * (MM_PER_MV * pixels_per_mm)
    # Bounded so a wild sample cannot overflow the drawing code; PIL clips to the image.
    y = np.clip(y, -height_px, 2 * height_px)
    points = np.empty((samples.size, 2), dtype=np.int64)
    points[:, 0] = np.rint(x)
    points[:, 1] = np.rint(y)
    return points.ravel().tolist()


def render_12lead(signal: np.ndarray, fs: float, *, pixels_per_mm: int = DEFAULT_PIXELS_PER_MM,
                  header: str | None = None) -> Image.Image:
    """Draw a (12, N) mV signal in STANDARD_LEADS order as a 12-lead printout (RGB PIL image).

    Shows the first 10 s (a shorter signal leaves its panels partly empty). `pixels_per_mm`
    is an integer (4 by default: 1056 x 640, sized for the model; 8 for people: 2112 x 1280).
    `header` is optional text for the top-left of the page, e.g. a device or study label;
    never put patient identifiers on images that leave the review page. Non-finite samples
    are drawn at 0 mV.
    """
    data = np.asarray(signal, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] != len(STANDARD_LEADS):
        raise ValueError(f"expected a (12, N) signal in STANDARD_LEADS order, got shape {data.shape}")
    if not fs or fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    if int(pixels_per_mm) != pixels_per_mm or pixels_per_mm < 2:
        raise ValueError(f"pixels_per_mm must be an integer >= 2, got {pixels_per_mm}")
    ppm = int(pixels_per_mm)
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)

    image = _background(ppm, f"{MM_PER_S:g} mm/s  {MM_PER_MV:g} mm/mV  {fs:g} Hz").copy()
    draw = ImageDraw.Draw(image)
    height = image.height
    width = _trace_width(ppm)
    lead_index = {lead: i for i, lead in enumerate(STANDARD_LEADS)}

    for row, leads in enumerate(LAYOUT):
        base = _row_baseline_px(row, ppm)
        for column, lead in enumerate(leads):
            start = round(column * COLUMN_S * fs)
            stop = round((column + 1) * COLUMN_S * fs)
            samples = data[lead_index[lead], start:stop]
            if samples.size >= 2:
                draw.line(_polyline(samples, fs, _column_start_mm(column), base, ppm, height),
                          fill=INK, width=width)

    rhythm = data[lead_index[RHYTHM_LEAD], :round(RHYTHM_S * fs)]
    if rhythm.size >= 2:
        base = _row_baseline_px(len(LAYOUT), ppm)
        draw.line(_polyline(rhythm, fs, TRACE_START_MM, base, ppm, height), fill=INK, width=width)

    if header:
        draw.text((2 * ppm, HEADER_MM * ppm // 2), header, fill=INK, font=_font(3 * ppm), anchor="lm")
    return image


PAGE_STYLES = ("ecgwl-12lead", "ecg-image-kit")


def render_page(signal: np.ndarray, fs: float, *, style: str = "ecgwl-12lead") -> Image.Image:
    """The page a model reads, in the style its checkpoint was trained on (`model.input_contract`):
    "ecgwl-12lead" is `render_12lead` at 4 px/mm (1056 x 640); "ecg-image-kit" is the
    2200 x 1700 letter page of `ingest.prepare.render_kit` (the released ECG-R1's training style)."""
    if style == "ecgwl-12lead":
        return render_12lead(signal, fs)
    if style == "ecg-image-kit":
        from ingest.prepare.render_kit import render_image_kit

        return render_image_kit(signal, fs)
    raise ValueError(f"unknown page style {style!r}; known: {', '.join(PAGE_STYLES)}")


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write `image` as a PNG for people (review page, `ecg-worklist render`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
