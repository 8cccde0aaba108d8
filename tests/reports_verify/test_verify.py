"""Claim checks against measured features: values beyond tolerance, labels against thresholds."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingest.measure.measured import AtrialWaveLead, GroundingFeatures, PLock
from ingest.protocol import protocol_read
from ingest.report_format import format_output, parse_output
from reports.verify import verify
from tests.protocol import builders as b
from tests.protocol.test_read import PICTURES
from tests.protocol.test_rules import CASES as RULE_CASES

STEPS = {n: "" for n in range(1, 7)}


def ecg_r1(narrative: str = "", labels: list[str] | None = None, steps: dict[int, str] | None = None) -> str:
    """An output in the ECG-R1 format, as another interpreter would write it."""
    return format_output({**STEPS, **(steps or {})}, narrative, labels or [])


def _kinds(flags: list) -> list[tuple[str, str]]:
    return [(flag.kind, flag.field) for flag in flags]


OWN_OUTPUTS = {**PICTURES, **{case[0]: case[1] for case in RULE_CASES}}


@pytest.mark.parametrize("build", OWN_OUTPUTS.values(), ids=OWN_OUTPUTS.keys())
def test_no_flags_on_the_protocol_readers_own_output(build: Callable[[], GroundingFeatures]) -> None:
    features = build()
    read = protocol_read(features)
    assert verify(read.text, features) == []
    assert verify(parse_output(read.text), features) == []


# A P wave locked to the QRS over 11 beats, upright in II (ingest.measure.p_lock).
LOCKED = PLock(span_ms=300.0, beats=11, share_by_lead={"II": 0.8, "aVF": 0.7}, peak_mv_by_lead={"II": 0.04, "aVF": 0.03})
N = b.normal_features  # measured: HR 72, PR 160, QRS 90, QT 380, QTc 415, axis +45

# (id, features, output text, expected [(kind, field)])
CASES: list[tuple[str, Callable[[], GroundingFeatures], str, list[tuple[str, str]]]] = [
    # values against tolerances: HR 5 bpm, intervals 20 ms, axis 20 degrees
    ("hr 77 within 5", N, ecg_r1("Heart rate of 77 bpm."), []),
    ("hr 78 beyond 5", N, ecg_r1("Heart rate of 78 bpm."), [("value", "hr_bpm")]),
    ("pr 180 within 20", N, ecg_r1(steps={2: "PR interval 180 ms."}), []),
    ("pr 181 beyond 20", N, ecg_r1(steps={2: "PR interval 181 ms."}), [("value", "pr_ms")]),
    ("pr 0.18 s within", N, ecg_r1(steps={2: "The PR interval is 0.18 s."}), []),
    ("pr 0.22 s beyond", N, ecg_r1(steps={2: "The PR interval is 0.22 s."}), [("value", "pr_ms")]),
    ("qrs 112 beyond", N, ecg_r1(steps={2: "QRS duration 112 ms."}), [("value", "qrs_ms")]),
    ("qtc 456 beyond", N, ecg_r1(steps={5: "QTc 456 ms."}), [("value", "qtc_ms")]),
    ("qt/qtc pair", N, ecg_r1(steps={5: "QT/QTc 380/470 ms."}), [("value", "qtc_ms")]),
    ("axis 65 within", N, ecg_r1(steps={2: "QRS axis +65 degrees."}), []),
    ("axis 66 beyond", N, ecg_r1(steps={2: "QRS axis +66 degrees."}), [("value", "qrs_axis_deg")]),
    ("axis across 180", lambda: b.with_global(N(), qrs_axis_deg=175.0), ecg_r1(steps={2: "Axis -170 degrees."}), []),
    ("range holding the value", N, ecg_r1("Rate 70-75 bpm."), []),
    ("range missing the value", N, ecg_r1("Rate 80-90 bpm."), [("value", "hr_bpm")]),
    ("unmeasured value not flagged", lambda: b.with_global(N(), pr_ms=None), ecg_r1("PR interval 300 ms."), []),
    # labels against the protocol's thresholds (with half the tolerance as margin)
    ("sinus bradycardia at 85", lambda: b.with_global(N(), hr_bpm=85.0), ecg_r1(labels=["sinus bradycardia"]),
     [("label", "hr_bpm")]),
    ("sinus bradycardia at 62 (margin)", lambda: b.with_global(N(), hr_bpm=62.0),
     ecg_r1(labels=["sinus bradycardia"]), []),
    ("sinus bradycardia at 63", lambda: b.with_global(N(), hr_bpm=63.0), ecg_r1(labels=["sinus bradycardia"]),
     [("label", "hr_bpm")]),
    ("sinus tachycardia at 72", N, ecg_r1(labels=["sinus tachycardia"]), [("label", "hr_bpm")]),
    ("normal sinus rhythm at 45", lambda: b.with_global(N(), hr_bpm=45.0), ecg_r1(labels=["normal sinus rhythm"]),
     [("label", "hr_bpm")]),
    ("sinus rhythm without P waves", b.atrial_fibrillation, ecg_r1(labels=["sinus rhythm"]),
     [("label", "p_wave_fraction")]),
    ("sinus tachycardia where the wave before a wide QRS stands 80 ms before it", lambda: b.with_global(
        N(), hr_bpm=170.0, qrs_ms=150.0, pr_ms=80.0), ecg_r1(labels=["sinus tachycardia"]), [("label", "pr_ms")]),
    ("sinus tachycardia with a wide QRS and a PR of 120", lambda: b.with_global(
        N(), hr_bpm=170.0, qrs_ms=150.0, pr_ms=120.0), ecg_r1(labels=["sinus tachycardia"]), []),
    ("af with P before every beat", N, ecg_r1(labels=["atrial fibrillation"]), [("label", "p_wave_fraction")]),
    ("af with P absent, irregular", b.atrial_fibrillation, ecg_r1(labels=["AF"]), []),
    ("af with regular RR", lambda: b.with_rhythm(b.atrial_fibrillation(), rr_cv=0.03),
     ecg_r1(labels=["atrial fibrillation"]), [("label", "rr_cv")]),
    ("af where the atrial leads show flutter waves", lambda: b.with_rhythm(b.atrial_fibrillation(), atrial_waves=[
        AtrialWaveLead(lead=lead, frequency_hz=4.8, organisation=0.6, repeat_correlation=0.5, amplitude_mv=0.1)
        for lead in ("II", "III", "aVF", "V1")]), ecg_r1(labels=["atrial fibrillation"]), [("label", "atrial_waves")]),
    ("af where the atrial waves are fibrillatory", lambda: b.with_rhythm(b.atrial_fibrillation(), atrial_waves=[
        AtrialWaveLead(lead=lead, frequency_hz=f, organisation=0.3, repeat_correlation=0.1, amplitude_mv=0.03)
        for lead, f in (("II", 6.1), ("III", 5.2), ("aVF", 7.0), ("V1", 6.6))]),
     ecg_r1(labels=["atrial fibrillation"]), []),
    ("af where a P wave is locked to the QRS in II and aVF", lambda: b.with_rhythm(b.atrial_fibrillation(), p_lock=LOCKED),
     ecg_r1(labels=["atrial fibrillation"]), [("label", "p_lock")]),
    ("af where the locked wave is inverted in II", lambda: b.with_rhythm(
        b.atrial_fibrillation(), p_lock=LOCKED.model_copy(update={"peak_mv_by_lead": {"II": -0.04, "aVF": -0.03}})),
     ecg_r1(labels=["atrial fibrillation"]), []),
    ("sinus rhythm with P waves found singly before few beats but locked over all", lambda: b.with_rhythm(
        b.with_global(b.atrial_fibrillation(), hr_bpm=72.0), p_lock=LOCKED), ecg_r1(labels=["sinus rhythm"]), []),
    ("first degree av block with PR 160", N, ecg_r1(labels=["first degree av block"]), [("label", "pr_ms")]),
    ("1st degree AV block with PR 195 (margin)", lambda: b.with_global(N(), pr_ms=195.0),
     ecg_r1(labels=["1st degree AV block"]), []),
    ("I-AVB with PR 189", lambda: b.with_global(N(), pr_ms=189.0), ecg_r1(labels=["I-AVB"]), [("label", "pr_ms")]),
    ("wpw with PR 160", N, ecg_r1(labels=["WPW"]), [("label", "pr_ms")]),
    ("lbbb with QRS 90", N, ecg_r1(labels=["left bundle branch block"]), [("label", "qrs_ms")]),
    ("LBBB with a right pattern", b.right_bundle_branch_block, ecg_r1(labels=["LBBB"]),
     [("label", "qrs_morphology")]),
    ("RBBB with a right pattern", b.right_bundle_branch_block, ecg_r1(labels=["RBBB"]), []),
    ("incomplete rbbb with QRS 89", lambda: b.with_global(N(), qrs_ms=89.0),
     ecg_r1(labels=["incomplete right bundle branch block"]), [("label", "qrs_ms")]),
    ("incomplete rbbb with QRS 105", lambda: b.with_global(N(), qrs_ms=105.0), ecg_r1(labels=["IRBBB"]), []),
    ("ventricular tachycardia, narrow and slow", N, ecg_r1(labels=["ventricular tachycardia"]),
     [("label", "hr_bpm"), ("label", "qrs_ms")]),
    ("left axis deviation at +45", N, ecg_r1(labels=["left axis deviation"]), [("label", "qrs_axis_deg")]),
    ("LAFB at -45", lambda: b.with_global(N(), qrs_axis_deg=-45.0), ecg_r1(labels=["LAFB"]), []),
    ("right axis deviation at +45", N, ecg_r1(labels=["right axis deviation"]), [("label", "qrs_axis_deg")]),
    ("normal axis at -60", lambda: b.with_global(N(), qrs_axis_deg=-60.0), ecg_r1("Normal axis."),
     [("label", "qrs_axis_deg")]),
    ("lvh without voltage", N, ecg_r1(labels=["LVH"]), [("label", "sokolow_lyon_mv")]),
    ("lvh with voltage", b.lvh_with_strain, ecg_r1(labels=["left ventricular hypertrophy"]), []),
    ("low voltage with normal voltage", N, ecg_r1(labels=["low QRS voltage"]), [("label", "limb_qrs_max_mv")]),
    ("prolonged QT with QTc 415", N, ecg_r1(labels=["prolonged QT"]), [("label", "qtc_ms")]),
    ("long QT with Framingham QTc 445 (margin)", lambda: b.with_qt(N(), 445.0), ecg_r1(labels=["long QT"]), []),
    ("long QT at 120 bpm, Bazett 481, Framingham 417", lambda: b.with_qt(N(), 340.0, hr_bpm=120.0),
     ecg_r1(labels=["long QT"]), [("label", "qtc_ms")]),
    ("st elevation without any", N, ecg_r1(labels=["inferior STEMI"]), [("label", "st_deviation_mv")]),
    ("anterior STE where it is", b.first_degree_block_and_inferior_stemi, ecg_r1(labels=["inferior STEMI"]), []),
    ("anterior STE in the wrong territory", b.first_degree_block_and_inferior_stemi,
     ecg_r1(labels=["anterior st elevation"]), [("label", "st_deviation_mv")]),
    ("st depression without any", N, ecg_r1(labels=["STD"]), [("label", "st_deviation_mv")]),
    ("normal ecg with atrial fibrillation", b.atrial_fibrillation, ecg_r1(labels=["normal ECG"]),
     [("label", "findings")]),
    ("normal ecg that is normal", N, ecg_r1(labels=["sinus rhythm", "normal ecg"]), []),
    # negations and reasoning are not claims
    ("negated in the narrative", N,
     ecg_r1("Sinus rhythm, no ST elevation, without LBBB; criteria for LVH not met. Atrial fibrillation excluded.",
            ["sinus rhythm"]), []),
    ("differential in the reasoning", N, ecg_r1(steps={2: "Consider LBBB; first degree AV block?"},
                                                 labels=["sinus rhythm"]), []),
    ("label claim in the narrative", N, ecg_r1("Sinus rhythm with first-degree AV block.", ["sinus rhythm"]),
     [("label", "pr_ms")]),
    ("one flag per claim family", N, ecg_r1("Left bundle branch block.", ["LBBB"]), [("label", "qrs_ms")]),
    # a malformed output (no tags) is still checked
    ("malformed", N, "Heart rate 120 bpm, left bundle branch block.", [("value", "hr_bpm"), ("label", "qrs_ms")]),
]


@pytest.mark.parametrize(("build", "text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verify(build: Callable[[], GroundingFeatures], text: str, expected: list[tuple[str, str]]) -> None:
    assert _kinds(verify(text, build())) == expected


def test_flag_carries_claim_measurement_and_tolerance() -> None:
    [value] = verify(ecg_r1(steps={2: "The PR interval is 0.24 s."}), N())
    assert (value.claimed, value.measured, value.tolerance) == ("PR interval is 0.24 s", 160.0, 20.0)
    assert value.message == "says 'PR interval is 0.24 s' but the measured PR is 160 ms (tolerance 20 ms)"
    [label] = verify(ecg_r1(labels=["sinus bradycardia"]), b.with_global(N(), hr_bpm=85.0))
    assert (label.claimed, label.measured, label.tolerance) == ("sinus bradycardia", 85.0, 2.5)
    assert "85 bpm" in label.message and "60 bpm" in label.message


def test_realistic_model_output() -> None:
    text = ecg_r1(
        "The ECG shows sinus bradycardia at 52 bpm with a prolonged PR interval of 0.24 s and left axis deviation.",
        ["sinus bradycardia", "first degree av block", "left axis deviation"],
        steps={1: "Heart rate of 52 bpm, regular; P waves upright in II.",
               2: "PR interval is 0.24 s. QRS 96 ms. QRS axis -50 degrees.", 5: "QTc 430 ms."})
    measured = b.with_global(N(), hr_bpm=53.0, pr_ms=236.0, qrs_ms=94.0, qrs_axis_deg=-48.0, qtc_ms=422.0)
    assert verify(text, measured) == []
    # The same text against a normal ECG: every number and label disagrees.
    kinds = _kinds(verify(text, N()))
    assert kinds.count(("value", "hr_bpm")) == 2 and ("value", "pr_ms") in kinds
    assert ("value", "qrs_axis_deg") in kinds and ("value", "qrs_ms") not in kinds
    assert {("label", "hr_bpm"), ("label", "pr_ms"), ("label", "qrs_axis_deg")} <= set(kinds)


def test_nothing_measured_nothing_flagged() -> None:
    assert verify(ecg_r1("Heart rate 150 bpm.", ["LBBB"]), None) == []
    assert verify(ecg_r1("Heart rate 150 bpm.", ["LBBB"]), GroundingFeatures()) == []
