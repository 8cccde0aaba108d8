"""Reading the numbers an interpreter writes: wording, units, ranges, and what is not a claim."""

from __future__ import annotations

import pytest

from reports.verify import extract_values

# (text, [(field, value, upper)]) in the field's unit: ms, bpm, degrees.
CASES: list[tuple[str, list[tuple[str, float, float | None]]]] = [
    ("The heart rate of 72 bpm is normal.", [("hr_bpm", 72.0, None)]),
    ("Ventricular rate approximately 110 beats per minute.", [("hr_bpm", 110.0, None)]),
    ("HR: 72", [("hr_bpm", 72.0, None)]),
    ("Sinus rhythm at 55/min.", [("hr_bpm", 55.0, None)]),
    ("Sinus tachycardia with a rate of 110 bpm.", [("hr_bpm", 110.0, None)]),
    ("Rate 70-75 bpm.", [("hr_bpm", 70.0, 75.0)]),
    ("Atrial rate 300 bpm, 2:1 conduction.", []),
    ("QTc 456 ms.", [("qtc_ms", 456.0, None)]),
    ("QTc (Bazett) 470 ms, QTcF 450 ms.", [("qtc_ms", 470.0, None), ("qtc_fridericia_ms", 450.0, None)]),
    ("QT/QTc 400/456 ms", [("qt_ms", 400.0, None), ("qtc_ms", 456.0, None)]),
    ("QT interval of 400 ms", [("qt_ms", 400.0, None)]),
    ("PR interval is 0.18 s", [("pr_ms", 180.0, None)]),
    ("P-R 212ms", [("pr_ms", 212.0, None)]),
    ("QRS duration is prolonged at 130 ms", [("qrs_ms", 130.0, None)]),
    ("QRS 0.12 seconds", [("qrs_ms", 120.0, None)]),
    ("Electrical axis -45\u00b0", [("qrs_axis_deg", -45.0, None)]),
    ("QRS axis \u221230 degrees", [("qrs_axis_deg", -30.0, None)]),
    ("Left axis deviation (-60 degrees)", [("qrs_axis_deg", -60.0, None)]),
    ("P axis 60, T axis +40 degrees", [("p_axis_deg", 60.0, None), ("t_axis_deg", 40.0, None)]),
    # not claims of a measured field
    ("QRS amplitude 0.8 mV in V5", []),
    ("PR interval normal (< 200 ms)", []),
    ("QRS 120", []),  # an interval without a unit is not read
    ("12 of 12 leads measured; rhythm 12 leads", []),
    ("ST elevation 0.25 mV in V2, V3", []),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_extract_values(text: str, expected: list[tuple[str, float, float | None]]) -> None:
    assert [(c.field, c.value, c.upper) for c in extract_values(text)] == expected


def test_claim_keeps_its_words() -> None:
    [claim] = extract_values("Sinus rhythm. The PR interval is 0.18 s and normal.")
    assert claim.text == "PR interval is 0.18 s"
