"""The 12-lead renderer, checked by measuring the pixels it draws.

Scales are measured on the image (calibration pulse, grid spacing, a 1 mV step), not read
back from the renderer's constants; only the documented page geometry (where the traces
start, 10 mm after the left edge) is taken from the module.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ingest.ecg import STANDARD_LEADS
from ingest.prepare.render import TRACE_START_MM, image_size, render_12lead, save_png
from tests.ingest_render.synthetic import FS, N, centres, ink, sines

# The standard layout, written out here independently of the renderer.
EXPECTED_PANELS = {
    "I": (0, 0), "aVR": (0, 1), "V1": (0, 2), "V4": (0, 3),
    "II": (1, 0), "aVL": (1, 1), "V2": (1, 2), "V5": (1, 3),
    "III": (2, 0), "aVF": (2, 1), "V3": (2, 2), "V6": (2, 3),
}
RESOLUTIONS = [4, 8]


def baselines(image: Image.Image) -> list[float]:
    """Rows of the four 0 mV baselines of a flat render: ink across most of the width."""
    mask = ink(image)
    return centres(mask.sum(axis=1) > 0.8 * image.width)


def pulse_signal(lead: str, start_s: float, stop_s: float, mv: float = 1.0) -> np.ndarray:
    signal = np.zeros((12, N), dtype=np.float32)
    signal[STANDARD_LEADS.index(lead), round(start_s * FS):round(stop_s * FS)] = mv
    return signal


def new_ink(image: Image.Image, reference: Image.Image) -> np.ndarray:
    """Ink in `image` that the flat `reference` render does not have."""
    return ink(image) & ~ink(reference)


@pytest.mark.parametrize("ppm", RESOLUTIONS)
def test_four_rows_with_baselines_35_mm_apart(flat, ppm):
    rows = baselines(render_12lead(flat, FS, pixels_per_mm=ppm))
    assert len(rows) == 4
    np.testing.assert_allclose(np.diff(rows), 35 * ppm, atol=1)


@pytest.mark.parametrize("ppm", RESOLUTIONS)
def test_calibration_pulse_is_10_mm_high_and_5_mm_wide_in_every_row(flat, ppm):
    image = render_12lead(flat, FS, pixels_per_mm=ppm)
    mask = ink(image)[:, : int(TRACE_START_MM * ppm) - 1]  # the calibration area, left of the traces
    for base in baselines(image):
        band_top = int(base) - 13 * ppm
        band = mask[band_top: int(base) + 2 * ppm]
        edges = centres(band.sum(axis=0) >= 8 * ppm)  # columns with a long vertical stroke
        assert len(edges) == 2, edges
        assert edges[1] - edges[0] == pytest.approx(5 * ppm, abs=1)  # 0.2 s at 25 mm/s
        middle = round((edges[0] + edges[1]) / 2)
        strokes = centres(band[:, middle])  # the pulse's top: the baseline is lifted there
        assert len(strokes) == 1
        assert base - (band_top + strokes[0]) == pytest.approx(10 * ppm, abs=1)  # 1 mV at 10 mm/mV


@pytest.mark.parametrize("ppm", RESOLUTIONS)
def test_grid_has_1_mm_minor_and_5_mm_major_lines(flat, ppm):
    image = render_12lead(flat, FS, pixels_per_mm=ppm)
    pixels = np.asarray(image).astype(int)
    red, green = pixels[..., 0], pixels[..., 1]
    major = (red > 200) & (green < 170)
    minor = (red > 240) & (green >= 170) & (green < 240)
    paper = ~ink(image)  # the baselines cover some grid lines: judge a line by its visible pixels
    for axis in (0, 1):  # columns, then rows
        visible = paper.sum(axis=axis)
        major_lines = np.flatnonzero(major.sum(axis=axis) > 0.5 * visible)
        any_lines = np.flatnonzero((major | minor).sum(axis=axis) > 0.5 * visible)
        assert len(major_lines) > 20
        assert set(np.diff(major_lines)) == {5 * ppm}
        assert set(np.diff(any_lines)) == {ppm}
        assert set(major_lines) <= set(any_lines)


def test_header_band_has_no_grid_but_the_scale_text(flat):
    ppm = 4
    plain = render_12lead(flat, FS, pixels_per_mm=ppm)
    header = np.asarray(plain)[: 10 * ppm]
    pink = header[..., 0].astype(int) - header[..., 1] > 30
    assert not pink.any()
    assert ink(plain)[: 10 * ppm, plain.width // 2:].any()  # "25 mm/s 10 mm/mV 500 Hz", right
    assert not ink(plain)[: 10 * ppm, : plain.width // 2].any()
    titled = render_12lead(flat, FS, pixels_per_mm=ppm, header="Device ELI 250")
    added = new_ink(titled, plain)
    assert added[: 10 * ppm, : plain.width // 2].any() and not added[10 * ppm:].any()


@pytest.mark.parametrize("ppm", RESOLUTIONS)
def test_a_1_mv_step_in_lead_i_is_a_10_mm_deflection_lasting_25_mm_per_second(flat, ppm):
    reference = render_12lead(flat, FS, pixels_per_mm=ppm)
    image = render_12lead(pulse_signal("I", 1.0, 2.0), FS, pixels_per_mm=ppm)
    added = new_ink(image, reference)
    base = baselines(reference)[0]
    edges = centres(added.sum(axis=0) >= 8 * ppm)
    assert len(edges) == 2
    assert edges[1] - edges[0] == pytest.approx(25 * ppm, abs=1)  # 1 s
    assert edges[0] == pytest.approx((TRACE_START_MM + 25) * ppm, abs=1)  # starts at t = 1 s
    plateau = centres(added[:, round((edges[0] + edges[1]) / 2)])
    assert len(plateau) == 1
    assert base - plateau[0] == pytest.approx(10 * ppm, abs=1)


def test_negative_voltages_are_drawn_below_the_baseline(flat):
    ppm = 4
    reference = render_12lead(flat, FS, pixels_per_mm=ppm)
    added = new_ink(render_12lead(pulse_signal("I", 1.0, 2.0, mv=-0.5), FS, pixels_per_mm=ppm), reference)
    rows = np.flatnonzero(added.any(axis=1))
    base = baselines(reference)[0]
    assert rows.min() > base and rows.max() == pytest.approx(base + 5 * ppm, abs=1)


@pytest.mark.parametrize("lead", STANDARD_LEADS)
def test_each_lead_lands_in_its_panel_at_its_time(flat, lead):
    ppm = 4
    reference = render_12lead(flat, FS, pixels_per_mm=ppm)
    rows = baselines(reference)
    row, column = EXPECTED_PANELS[lead]
    start_s = column * 2.5 + 1.0  # inside the 2.5 s this lead's column shows
    image = render_12lead(pulse_signal(lead, start_s, start_s + 0.5), FS, pixels_per_mm=ppm)
    added = new_ink(image, reference)
    hit_rows = [i for i, base in enumerate(rows)
                if added[int(base) - 12 * ppm: int(base) + ppm].any()]
    assert hit_rows == ([row, 3] if lead == "II" else [row])  # lead II is also the rhythm strip
    columns = np.flatnonzero(added.any(axis=0))
    assert columns.min() == pytest.approx((TRACE_START_MM + start_s * 25) * ppm, abs=1)
    assert columns.max() == pytest.approx((TRACE_START_MM + (start_s + 0.5) * 25) * ppm, abs=2)


def test_a_lead_outside_its_columns_time_is_not_drawn(flat):
    reference = render_12lead(flat, FS)
    # V4 is shown only from 7.5 s to 10 s: a pulse at 1 s leaves no ink anywhere.
    assert not new_ink(render_12lead(pulse_signal("V4", 1.0, 1.5), FS), reference).any()


def test_rendering_is_deterministic(tmp_path):
    signal = sines(FS, 10)
    first, second = render_12lead(signal, FS), render_12lead(signal, FS)
    assert first.tobytes() == second.tobytes()
    assert render_12lead(signal * 1.01, FS).tobytes() != first.tobytes()
    save_png(first, tmp_path / "a.png")
    save_png(second, tmp_path / "nested" / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "nested" / "b.png").read_bytes()


def test_save_png_round_trips_the_pixels(tmp_path):
    image = render_12lead(sines(FS, 10), FS)
    path = save_png(image, tmp_path / "ecg.png")
    with Image.open(path) as loaded:
        assert loaded.format == "PNG"
        assert loaded.convert("RGB").tobytes() == image.tobytes()


def test_the_cached_paper_is_not_drawn_on_by_a_render(flat):
    before = render_12lead(flat, FS).tobytes()
    render_12lead(sines(FS, 10), FS, header="something")
    assert render_12lead(flat, FS).tobytes() == before


def test_non_finite_samples_are_drawn_at_0_mv(flat):
    broken = flat.copy()
    broken[0, 100:200] = np.nan
    broken[5, 300] = np.inf
    assert render_12lead(broken, FS).tobytes() == render_12lead(flat, FS).tobytes()


def test_other_sampling_rates_keep_25_mm_per_second():
    ppm = 4
    flat_1000 = np.zeros((12, 10_000), dtype=np.float32)
    stepped = flat_1000.copy()
    stepped[0, 1000:2000] = 1.0  # 1 s to 2 s at 1000 Hz
    added = new_ink(render_12lead(stepped, 1000, pixels_per_mm=ppm),
                    render_12lead(flat_1000, 1000, pixels_per_mm=ppm))
    edges = centres(added.sum(axis=0) >= 8 * ppm)
    assert edges[1] - edges[0] == pytest.approx(25 * ppm, abs=1)


def test_a_short_signal_leaves_later_panels_empty(flat):
    five_seconds = flat[:, : N // 2]
    added = new_ink(render_12lead(flat, FS), render_12lead(five_seconds, FS))
    columns = np.flatnonzero(added.any(axis=0))
    # Only the traces after 5 s are missing: columns V1-V6 and the rhythm strip's second half.
    assert columns.min() >= (TRACE_START_MM + 5 * 25) * 4 - 1


def test_default_size_passes_the_qwen_processor_unresized():
    width, height = image_size()
    assert (width, height) == render_12lead(np.zeros((12, N)), FS).size
    smart_resize = pytest.importorskip(
        "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl").smart_resize
    # ECG-R1 caps an image at 768 * 32 * 32 pixels; at the default resolution nothing is resampled.
    assert smart_resize(height, width, factor=32, min_pixels=4 * 32 * 32,
                        max_pixels=768 * 32 * 32) == (height, width)


@pytest.mark.parametrize(("kwargs", "shape"), [
    ({}, (11, N)), ({}, (N,)), ({"pixels_per_mm": 4.5}, (12, N)), ({"pixels_per_mm": 1}, (12, N)),
])
def test_bad_arguments_are_refused(kwargs, shape):
    with pytest.raises(ValueError):
        render_12lead(np.zeros(shape), FS, **kwargs)


def test_png_is_compact_enough_to_store(tmp_path):
    # Not a timing: a size sanity check, the PNG of a 1056 x 640 render stays small.
    buffer = io.BytesIO()
    render_12lead(sines(FS, 10), FS).save(buffer, format="PNG")
    assert buffer.tell() < 400_000
