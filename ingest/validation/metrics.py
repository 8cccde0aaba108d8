"""The figures: wave boundaries vs annotations, intervals vs devices and annotations, labels vs references.

Boundaries (LUDB): a delineator's beat is matched to the annotated beat whose QRS centre is
within MATCH_MS of its own; per record, the error of a boundary is the median over the
matched beats of (found - annotated), so each record counts once, as in the CSE study,
whose tolerances (the SD of that error over records) are printed beside ours. P waves found
where none is drawn (atrial fibrillation) and drawn ones not found are counted apart.

Intervals: the global PR, QRS, QT, QTc, heart rate and axes against the recording device's
own values, and against the intervals the LUDB cardiologists' boundaries give (the median
over the annotated beats). Axis differences are wrapped to -180..180 degrees.

Labels (the protocol reader): per vocabulary label, sensitivity and PPV against the labels
the references state (`labels.reference_labels`); the rhythm class on records that state a
rhythm; atrial fibrillation; "normal ecg"; and the false-alarm rate of each critical finding.
On a record whose leads were each scaled to 1 mV (LUDB), the labels that rest on amplitudes
(`labels.AMPLITUDE_LABELS`) are left out of every count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from pydantic import BaseModel, Field

from ingest.ecg import Measurements, Sex
from ingest.protocol import vocabulary as v
from ingest.protocol.repolarisation import deciding_qtc_ms, qtc_limit_ms
from ingest.validation import labels as lb
from ingest.validation.references import BOUNDARIES, AnnotatedBeat, Reference
from ingest.validation.run import BeatBoundaries, RecordResult

# A found beat and an annotated one are the same beat when their QRS centres are this close.
MATCH_MS = 150.0
# CSE tolerances: the largest acceptable SD (ms) of the boundary error over records.
CSE_SD_MS: dict[str, float] = {"p_on": 10.2, "p_off": 12.7, "qrs_on": 6.5, "qrs_off": 11.6, "t_end": 30.6}
# IEC 60601-2-25: the largest acceptable mean difference (ms) from the reference.
IEC_MEAN_MS: dict[str, float] = {"pr_ms": 10.0, "qrs_ms": 6.0, "qt_ms": 12.0}
INTERVALS: tuple[str, ...] = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "p_axis_deg", "qrs_axis_deg",
                              "t_axis_deg")


class Agreement(BaseModel):
    """Differences (found - reference) over records."""

    n: int = 0
    mean: float | None = None
    sd: float | None = None
    mean_abs: float | None = None
    not_measured: int = 0  # records with a reference value where the delineator gave none

    @classmethod
    def of(cls, differences: Iterable[float], not_measured: int = 0) -> Agreement:
        values = np.asarray([d for d in differences if d is not None and math.isfinite(d)], dtype=float)
        if values.size == 0:
            return cls(not_measured=not_measured)
        return cls(n=int(values.size), mean=round(float(values.mean()), 1),
                   sd=round(float(values.std(ddof=1)), 1) if values.size > 1 else None,
                   mean_abs=round(float(np.abs(values).mean()), 1), not_measured=not_measured)


class RecordBoundaryErrors(BaseModel):
    """One record's boundary errors (ms, found - annotated) and beat and P-wave counts."""

    errors: dict[str, float | None] = Field(default_factory=dict)
    annotated_beats: int = 0
    matched_beats: int = 0
    p_missed: int = 0  # beats with a drawn P the delineator did not find
    p_false: int = 0  # beats with no drawn P where the delineator found one


def record_boundary_errors(found: list[BeatBoundaries], annotated: list[AnnotatedBeat]) -> RecordBoundaryErrors:
    """Match beats and take the median error of each boundary over the matched beats."""
    centres = np.asarray([_centre(beat) for beat in found], dtype=float)
    per_boundary: dict[str, list[float]] = {name: [] for name in BOUNDARIES}
    matched = p_missed = p_false = 0
    for reference in annotated:
        if centres.size == 0 or np.all(np.isnan(centres)):
            break
        centre = (reference.qrs_on + reference.qrs_off) / 2.0
        nearest = int(np.nanargmin(np.abs(centres - centre)))
        if abs(centres[nearest] - centre) > MATCH_MS:
            continue
        matched += 1
        beat = found[nearest]
        if reference.p_on is not None and beat.p_on is None:
            p_missed += 1
        if reference.p_on is None and beat.p_on is not None:
            p_false += 1
        for name in BOUNDARIES:
            ours, theirs = beat.get(name), reference.get(name)
            if ours is not None and theirs is not None:
                per_boundary[name].append(ours - theirs)
    errors = {name: round(float(np.median(values)), 1) if values else None for name, values in per_boundary.items()}
    return RecordBoundaryErrors(errors=errors, annotated_beats=len(annotated), matched_beats=matched,
                                p_missed=p_missed, p_false=p_false)


def _centre(beat: BeatBoundaries) -> float:
    known = [value for value in (beat.qrs_on, beat.qrs_off) if value is not None]
    return float(np.mean(known)) if known else math.nan


class BoundarySummary(BaseModel):
    """Boundary errors over the annotated records."""

    records: int = 0
    by_boundary: dict[str, Agreement] = Field(default_factory=dict)
    annotated_beats: int = 0
    matched_beats: int = 0
    p_missed: int = 0
    p_false: int = 0


def summarise_boundaries(per_record: list[RecordBoundaryErrors]) -> BoundarySummary:
    return BoundarySummary(
        records=len(per_record),
        by_boundary={name: Agreement.of(r.errors.get(name) for r in per_record) for name in BOUNDARIES},
        annotated_beats=sum(r.annotated_beats for r in per_record),
        matched_beats=sum(r.matched_beats for r in per_record),
        p_missed=sum(r.p_missed for r in per_record), p_false=sum(r.p_false for r in per_record),
    )


def annotated_intervals(annotated: list[AnnotatedBeat]) -> Measurements:
    """The intervals the annotated boundaries give: medians over beats; QTc by Bazett with the mean RR."""
    def median(values: list[float]) -> float | None:
        return round(float(np.median(values)), 1) if values else None

    onsets = [beat.qrs_on for beat in annotated]
    rr = float(np.mean(np.diff(onsets))) if len(onsets) >= 2 else None
    qt = median([b.t_end - b.qrs_on for b in annotated if b.t_end is not None])
    return Measurements(
        hr_bpm=None if rr is None else round(60000.0 / rr, 1), rr_ms=None if rr is None else round(rr, 1),
        pr_ms=median([b.qrs_on - b.p_on for b in annotated if b.p_on is not None]),
        qrs_ms=median([b.qrs_off - b.qrs_on for b in annotated]), qt_ms=qt,
        qtc_ms=None if qt is None or rr is None else round(qt / math.sqrt(rr / 1000.0), 1),
    )


def interval_difference(name: str, found: Measurements, reference: Measurements) -> float | None:
    """found - reference for one global measurement (axes wrapped); None when either is missing."""
    ours, theirs = getattr(found, name), getattr(reference, name)
    if ours is None or theirs is None:
        return None
    difference = ours - theirs
    if name.endswith("_axis_deg"):
        difference = (difference + 180.0) % 360.0 - 180.0
    return round(difference, 1)


def summarise_intervals(pairs: list[tuple[Measurements, Measurements]]) -> dict[str, Agreement]:
    """Agreement per measurement over (found, reference) pairs, counting what was not measured."""
    summary = {}
    for name in INTERVALS:
        with_reference = [(found, reference) for found, reference in pairs if getattr(reference, name) is not None]
        if not with_reference:
            continue
        differences = [interval_difference(name, found, reference) for found, reference in with_reference]
        summary[name] = Agreement.of(differences, not_measured=sum(d is None for d in differences))
    return summary


class Counts(BaseModel):
    """A 2x2 table and its rates."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def sensitivity(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def ppv(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def specificity(self) -> float | None:
        return _ratio(self.tn, self.tn + self.fp)

    def add(self, predicted: bool, actual: bool) -> None:
        if predicted and actual:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif actual:
            self.fn += 1
        else:
            self.tn += 1

    def rates(self) -> dict[str, float | int | None]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "sensitivity": self.sensitivity,
                "ppv": self.ppv, "specificity": self.specificity}


def annotated_qt_prolonged(annotated: Measurements, sex: str | None) -> bool | None:
    """Whether the QT the cardiologists drew is prolonged by the reader's own rule (Framingham QTc of
    the QRS-adjusted QT against the sex's limit, `ingest.protocol.repolarisation`); None where they
    drew no T end or fewer than two beats.

    Why: the reference statements of most sources rarely name a long QT even where the drawn
    boundaries show one, so "prolonged qt" scored against the statements counts label omissions
    as false calls. Scored against the drawn QT, an error is a measurement error of ours."""
    if annotated.qt_ms is None or annotated.rr_ms is None:
        return None
    qtc = deciding_qtc_ms(annotated.qt_ms, annotated.rr_ms, annotated.qrs_ms)
    return qtc >= qtc_limit_ms(Sex.FEMALE if sex == "F" else Sex.MALE if sex == "M" else None)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


class LabelSummary(BaseModel):
    """The protocol reader's labels against the references."""

    records: int = 0
    per_label: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)
    rhythm_records: int = 0
    rhythm_correct: int = 0
    rhythm_accuracy: float | None = None
    # The same with sinus bradycardia and tachycardia taken as sinus (`labels.rhythm_mechanism`).
    rhythm_mechanism_correct: int = 0
    rhythm_mechanism_accuracy: float | None = None
    rhythm_confusion: dict[str, dict[str, int]] = Field(default_factory=dict)  # reference -> predicted -> n
    atrial_fibrillation: dict[str, float | int | None] = Field(default_factory=dict)
    normal_ecg: dict[str, float | int | None] = Field(default_factory=dict)
    critical_false_alarms: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)
    any_critical_false_alarm_rate: float | None = None
    # The same for the critical findings the measured values alone raise in the worklist's triage
    # (`RecordResult.measured_critical`): the review queue's red marks before any reader.
    triage_false_alarms: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)
    any_triage_false_alarm_rate: float | None = None


# Labels the figures are kept for: the reader's findings (the "could not read" labels are not findings).
SCORED_LABELS: tuple[str, ...] = tuple(dict.fromkeys(
    lb.general_label(label) for label in v.LABELS
    if label not in (v.IMAGE_ONLY, v.READ_FAILED, v.NOT_MEASURABLE)))


def predicted_labels(result: RecordResult) -> set[str]:
    return {lb.general_label(label) for label in result.labels}


def summarise_labels(pairs: list[tuple[Reference, RecordResult]]) -> LabelSummary:
    per_label = {label: Counts() for label in SCORED_LABELS}
    rhythm_right, rhythm_total, mechanism_right = 0, 0, 0
    confusion: dict[str, dict[str, int]] = {}
    af, normal = Counts(), Counts()
    critical = {finding: Counts() for finding in lb.CRITICAL_FINDINGS}
    triage = {finding: Counts() for finding in lb.CRITICAL_FINDINGS}
    any_false, any_triage_false = 0, 0
    for reference, result in pairs:
        stated = reference.labels
        truth = set(stated.labels)
        predicted = predicted_labels(result)
        unscored = lb.AMPLITUDE_LABELS if reference.amplitudes == "normalised" else frozenset()
        for label, counts in per_label.items():
            if label not in unscored:
                counts.add(label in predicted, label in truth)
        if stated.rhythm is not None:
            guess = lb.reader_rhythm(result.labels)
            rhythm_total += 1
            rhythm_right += lb.rhythm_correct(stated.rhythm, guess)
            mechanism_right += lb.rhythm_mechanism_correct(stated.rhythm, guess)
            row = confusion.setdefault(stated.rhythm, {})
            row[guess] = row.get(guess, 0) + 1
            af.add(v.ATRIAL_FIBRILLATION in predicted, stated.rhythm == lb.AF)
        if v.NORMAL_ECG not in unscored:
            normal.add(v.NORMAL_ECG in predicted, stated.normal)
        any_false += _count_critical(critical, predicted, truth, unscored)
        any_triage_false += _count_critical(triage, set(result.measured_critical), truth, unscored)
    return LabelSummary(
        records=len(pairs),
        per_label={label: counts.rates() for label, counts in per_label.items()
                   if counts.tp + counts.fp + counts.fn > 0},
        rhythm_records=rhythm_total, rhythm_correct=rhythm_right, rhythm_accuracy=_ratio(rhythm_right, rhythm_total),
        rhythm_mechanism_correct=mechanism_right, rhythm_mechanism_accuracy=_ratio(mechanism_right, rhythm_total),
        rhythm_confusion=confusion, atrial_fibrillation=af.rates(), normal_ecg=normal.rates(),
        critical_false_alarms=_false_alarms(critical), any_critical_false_alarm_rate=_ratio(any_false, len(pairs)),
        triage_false_alarms=_false_alarms(triage), any_triage_false_alarm_rate=_ratio(any_triage_false, len(pairs)),
    )


def _count_critical(counts: dict[str, Counts], called: set[str], truth: set[str], unscored: frozenset[str]) -> bool:
    """Count each critical finding called or not against the reference's support; whether any was false."""
    false_here = False
    for finding, tally in counts.items():
        if finding in unscored:
            continue
        supported = bool(lb.CRITICAL_SUPPORT.get(finding, frozenset({finding})) & truth)
        tally.add(finding in called, supported)
        false_here = false_here or (finding in called and not supported)
    return false_here


def _false_alarms(counts: dict[str, Counts]) -> dict[str, dict[str, float | int | None]]:
    return {finding: {"false_alarms": c.fp, "records_without": c.fp + c.tn, "rate": _ratio(c.fp, c.fp + c.tn),
                      "true_calls": c.tp, "missed": c.fn} for finding, c in counts.items()}
