"""The ECG drawing for people (reports/review/ecg_view.py): true scale, full resolution, grid, labels."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from reports.review import ecg_view
from reports.review.ecg_view import BASELINES_MM, TRACE_X0_MM, render_svg
from tests.review.svg_reading import grid_lines, label_hits, read_drawing
from tests.review.synthetic import twelve_lead


def _rhythm(drawing):
    return [trace for trace in drawing.traces if trace[1]]


def test_25_mm_per_s_and_10_mm_per_mv_with_every_sample() -> None:
    fs = 1000
    signal = np.zeros((12, 10 * fs))
    signal[1, 2 * fs:] = 1.0  # lead II steps to 1 mV at 2 s
    drawing = read_drawing(render_svg(signal, fs, STANDARD_LEADS))
    ((lead, _, xs, ys),) = _rhythm(drawing)
    assert lead == "II"
    assert len(xs) == 10 * fs  # every sample is a vertex: nothing thinned out
    assert xs[0] == pytest.approx(TRACE_X0_MM) and xs[-1] == pytest.approx(TRACE_X0_MM + 250, abs=0.03)
    assert np.diff(xs) == pytest.approx(np.full(len(xs) - 1, 25 / fs), abs=0.006)  # 25 mm per second
    step = int(np.argmax(ys < BASELINES_MM[-1] - 5))
    assert xs[step] == pytest.approx(TRACE_X0_MM + 2 * 25, abs=0.03)  # the step at 2 s is 50 mm in
    assert BASELINES_MM[-1] - ys[-1] == pytest.approx(10.0)  # 1 mV is 10 mm
    # Panels: 2.5 s each, leads of a column side by side, as on paper.
    panels = {lead: (xs[0], xs[-1]) for lead, rhythm, xs, _ in drawing.traces if not rhythm}
    assert panels["I"] == pytest.approx((15, 77.5)) and panels["aVR"] == pytest.approx((77.5, 140))
    assert panels["V4"] == pytest.approx((202.5, 265), abs=0.03)


def test_millimetre_grid_and_calibration_pulse() -> None:
    drawing = read_drawing(render_svg(np.zeros((12, 5000)), 500, STANDARD_LEADS))
    minor_x, minor_y = grid_lines(drawing, "0.08")
    major_x, major_y = grid_lines(drawing, "0.2")
    assert sorted(minor_x + major_x) == list(range(0, 271))  # a line every millimetre
    assert major_x == list(range(0, 271, 5)) and major_y == list(range(0, 176, 5))  # heavier every 5 mm
    assert TRACE_X0_MM in major_x and all(baseline in major_y for baseline in BASELINES_MM)
    pulses = [p.get("d") for p in drawing.root.iter("{http://www.w3.org/2000/svg}path")
              if p.get("class") == "calibration"]
    assert len(pulses) == 4
    assert pulses[0] == "M2 30H5V20H10V30H13"  # 1 mV = 10 mm high, 0.2 s = 5 mm wide


def test_labels_never_touch_a_trace_on_a_normal_ecg() -> None:
    drawing = read_drawing(render_svg(twelve_lead(800), 500, STANDARD_LEADS))
    assert [text for text, _ in drawing.labels] == [*"I aVR V1 V4 II aVL V2 V5 III aVF V3 V6".split(), "II"]
    assert label_hits(drawing) == []


def test_labels_move_out_of_the_way_of_tall_waves() -> None:
    """R waves of 2.5 mV at every panel's start, and a lead wandering over two rows: the labels
    still find free paper."""
    fs = 500
    t = np.arange(10 * fs) / fs
    signal = np.zeros((12, len(t)))
    for start in (0.0, 2.5, 5.0, 7.5):
        signal += 2.5 * np.exp(-0.5 * ((t - start - 0.05) / 0.01) ** 2)
        signal -= 1.8 * np.exp(-0.5 * ((t - start - 0.1) / 0.01) ** 2)
    signal[6] += 3.0 * np.sin(2 * np.pi * 0.4 * t)  # V1 drifts by +-3 mV into the rows around it
    drawing = read_drawing(render_svg(signal, fs, STANDARD_LEADS))
    assert label_hits(drawing) == []
    assert len(drawing.labels) == 13


def test_a_gap_breaks_the_line_and_a_missing_lead_stays_blank() -> None:
    signal = twelve_lead(1000)[:11]  # no V6
    signal[0, 100:150] = np.nan  # lead I has a gap of 0.1 s
    drawing = read_drawing(render_svg(signal, 500, STANDARD_LEADS[:11]))
    assert [lead for lead, *_ in drawing.traces].count("I") == 2
    assert "V6" not in {lead for lead, *_ in drawing.traces}
    first, second = [xs for lead, _, xs, _ in drawing.traces if lead == "I"]
    assert second[0] - first[-1] == pytest.approx(51 * 25 / 500, abs=0.01)  # nothing drawn across the gap


def test_no_script_and_no_style_element_in_the_drawing() -> None:
    svg = render_svg(twelve_lead(1000), 500, STANDARD_LEADS)
    assert "<script" not in svg and "<style" not in svg and "href" not in svg
    with pytest.raises(ValueError):
        render_svg(twelve_lead(1000), 0, STANDARD_LEADS)
    assert ecg_view.Geometry().width_mm == 270 and ecg_view.Geometry().height_mm == 175
