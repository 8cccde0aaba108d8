"""Claim checks on verbatim outputs of the released ECG-R1 (tests/reports_verify/release_outputs/).

Every numeric claim a reader would take from these texts (written by hand in
expected_claims.json) must be extracted with its field, value and bound, and checked against
measured values: agreeing measurements raise no flag, and each claim, moved past its tolerance,
raises its own. Every answer label must belong to a label family that is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.report_format import parse_output
from reports.verify import FIELDS, check_labels, check_values, claimed_phrases, extract_values, label_families, verify
from tests.protocol import builders as b

HERE = Path(__file__).parent / "release_outputs"
OUTPUTS = {row["study"]: row["response"] for row in map(json.loads, (HERE / "outputs.jsonl").read_text().splitlines())}
EXPECTED = json.loads((HERE / "expected_claims.json").read_text())


def _key(field: str, value: float, bound: str | None) -> tuple[str, float, str | None]:
    return field, float(value), bound


def test_the_committed_outputs_are_the_release_format() -> None:
    assert len(OUTPUTS) == 4
    for text in OUTPUTS.values():
        parsed = parse_output(text)
        assert sorted(parsed.steps) == [1, 2, 3, 4, 5, 6] and parsed.labels and parsed.problems == []


@pytest.mark.parametrize("study", sorted(EXPECTED["claims"]))
def test_every_numeric_claim_is_extracted(study: str) -> None:
    expected = EXPECTED["claims"][study]
    found = extract_values(OUTPUTS[study])
    assert [_key(c.field, c.value, c.bound) for c in found] == [_key(e["field"], e["value"], e["bound"])
                                                                for e in expected]
    for claim, wanted in zip(found, expected, strict=True):
        assert wanted["words"].lower() in OUTPUTS[study].lower()
        assert claim.text.lower() in wanted["words"].lower() or wanted["words"].lower().endswith(claim.text.lower())


def test_all_numeric_claims_counted() -> None:
    """The goal: 100% of the numeric claims in the committed outputs extracted (and checked, below)."""
    expected = sum(len(claims) for claims in EXPECTED["claims"].values())
    extracted = sum(len(extract_values(text)) for text in OUTPUTS.values())
    print(f"release outputs: {extracted} of {expected} numeric claims extracted")
    assert expected == 20 and extracted == expected
    for words in EXPECTED["not_claims"]:  # numbers that are not about this ECG's values
        assert any(words in text for text in OUTPUTS.values())


def _agreeing(study: str):
    """Measured values that agree with every claim of the study (bounds: well inside)."""
    values = {}
    for claim in EXPECTED["claims"][study]:
        values[claim["field"]] = claim["value"] - 10 if claim["bound"] == "<" else claim["value"]
    return b.with_global(b.normal_features(), **values)


@pytest.mark.parametrize("study", sorted(EXPECTED["claims"]))
def test_every_claim_is_checked(study: str) -> None:
    claims = extract_values(OUTPUTS[study])
    features = _agreeing(study)
    assert check_values(claims, features) == []
    checked = 0
    for claim in claims:
        tolerance = FIELDS[claim.field].tolerance
        # Moved past the tolerance (beyond the bound for a bound): this claim, and the others
        # on the same field, must be flagged.
        moved = claim.value + tolerance + 5 if claim.bound != ">" else claim.value - tolerance - 5
        flags = check_values(claims, b.with_global(features, **{claim.field: moved}))
        assert claim.text in [flag.claimed for flag in flags], claim
        assert all(flag.field == claim.field for flag in flags)
        checked += 1
    assert checked == len(EXPECTED["claims"][study])


def test_every_answer_label_is_a_checked_family() -> None:
    for study, labels in EXPECTED["answer_labels"].items():
        assert parse_output(OUTPUTS[study]).labels == labels
        for label in labels:
            families = label_families(label)
            assert any(not family.startswith("unchecked") for family in families), label
    assert label_families("Atrial premature complexes") == ["atrial premature complexes"]
    assert label_families("LVH with secondary repolarization abnormality") == [
        "left ventricular hypertrophy", "unchecked: repolarization abnormality"]
    assert label_families("Abnormal ECG") == ["abnormal ecg"]
    assert label_families("Abnormal ECG") != label_families("Normal ECG") == ["normal ecg"]


def test_release_labels_against_measurements() -> None:
    normal = b.normal_features()  # 12 beats, none premature, every value normal
    apc = OUTPUTS["49975043"]
    flags = check_labels(claimed_phrases(parse_output(apc)), normal)
    assert {flag.message.split(" but ")[0] for flag in flags} >= {"says 'atrial premature complexes'"}
    with_premature = b.with_beats(normal, [None, 833, 833, 500, 1166, 833, 833, 833], [160] * 8)
    assert "ectopic_count" not in [flag.field for flag in check_labels(["atrial premature complexes"], with_premature)]

    abnormal = OUTPUTS["46936047"]  # sinus tachycardia, LBBB, Abnormal ECG
    lbbb = b.with_global(b.left_bundle_branch_block(), hr_bpm=128.0, pr_ms=160.0, qrs_ms=180.0)
    assert [f for f in verify(abnormal, lbbb) if f.claimed == "abnormal ecg"] == []
    assert [f.field for f in check_labels(["abnormal ecg"], normal)] == ["findings"]


def test_release_outputs_on_their_own_values_raise_no_value_flag() -> None:
    for study, text in OUTPUTS.items():
        assert [f for f in verify(text, _agreeing(study)) if f.kind == "value"] == []


def test_bounds_in_the_release_phrasing() -> None:
    """Two more sentences of the same source file (its atrial fibrillation record)."""
    [qrs] = extract_values("The QRS complexes are narrow with a duration of less than 0.10 seconds, ruling out "
                           "bundle branch blocks.")
    assert (qrs.field, qrs.value, qrs.bound) == ("qrs_ms", 100.0, "<")
    [qtc] = extract_values("The QT interval is within normal limits when corrected for rate, with a QTc value "
                           "below 440 ms, indicating no significant repolarization abnormality.")
    assert (qtc.field, qtc.value, qtc.bound) == ("qtc_ms", 440.0, "<")
    normal = b.normal_features()  # QRS 90, QTc 415
    assert check_values([qrs, qtc], normal) == []
    assert [f.field for f in check_values([qrs, qtc], b.with_global(normal, qrs_ms=125.0, qtc_ms=470.0))] == [
        "qrs_ms", "qtc_ms"]
    assert check_values([qrs], b.with_global(normal, qrs_ms=118.0)) == []  # within 20 ms of the bound


def test_claims_for_the_review_page() -> None:
    from reports.verify import claim_display, claim_distance

    claims = extract_values(OUTPUTS["47772418"])
    assert [claim_display(c) for c in claims] == ["83 bpm", "160 ms", "< 100 ms", "420 ms", "83 bpm"]
    bound = claims[2]
    assert claim_distance(bound, 60.0) == 0.0 and claim_distance(bound, 130.0) == 30.0
    assert claim_distance(claims[1], 150.0) == 10.0
