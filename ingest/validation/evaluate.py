"""One validation run: every record through every delineator, then the figures per source and overall.

    evaluate(references, data_dir, delineators) -> Evaluation
        figures[delineator][source | "overall"]  boundaries, intervals, labels (ours)
        records                                  one row per record and delineator (the CSV)

Each record is read and measured once per delineator; LUDB's annotations are read once.
`progress` is called after each record so a command line can show a bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from ingest.ecg import Measurements
from ingest.protocol import vocabulary as v
from ingest.validation import labels as lb
from ingest.validation.metrics import (
    INTERVALS,
    Agreement,
    BoundarySummary,
    LabelSummary,
    Counts,
    RecordBoundaryErrors,
    annotated_intervals,
    annotated_qt_prolonged,
    interval_difference,
    predicted_labels,
    record_boundary_errors,
    summarise_boundaries,
    summarise_intervals,
    summarise_labels,
)
from ingest.validation.references import BOUNDARIES, AnnotatedBeat, Reference, ludb_boundaries
from ingest.validation.run import NEUROKIT2, NEUROKIT2_LEADS, OURS, RecordResult, run_neurokit2, run_ours

OVERALL = "overall"


class Figures(BaseModel):
    """What one delineator achieved on one source (or overall)."""

    records: int = 0
    unreadable: int = 0  # records the delineator could not read or measure at all
    boundaries: BoundarySummary | None = None  # records with annotated boundaries only
    # Ours only: the same with each boundary the median of the leads' own (`RecordResult.lead_median_beats`).
    boundaries_lead_median: BoundarySummary | None = None
    intervals_vs_device: dict[str, Agreement] = Field(default_factory=dict)
    intervals_vs_annotations: dict[str, Agreement] = Field(default_factory=dict)
    labels: LabelSummary | None = None  # the protocol reader: ours only
    # Ours only, records with drawn boundaries: the reader's "prolonged qt" (or marked) against the QT the
    # cardiologists drew, judged by the reader's own rule (`metrics.annotated_qt_prolonged`).
    prolonged_qt_vs_drawn_qt: dict[str, float | int | None] = Field(default_factory=dict)
    seconds_per_record: float | None = None


class RecordRow(BaseModel):
    """One record through one delineator: the per-record CSV, to find the worst records quickly."""

    key: str
    source: str
    split: str
    delineator: str
    error: str | None = None
    boundary_errors_ms: dict[str, float | None] = Field(default_factory=dict)
    p_missed: int | None = None
    p_false: int | None = None
    vs_device: dict[str, float | None] = Field(default_factory=dict)
    vs_annotations: dict[str, float | None] = Field(default_factory=dict)
    reference_labels: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    missed_labels: list[str] = Field(default_factory=list)
    false_labels: list[str] = Field(default_factory=list)
    reference_rhythm: str | None = None
    rhythm: str | None = None
    rhythm_correct: bool | None = None
    leads_measured: int | None = None
    p_wave_fraction: float | None = None
    # What is left between the QRS complexes (ingest.measure.atrial_waves), per atrial lead:
    # "II 4.55 Hz 0.47 0.36" = dominant frequency, organisation, repeat correlation.
    atrial_waves: str = ""
    # The P wave locked to the QRS over all beats (ingest.measure.p_lock): "II 0.83; aVF 0.71".
    p_lock: str = ""
    # The critical findings the worklist's triage raises on the measured values alone ("; "-joined).
    measured_critical: str = ""
    notes: int = 0
    seconds: float = 0.0


class Evaluation(BaseModel):
    split: str
    records: int
    delineators: list[str]
    rate_hz: float | None = None  # every record resampled to this rate first (None: as recorded)
    neurokit2_leads: list[str] = Field(default_factory=list)
    figures: dict[str, dict[str, Figures]] = Field(default_factory=dict)
    rows: list[RecordRow] = Field(default_factory=list)
    seconds: float = 0.0


def evaluate(references: list[Reference], data_dir: Path, split: str = "all",
             delineators: tuple[str, ...] = (OURS, NEUROKIT2), neurokit2_leads: tuple[str, ...] = NEUROKIT2_LEADS,
             progress: Callable[[str], None] | None = None, rate_hz: float | None = None) -> Evaluation:
    """Run the delineators over the references and compute every figure.

    rate_hz: every record presented as a recording made at this rate (`run.model_window`); None: as recorded."""
    started = time.perf_counter()
    results: dict[str, list[tuple[Reference, RecordResult]]] = {name: [] for name in delineators}
    annotations: dict[str, list[AnnotatedBeat]] = {}
    for reference in references:
        if reference.annotations == "ludb":
            annotations[reference.key] = ludb_boundaries(reference.file(data_dir))
        if OURS in delineators:
            results[OURS].append((reference, run_ours(reference, data_dir, rate_hz)))
        if NEUROKIT2 in delineators:
            results[NEUROKIT2].append((reference, run_neurokit2(reference, data_dir, neurokit2_leads, rate_hz)))
        if progress is not None:
            progress(reference.key)

    evaluation = Evaluation(split=split, records=len(references), delineators=list(delineators), rate_hz=rate_hz,
                            neurokit2_leads=list(neurokit2_leads) if NEUROKIT2 in delineators else [])
    for name, pairs in results.items():
        rows = [_row(reference, result, annotations.get(reference.key)) for reference, result in pairs]
        evaluation.rows.extend(rows)
        sources = sorted({reference.source for reference, _ in pairs})
        evaluation.figures[name] = {
            source: _figures([p for p in pairs if p[0].source == source], annotations, name)
            for source in sources}
        evaluation.figures[name][OVERALL] = _figures(pairs, annotations, name)
    evaluation.seconds = round(time.perf_counter() - started, 1)
    return evaluation


def _figures(pairs: list[tuple[Reference, RecordResult]], annotations: dict[str, list[AnnotatedBeat]],
             delineator: str) -> Figures:
    readable = [(reference, result) for reference, result in pairs if result.error is None]
    boundary_errors: list[RecordBoundaryErrors] = [
        record_boundary_errors(result.beats, annotations[reference.key])
        for reference, result in readable if reference.key in annotations]
    lead_median_errors: list[RecordBoundaryErrors] = [
        record_boundary_errors(result.lead_median_beats, annotations[reference.key])
        for reference, result in readable if reference.key in annotations and result.lead_median_beats]
    device_pairs = [(result.measured, reference.device) for reference, result in readable if reference.device]
    annotated = [(reference, result, annotated_intervals(annotations[reference.key]))
                 for reference, result in readable if reference.key in annotations]
    annotated_pairs = [(result.measured, intervals) for _, result, intervals in annotated]
    seconds = [result.seconds for _, result in readable]
    drawn_qt = Counts()
    for reference, result, intervals in annotated if delineator == OURS else []:
        prolonged = annotated_qt_prolonged(intervals, reference.sex)
        if prolonged is not None:
            drawn_qt.add(bool(predicted_labels(result) & {v.PROLONGED_QT, v.MARKED_QT_PROLONGATION}), prolonged)
    return Figures(
        records=len(pairs), unreadable=len(pairs) - len(readable),
        boundaries=summarise_boundaries(boundary_errors) if boundary_errors else None,
        boundaries_lead_median=summarise_boundaries(lead_median_errors) if lead_median_errors else None,
        intervals_vs_device=summarise_intervals(device_pairs),
        intervals_vs_annotations=summarise_intervals(annotated_pairs),
        labels=summarise_labels(pairs) if delineator == OURS else None,
        prolonged_qt_vs_drawn_qt=drawn_qt.rates() if drawn_qt.tp + drawn_qt.fp + drawn_qt.fn + drawn_qt.tn else {},
        seconds_per_record=round(sum(seconds) / len(seconds), 3) if seconds else None,
    )


def _row(reference: Reference, result: RecordResult, annotated: list[AnnotatedBeat] | None) -> RecordRow:
    row = RecordRow(key=reference.key, source=reference.source, split=reference.split,
                    delineator=result.delineator, error=result.error, leads_measured=result.leads_measured,
                    p_wave_fraction=result.p_wave_fraction, notes=len(result.notes), seconds=round(result.seconds, 3),
                    atrial_waves="; ".join(
                        f"{w.lead} {w.frequency_hz:g} Hz {w.organisation:.2f} {w.repeat_correlation:.2f}"
                        for w in result.atrial_waves),
                    p_lock="" if result.p_lock is None else "; ".join(
                        f"{lead} {share:.2f}" for lead, share in result.p_lock.share_by_lead.items()),
                    measured_critical="; ".join(result.measured_critical))
    if result.error is not None:
        return row
    if annotated is not None:
        errors = record_boundary_errors(result.beats, annotated)
        row.boundary_errors_ms = errors.errors
        row.p_missed, row.p_false = errors.p_missed, errors.p_false
        row.vs_annotations = _differences(result.measured, annotated_intervals(annotated))
    if reference.device is not None:
        row.vs_device = _differences(result.measured, reference.device)
    if result.delineator == OURS:
        stated = reference.labels
        predicted = predicted_labels(result)
        truth = set(stated.labels)
        if reference.amplitudes == "normalised":
            predicted, truth = predicted - lb.AMPLITUDE_LABELS, truth - lb.AMPLITUDE_LABELS
        row.reference_labels = sorted(truth)
        row.labels = sorted(predicted)
        row.missed_labels = sorted(truth - predicted)
        row.false_labels = sorted(predicted - truth)
        row.reference_rhythm = stated.rhythm
        row.rhythm = lb.reader_rhythm(result.labels)
        row.rhythm_correct = None if stated.rhythm is None else lb.rhythm_correct(stated.rhythm, row.rhythm)
    return row


def _differences(found: Measurements, reference: Measurements) -> dict[str, float | None]:
    return {name: interval_difference(name, found, reference) for name in INTERVALS
            if getattr(reference, name) is not None}


__all__ = ["BOUNDARIES", "OVERALL", "Evaluation", "Figures", "RecordRow", "evaluate"]
