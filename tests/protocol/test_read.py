"""The whole reading: format, evidence, "normal ecg", unmeasured values, critical findings, step 6."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingest.ecg import Demographics
from ingest.measure.measured import GroundingFeatures
from ingest.protocol import CRITICAL_LABELS, LABELS, critical_labels, is_critical, protocol_read
from ingest.protocol import vocabulary as v
from ingest.report_format import STEP_HEADINGS, parse_output
from tests.protocol import builders as b

PICTURES: dict[str, Callable[[], GroundingFeatures]] = {
    "normal": b.normal_features,
    "first degree block, inferior STE": b.first_degree_block_and_inferior_stemi,
    "rbbb": b.right_bundle_branch_block,
    "lbbb": b.left_bundle_branch_block,
    "af": b.atrial_fibrillation,
    "lvh with strain": b.lvh_with_strain,
    "bradycardia, long qt": b.sinus_bradycardia_long_qt,
    "nothing measured": GroundingFeatures,
    "no pr, no qtc": lambda: b.with_global(b.normal_features(), pr_ms=None, qt_ms=None, qtc_ms=None),
}


@pytest.mark.parametrize("build", PICTURES.values(), ids=PICTURES.keys())
def test_output_is_well_formed_with_vocabulary_labels(build: Callable[[], GroundingFeatures]) -> None:
    read = protocol_read(build())
    parsed = parse_output(read.text)
    assert parsed.well_formed, parsed.problems
    assert sorted(parsed.steps) == [1, 2, 3, 4, 5, 6]
    assert all(f"**{heading}**" in read.text for heading in STEP_HEADINGS)
    assert parsed.labels == read.labels and read.labels
    assert set(read.labels) <= set(LABELS)
    assert parsed.narrative == read.narrative
    assert all(parsed.steps[n] == read.steps[n] for n in range(1, 7))


@pytest.mark.parametrize("build", PICTURES.values(), ids=PICTURES.keys())
def test_evidence_is_found_in_its_step_as_the_reward_looks_for_it(build: Callable[[], GroundingFeatures]) -> None:
    read = protocol_read(build())
    assert sorted(read.evidence) == [1, 2, 3, 4, 5, 6]
    for step, phrases in read.evidence.items():
        assert 1 <= len(phrases) <= 3
        assert len(set(phrases)) == len(phrases)
        for phrase in phrases:
            assert phrase == phrase.lower()
            assert phrase in read.steps[step].lower(), (step, phrase)


def test_evidence_keeps_abnormal_first_and_negations() -> None:
    read = protocol_read(b.first_degree_block_and_inferior_stemi())
    assert read.evidence[2][0] == "pr interval 212 ms"
    assert read.evidence[4][:2] == ["st elevation (inferior)", "st depression (lateral)"]
    assert "no pathological q waves" in read.evidence[4]
    assert read.evidence[6][0] == "st elevation (inferior)"  # critical first
    normal = protocol_read(b.normal_features())
    assert normal.evidence[4] == ["no st elevation", "no st depression", "no pathological q waves"]
    assert normal.evidence[1][:2] == ["heart rate 72 bpm", "sinus rhythm"]
    assert normal.evidence[6] == ["normal ecg"]


def test_normal_ecg() -> None:
    read = protocol_read(b.normal_features())
    assert read.labels == [v.SINUS_RHYTHM, v.NORMAL_ECG]
    assert not read.critical
    assert "Sinus rhythm at 72 bpm. PR 160 ms, QRS 90 ms, QTc 415 ms, QRS axis +45 degrees. Normal ECG." \
        in read.narrative
    assert "requires cardiologist confirmation" in read.narrative


@pytest.mark.parametrize(("field", "said"), [
    ("pr_ms", "PR interval not measurable"), ("qrs_ms", "QRS duration not measurable"),
    ("qtc_ms", "QTc not measurable"), ("hr_bpm", "Heart rate not measurable"),
])
def test_unmeasured_key_value_is_said_and_blocks_normal(field: str, said: str) -> None:
    read = protocol_read(b.with_global(b.normal_features(), **{field: None}))
    assert f"{said}: no conclusion drawn from it." in read.text
    assert v.NORMAL_ECG not in read.labels
    assert "normal ECG not called" in read.steps[6]
    assert "Not measurable, no conclusion drawn:" in read.steps[6]


def test_unmeasured_values_draw_no_conclusion() -> None:
    read = protocol_read(GroundingFeatures())
    assert read.labels == [v.NOT_MEASURABLE]
    assert not read.critical
    assert all(not f.abnormal for f in read.findings)
    assert "No lead measured." in read.steps[1]


def test_unmeasured_rhythm_gives_no_rhythm_label() -> None:
    features = b.with_rhythm(b.normal_features(), p_wave_fraction=None, p_positive_in=[], p_negative_in=[])
    read = protocol_read(features)
    assert "P waves (rhythm) not measurable" in read.steps[1]
    assert not {v.SINUS_RHYTHM, v.ATRIAL_FIBRILLATION, v.UNDETERMINED_RHYTHM, v.NORMAL_ECG} & set(read.labels)
    assert read.narrative.startswith("Rhythm not classified, heart rate 72 bpm.")


@pytest.mark.parametrize(("build", "critical"), [
    (b.first_degree_block_and_inferior_stemi, ["st elevation (inferior)"]),
    (b.sinus_bradycardia_long_qt, [v.MARKED_QT_PROLONGATION]),
    (lambda: b.with_global(b.with_rhythm(b.normal_features(), p_wave_fraction=0.0, p_positive_in=[]),
                           hr_bpm=160.0, qrs_ms=150.0), [v.WIDE_COMPLEX_TACHYCARDIA]),
    (b.normal_features, []), (b.left_bundle_branch_block, []), (b.atrial_fibrillation, []),
])
def test_critical_findings(build: Callable[[], GroundingFeatures], critical: list[str]) -> None:
    read = protocol_read(build())
    assert read.critical is bool(critical)
    assert [label for label in read.labels if label in CRITICAL_LABELS] == critical
    if critical:
        assert f"Critical: {critical[0]}" in read.steps[6]


@pytest.mark.parametrize(("labels", "critical"), [
    (["Inferior STEMI"], ["Inferior STEMI"]), (["ST elevation in V2-V4"], ["ST elevation in V2-V4"]),
    (["sinus rhythm", "third degree AV block"], ["third degree AV block"]),
    (["ventricular tachycardia"], ["ventricular tachycardia"]), (["VT"], ["VT"]),
    (["no ST elevation"], []), (["st depression (lateral)", "sinus tachycardia"], []),
    (["prolonged qt"], []), (["marked qt prolongation"], ["marked qt prolongation"]),
])
def test_critical_labels_of_any_interpreter(labels: list[str], critical: list[str]) -> None:
    assert critical_labels(labels) == critical
    assert is_critical(labels) is bool(critical)


def test_step6_weighs_mimics() -> None:
    lbbb_with_st = b.with_st(b.left_bundle_branch_block(), {"I": 0.3, "aVL": 0.35})
    assert "only ST deviation concordant with the QRS was counted" in protocol_read(lbbb_with_st).steps[6]
    assert "may be a strain pattern" in protocol_read(b.lvh_with_strain()).steps[6]
    assert "may be reciprocal" in protocol_read(b.first_degree_block_and_inferior_stemi()).steps[6]
    assert "may be" not in protocol_read(b.normal_features()).steps[6]


def test_paediatric_note_and_no_identifiers() -> None:
    demographics = Demographics(patient_name="DOE^JANE", patient_id="MRN123", age_years=9)
    read = protocol_read(b.normal_features(), demographics)
    assert "Adult thresholds applied at age 9 years" in read.steps[6]
    assert "DOE" not in read.text and "MRN123" not in read.text
    assert "Adult thresholds" not in protocol_read(b.normal_features(), Demographics(age_years=40)).text


def test_atrial_fibrillation_reading() -> None:
    read = protocol_read(b.atrial_fibrillation())
    assert read.labels[0] == v.ATRIAL_FIBRILLATION
    assert "PR interval not applicable: no P waves." in read.steps[2]
    assert "approximate at an irregular rhythm" in read.steps[5]
    assert read.narrative.startswith("Atrial fibrillation at 118 bpm.")


def test_reading_is_deterministic() -> None:
    assert protocol_read(b.lvh_with_strain()).text == protocol_read(b.lvh_with_strain()).text


def test_unmeasured_leads_are_named_and_missing_leads_do_not_break_the_rules() -> None:
    features = b.normal_features()
    features.leads_measured = [lead for lead in features.leads_measured if lead not in ("V2", "V3")]
    del features.leads["V3"]
    features.st_deviation_mv.pop("V3")
    read = protocol_read(features)
    assert read.steps[1].startswith("10 of 12 leads measured (not measured: V2, V3).")
    assert "R wave in V3 not measurable" in read.steps[3]
    assert parse_output(read.text).well_formed


def test_qrs_only_leads_are_named_apart_from_the_unmeasured_ones() -> None:
    features = b.normal_features()
    features.leads_measured = [lead for lead in features.leads_measured if lead not in ("V1", "V2", "V6")]
    features.leads_qrs_only = ["V1", "V2"]
    read = protocol_read(features)
    assert read.steps[1].startswith("9 of 12 leads measured (QRS only, too noisy for P, ST and T: V1, V2; "
                                    "not measured: V6).")
    features.leads_measured.append("V6")
    assert protocol_read(features).steps[1].startswith(
        "10 of 12 leads measured (QRS only, too noisy for P, ST and T: V1, V2).")
