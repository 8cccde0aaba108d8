"""A run of ventricular beats amid another rhythm: three or more consecutive beats of another QRS shape
at a tachycardia's rate are a non-sustained ventricular tachycardia, read by the protocol reader, raised
by the measured triage, and accepted by the claim checks although the dominant QRS is narrow.

Each case gives the RR before every beat and which beats have another QRS shape, on an otherwise normal
sinus ECG (`tests.protocol.builders.with_beats`).
"""

from __future__ import annotations

import pytest

from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.protocol.beat_pattern import (
    OTHER_SHAPE_RUN_CORRELATION_BELOW,
    OTHER_SHAPE_RUN_FROM_BEATS,
    OTHER_SHAPE_RUN_RR_BELOW_MS,
    other_shape_run,
)
from reports.triage import MEASURED, measured_findings
from reports.verify import check_labels
from tests.protocol import builders as b

PR = 160.0
VENTRICULAR = 0.3  # a ventricular beat's QRS correlation with a narrow dominant one (real runs: 0.28, 0.45)


def _sinus_with_run(length: int, run_rr: float, at: int = 5, beats: int = 14) -> tuple[list, list, list[int]]:
    """RR before each beat of a sinus rhythm at 75 /min with `length` beats of another shape from beat
    `at`, each `run_rr` after the one before, and a compensatory pause after the run."""
    rr: list[float | None] = [None] + [800.0] * (beats - 1)
    run = list(range(at, at + length))
    for index in run:
        rr[index] = run_rr
    rr[at + length] = 1100.0
    pr = [None if index in run else PR for index in range(beats)]
    return rr, pr, run


def _features(length: int, run_rr: float, correlation: float | None = VENTRICULAR):
    rr, pr, run = _sinus_with_run(length, run_rr)
    return b.with_beats(b.normal_features(), rr, pr, other_shape=run, other_correlation=correlation)


def test_a_run_of_four_ventricular_beats_at_150_per_minute_is_read_and_triaged():
    features = _features(4, 400.0)
    run = other_shape_run(features.rhythm)
    assert run is not None and (run.first, run.beats, run.rate_per_min) == (5, 4, 150)

    read = protocol_read(features)
    assert v.SINUS_RHYTHM in read.labels and v.NON_SUSTAINED_VT in read.labels
    assert v.ATRIAL_FIBRILLATION not in read.labels
    assert "A run of 4 consecutive beats with another QRS shape than the dominant one at 150 /min" in read.steps[1]
    assert v.is_critical(read.labels)

    found = [finding for finding in measured_findings(features) if finding.finding == v.NON_SUSTAINED_VT]
    assert len(found) == 1 and found[0].by == MEASURED
    assert "run of 4 beats of another QRS shape at 150 /min" in found[0].detail


@pytest.mark.parametrize(("case", "length", "run_rr", "correlation"), [
    ("a couplet", OTHER_SHAPE_RUN_FROM_BEATS - 1, 400.0, VENTRICULAR),
    ("a slow run (accelerated idioventricular)", 4, OTHER_SHAPE_RUN_RR_BELOW_MS + 100.0, VENTRICULAR),
    ("a run at exactly 100 /min", 4, OTHER_SHAPE_RUN_RR_BELOW_MS, VENTRICULAR),
    ("beats that keep most of the dominant shape (aberrant)", 4, 400.0, OTHER_SHAPE_RUN_CORRELATION_BELOW + 0.05),
    ("features without the correlations", 4, 400.0, None),
])
def test_no_run_is_called(case, length, run_rr, correlation):
    features = _features(length, run_rr, correlation)
    assert other_shape_run(features.rhythm) is None, case
    assert v.NON_SUSTAINED_VT not in protocol_read(features).labels, case
    assert all(finding.finding != v.NON_SUSTAINED_VT for finding in measured_findings(features)), case


def test_an_rr_across_noise_ends_the_run():
    rr, pr, run = _sinus_with_run(4, 400.0)
    rr[run[2]] = None  # the third beat's RR is not known (noise between the beats)
    features = b.with_beats(b.normal_features(), rr, pr, other_shape=run, other_correlation=VENTRICULAR)
    assert other_shape_run(features.rhythm) is None


def test_the_longest_run_is_reported():
    rr: list[float | None] = [None] + [800.0] * 19
    first, second = [3, 4, 5], [10, 11, 12, 13, 14]
    for index in first + second:
        rr[index] = 380.0
    features = b.with_beats(b.normal_features(), rr, [PR] * 20, other_shape=first + second,
                            other_correlation=VENTRICULAR)
    run = other_shape_run(features.rhythm)
    assert run is not None and (run.first, run.beats) == (10, 5)


def test_not_under_ventricular_pacing():
    """The beats a pacemaker did not start have another shape than the paced ones."""
    features = _features(4, 400.0)
    features.rhythm = features.rhythm.model_copy(update={"paced": True, "paced_beats": 9,
                                                         "pacing_assessed_beats": 13})
    assert v.NON_SUSTAINED_VT not in protocol_read(features).labels
    assert all(finding.finding != v.NON_SUSTAINED_VT for finding in measured_findings(features))


def test_not_inside_a_wide_complex_tachycardia():
    """Where the rhythm itself is a wide complex tachycardia, its wide QRS is the dominant shape, and the
    beats of another shape are the odd narrow (capture, fusion) ones: no run to report."""
    rr: list[float | None] = [None] + [340.0] * 24
    features = b.with_beats(b.normal_features(), rr, [None] * 25, other_shape=[8, 9, 10, 11],
                            other_correlation=VENTRICULAR)
    features.global_ = features.global_.model_copy(update={"qrs_ms": 160.0})
    read = protocol_read(features)
    assert v.WIDE_COMPLEX_TACHYCARDIA in read.labels and v.NON_SUSTAINED_VT not in read.labels


def test_the_claim_checks_read_a_run_as_a_run():
    """A narrow dominant QRS does not contradict a run of ventricular tachycardia (the VT check's QRS width
    would), nor a rate of 75 /min (the tachycardia check's rate would); a record whose every beat has the
    dominant shape does."""
    with_run = _features(4, 400.0)
    assert with_run.global_.qrs_ms < 110 and with_run.global_.hr_bpm < 100
    for claim in (v.NON_SUSTAINED_VT, "NSVT", "sinus rhythm with run of ventricular tachycardia"):
        assert check_labels([claim], with_run) == [], claim

    rr = [None] + [800.0] * 13
    no_other_beat = b.with_beats(b.normal_features(), rr, [PR] * 14)
    flags = check_labels([v.NON_SUSTAINED_VT], no_other_beat)
    assert len(flags) == 1 and flags[0].field == "ectopic_count"
    assert "dominant QRS shape" in flags[0].message
    # A sustained ventricular tachycardia claim is still checked against the QRS width.
    assert check_labels(["ventricular tachycardia"], with_run)
