"""Our wave boundaries in both conventions, judged against LUDB's (`WaveBoundaries.lead_median`).

The global boundaries are the device's: the earliest onset and the latest end of the leads that agree, what
PR, QRS and QT run between. LUDB's reference boundary is the median of its cardiologists' marks over the
leads, and neurokit2's here the median of its leads', so `ecg-worklist validate` scores our leads' median too,
like for like, and the baseline holds both.
"""

from __future__ import annotations

from ingest.measure.features import measure
from ingest.validation.evaluate import Evaluation
from ingest.validation.references import BOUNDARIES, DEFAULT_DATA_DIR, load_references
from ingest.validation.report import format_text, held_figures
from ingest.validation.run import OURS, model_window


def _boundaries(key: str):
    reference = next(ref for ref in load_references(DEFAULT_DATA_DIR) if ref.key == key)
    signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
    return measure(signal, fs, recorded_rate_hz=ecg.sampling_rate_hz).boundaries


def test_the_leads_median_lies_inside_the_devices_earliest_onset_and_latest_end():
    for key in ("ludb/1", "ludb/15", "ludb/101"):  # sinus; first degree AV block; atrial fibrillation (no P)
        bounds = _boundaries(key)
        median = bounds.lead_median
        assert median is not None
        for name in BOUNDARIES:  # known in one convention exactly where known in the other
            assert (getattr(median, f"{name}_ms") is None) == (getattr(bounds, f"{name}_ms") is None), (key, name)
        assert median.qrs_on_ms >= bounds.qrs_on_ms and median.qrs_off_ms <= bounds.qrs_off_ms, key
        assert median.t_end_ms <= bounds.t_end_ms, key
        if bounds.p_on_ms is not None:
            assert median.p_on_ms >= bounds.p_on_ms and median.p_off_ms <= bounds.p_off_ms, key


def test_validate_scores_and_holds_the_leads_median_on_the_same_beats(evaluation: Evaluation):
    figures = evaluation.figures[OURS]["overall"]
    assert figures.boundaries_lead_median is not None
    for name in BOUNDARIES:
        assert figures.boundaries_lead_median.by_boundary[name].n == figures.boundaries.by_boundary[name].n
    # The P wave's median-of-leads end sits nearer LUDB's median-of-marks end than the device's latest end does.
    assert figures.boundaries_lead_median.by_boundary["p_off"].mean_abs < figures.boundaries.by_boundary["p_off"].mean_abs
    assert "ecg-worklist, median of leads" in format_text(evaluation)
    assert "boundary_lead_median.p_off.mean_abs_ms" in held_figures(evaluation)
