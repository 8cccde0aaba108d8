"""Boundary matching, annotated boundaries, agreement figures, the open delineator and the command."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from ingest.ecg import Measurements
from ingest.validation.metrics import (
    Agreement,
    Counts,
    annotated_intervals,
    annotated_qt_prolonged,
    interval_difference,
    record_boundary_errors,
    summarise_labels,
)
from ingest.validation.references import DEFAULT_DATA_DIR, AnnotatedBeat, Reference, load_references, ludb_boundaries
from ingest.validation.run import BeatBoundaries, RecordResult, measured_critical, run_neurokit2
from tests.protocol import builders as b
from worker.cli import main


def _annotated(start: float, with_p: bool = True) -> AnnotatedBeat:
    return AnnotatedBeat(p_on=start - 160 if with_p else None, p_off=start - 60 if with_p else None,
                         qrs_on=start, qrs_off=start + 100, t_end=start + 400)


def test_matched_beats_give_the_median_error_and_p_waves_are_counted_apart():
    annotated = [_annotated(1000.0), _annotated(2000.0, with_p=False), _annotated(3000.0)]
    found = [BeatBoundaries(p_on=840.0 + 10, p_off=940.0, qrs_on=1010.0, qrs_off=1100.0, t_end=1420.0),
             BeatBoundaries(p_on=1850.0, p_off=1950.0, qrs_on=2010.0, qrs_off=2100.0, t_end=2420.0),
             BeatBoundaries(qrs_on=3010.0, qrs_off=3100.0, t_end=3420.0),
             BeatBoundaries(qrs_on=9000.0, qrs_off=9100.0)]  # no annotated beat near it
    errors = record_boundary_errors(found, annotated)
    assert errors.matched_beats == 3 and errors.annotated_beats == 3
    assert errors.errors["qrs_on"] == 10.0 and errors.errors["qrs_off"] == 0.0 and errors.errors["t_end"] == 20.0
    assert errors.errors["p_on"] == 10.0
    assert errors.p_missed == 1 and errors.p_false == 1


def test_annotated_intervals_are_medians_over_beats():
    intervals = annotated_intervals([_annotated(1000.0), _annotated(2000.0), _annotated(3000.0)])
    assert (intervals.pr_ms, intervals.qrs_ms, intervals.qt_ms, intervals.hr_bpm) == (160.0, 100.0, 400.0, 60.0)
    assert intervals.qtc_ms == 400.0


def test_the_drawn_qt_is_judged_by_the_readers_own_rule_and_sex():
    # QT 420 ms at RR 1000 ms: Framingham QTc 420, normal for anyone.
    assert annotated_qt_prolonged(Measurements(qt_ms=420.0, rr_ms=1000.0, qrs_ms=90.0), "M") is False
    # QT 455 ms at RR 1000 ms: QTc 455, prolonged for a man (>= 450), not for a woman (>= 460).
    assert annotated_qt_prolonged(Measurements(qt_ms=455.0, rr_ms=1000.0, qrs_ms=90.0), "M") is True
    assert annotated_qt_prolonged(Measurements(qt_ms=455.0, rr_ms=1000.0, qrs_ms=90.0), "F") is False
    # QT 360 ms at 120 bpm: Bazett 509 would say marked, Framingham 438 says normal.
    assert annotated_qt_prolonged(Measurements(qt_ms=360.0, rr_ms=500.0, qrs_ms=90.0), "M") is False
    assert annotated_qt_prolonged(Measurements(qt_ms=None, rr_ms=1000.0), "M") is None


def test_agreement_and_counts():
    a = Agreement.of([10.0, -10.0, 30.0, None], not_measured=1)
    assert (a.n, a.mean, a.mean_abs, a.not_measured) == (3, 10.0, 16.7, 1)
    c = Counts()
    for predicted, actual in ((True, True), (True, False), (False, True), (False, False), (False, False)):
        c.add(predicted, actual)
    assert (c.sensitivity, c.ppv, c.specificity) == (0.5, 0.5, 0.667)
    assert interval_difference("qrs_axis_deg", Measurements(qrs_axis_deg=170.0), Measurements(qrs_axis_deg=-170.0)) \
        == -20.0


def test_the_rhythm_is_scored_as_a_class_and_as_a_mechanism():
    """Sinus rhythm read as sinus bradycardia: wrong as a class, right as a mechanism; AF read as sinus: wrong in both."""
    cases = [("ludb:Rhythm: Sinus rhythm.", ["sinus bradycardia"]), ("ludb:Rhythm: Sinus rhythm.", ["sinus rhythm"]),
             ("ludb:Rhythm: Atrial fibrillation.", ["sinus tachycardia"]), ("ludb:Rhythm: Sinus rhythm.", [])]
    pairs = [(Reference(source="ludb", record=str(n), split="dev", path=f"ludb/{n}.hea", codes=[code]),
              RecordResult(key=f"ludb/{n}", delineator="ecg-worklist", labels=labels))
             for n, (code, labels) in enumerate(cases)]
    summary = summarise_labels(pairs)
    assert (summary.rhythm_records, summary.rhythm_correct, summary.rhythm_mechanism_correct) == (4, 1, 2)
    assert (summary.rhythm_accuracy, summary.rhythm_mechanism_accuracy) == (0.25, 0.5)


def test_the_measured_triage_is_scored_apart_from_the_readers_labels():
    """A measured marked QT prolongation on a record whose reference names a prolonged QT is a true call, on a
    record whose reference does not a false alarm; the reader's own labels are scored in their own table."""
    cases = [("snomed:111975006", ["marked qt prolongation"], []),  # prolonged QT in the reference
             ("snomed:426783006", ["marked qt prolongation"], ["marked qt prolongation"]),  # sinus rhythm only
             ("snomed:426783006", [], [])]
    pairs = [(Reference(source="georgia", record=str(n), split="dev", path=f"georgia/{n}.hea", codes=[code]),
              RecordResult(key=f"georgia/{n}", delineator="ecg-worklist", labels=labels, measured_critical=measured))
             for n, (code, measured, labels) in enumerate(cases)]
    summary = summarise_labels(pairs)
    triage = summary.triage_false_alarms["marked qt prolongation"]
    assert (triage["true_calls"], triage["false_alarms"], triage["records_without"]) == (1, 1, 2)
    assert summary.any_triage_false_alarm_rate == 0.333
    reader = summary.critical_false_alarms["marked qt prolongation"]
    assert (reader["true_calls"], reader["false_alarms"]) == (0, 1)


def test_measured_critical_keeps_the_findings_a_reference_can_state():
    """The extreme rates are the measured rate itself (no reference names them); territorial ST elevation folds."""
    no_p = b.with_rhythm(b.normal_features(), p_wave_fraction=0.1, p_positive_in=[], p_negative_in=[])
    fast_wide = b.with_global(no_p, hr_bpm=190.0, rr_ms=316.0, qrs_ms=150.0)
    assert measured_critical(fast_wide, None) == ["wide complex tachycardia"]


def test_ludb_annotations_become_ordered_global_boundaries():
    beats = ludb_boundaries(DEFAULT_DATA_DIR / "ludb" / "2.hea")
    assert len(beats) >= 5
    for beat in beats:
        assert beat.qrs_on < beat.qrs_off
        if beat.p_on is not None:
            assert beat.p_on < beat.p_off <= beat.qrs_on
        if beat.t_end is not None:
            assert beat.t_end > beat.qrs_off + 100
    onsets = [beat.qrs_on for beat in beats]
    assert onsets == sorted(onsets)


def test_neurokit2_delineates_a_real_record():
    reference = next(r for r in load_references(sources=["ptbxl"]) if r.record == "HR00001")
    result = run_neurokit2(reference, DEFAULT_DATA_DIR)
    assert result.error is None
    assert len(result.beats) >= 5
    assert 40.0 < result.measured.hr_bpm < 150.0


def test_validate_prints_json_and_writes_the_per_record_csv(tmp_path):
    rows = tmp_path / "rows.csv"
    result = CliRunner().invoke(main, ["validate", "--source", "mortara", "--source", "chapman_shaoxing",
                                       "--delineator", "ours", "--json", "--csv", str(rows)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    overall = document["figures"]["ecg-worklist"]["overall"]
    assert overall["records"] == 11
    assert overall["intervals_vs_device"]["qrs_ms"]["n"] == 11
    assert rows.read_text().count("\n") == 12


def test_validate_refuses_a_partial_baseline():
    result = CliRunner().invoke(main, ["validate", "--source", "mortara", "--delineator", "ours", "--write-baseline"])
    assert result.exit_code != 0


def test_validate_at_another_recording_rate_resamples_every_record_first(tmp_path):
    """--rate 250: each record is presented as a 250 Hz recording (the Mortara file was made at 1000 Hz,
    Chapman-Shaoxing's at 500), and the output says so; the device comparison still runs on all 11."""
    result = CliRunner().invoke(main, ["validate", "--source", "mortara", "--source", "chapman_shaoxing",
                                       "--delineator", "ours", "--rate", "250", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["rate_hz"] == 250.0
    assert document["figures"]["ecg-worklist"]["overall"]["intervals_vs_device"]["qrs_ms"]["n"] == 11
    text = CliRunner().invoke(main, ["validate", "--source", "mortara", "--delineator", "ours", "--rate", "250"])
    assert "every record resampled to 250 Hz first" in text.stdout


def test_model_window_at_another_rate_is_the_record_resampled():
    from ingest.validation.run import model_window

    reference = next(r for r in load_references(sources=["ptbxl"]) if r.record == "HR00001")
    native, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
    at_250, fs_250, ecg_250 = model_window(reference, DEFAULT_DATA_DIR, rate_hz=250.0)
    assert (fs, fs_250) == (500.0, 500.0) and (ecg.sampling_rate_hz, ecg_250.sampling_rate_hz) == (500.0, 250.0)
    assert at_250.shape == native.shape
    # The same record, without what lies above 125 Hz: close, not equal.
    assert not np.array_equal(at_250, native)
    assert np.corrcoef(at_250.ravel(), native.ravel())[0, 1] > 0.97


def test_validate_refuses_the_baseline_at_another_rate():
    for flag in ("--check-baseline", "--write-baseline"):
        result = CliRunner().invoke(main, ["validate", "--delineator", "ours", "--rate", "250", flag])
        assert result.exit_code != 0
        assert "leave out --rate" in result.output
