"""Waves at the edges of their searches (`ingest.measure.delineate`, `ingest.measure.features`).

A T wave's peak is a turning point inside its search, not the search's edge.

ludb/124: a flat T (0.05-0.1 mV) ending 440 ms after the QRS onset, then a taller hump (a U
wave) still rising where the T search stops (550 ms): taking the edge as the T's peak put the T
end at 686 ms and called marked QT prolongation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.measure.delineate import P_END_BEFORE_QRS_S, p_waves, t_waves
from ingest.measure.features import R_PRIME_REACH_MS, _clear_t_ends, _consensus

FS = 500.0


def _hump(t: np.ndarray, peak_s: float, half_width_s: float, mv: float) -> np.ndarray:
    u = (t - peak_s) / half_width_s
    return np.where(np.abs(u) < 1, mv * 0.5 * (1 + np.cos(np.pi * u)), 0.0)


def _row(t_mv: float, u_mv: float) -> np.ndarray:
    """1.2 s from QRS onset (sample 100): a T peaking at 380 ms and ending near 460, a U peaking at 600 ms."""
    t = (np.arange(700) - 100) / FS
    return _hump(t, 0.38, 0.08, t_mv) + _hump(t, 0.6, 0.12, u_mv)


@pytest.mark.parametrize("u_mv", [0.0, 0.2])
def test_the_t_peak_is_the_t_not_a_u_wave_rising_at_the_search_edge(u_mv):
    rows = np.stack([_row(0.09, u_mv)])
    wave = t_waves(rows, FS, qrs_onset=100, qrs_offset=150, rr_s=1.06)
    assert (wave.peak[0] - 100) * 1000 / FS == pytest.approx(380, abs=6)
    assert (wave.end[0] - 100) * 1000 / FS == pytest.approx(460, abs=25)


def test_a_t_wave_whose_peak_is_inside_the_search_is_unchanged_by_a_smaller_edge():
    rows = np.stack([_row(0.3, 0.05)])
    wave = t_waves(rows, FS, qrs_onset=100, qrs_offset=150, rr_s=1.06)
    assert (wave.peak[0] - 100) * 1000 / FS == pytest.approx(380, abs=6)
    assert wave.amplitude[0] == pytest.approx(0.3, abs=0.01)


QRS_ONSET = 300  # sample of the QRS onset in the P rows


def _p_row(end_before_qrs_ms: float, duration_ms: float = 100.0) -> np.ndarray:
    """600 samples with a 0.15 mV P wave ending `end_before_qrs_ms` before the QRS onset, then a QRS."""
    t = (np.arange(600) - QRS_ONSET) / FS
    end_s = -end_before_qrs_ms / 1000.0
    half = duration_ms / 2000.0
    return _hump(t, end_s - half, half, 0.15) + _hump(t, 0.04, 0.04, 1.0)


def test_a_p_wave_ending_before_the_qrs_keeps_its_end_and_one_running_into_it_has_none():
    running_in_ms = 1000.0 * P_END_BEFORE_QRS_S / 2
    rows = np.stack([_p_row(60.0), _p_row(running_in_ms)])
    wave = p_waves(rows, FS, qrs_onset=QRS_ONSET, previous_t_end=0)
    assert (QRS_ONSET - wave.end[0]) * 1000 / FS == pytest.approx(60, abs=10)
    assert wave.end[1] == -1
    # The P itself is still found there: its onset and peak.
    assert (QRS_ONSET - wave.onset[1]) * 1000 / FS == pytest.approx(100 + running_in_ms, abs=10)
    assert wave.peak[1] > 0


def test_the_p_offset_is_agreed_by_two_leads_where_the_others_do_not_know_it():
    ends = np.array([172, 172, -1, -1])
    assert _consensus(ends, FS, "p_off", earliest=False) == (None, "found in 2 lead(s), 3 needed")
    assert _consensus(ends, FS, "p_off", earliest=False, min_leads=2) == (172, None)


# --- the searches work on the columns they reach: the same waves as over whole rows ---------------

def _beat_rows(record: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, R sample per row): every lead of every beat of a real record, as 40 Hz beat windows."""
    from scipy.signal import find_peaks

    from ingest.measure.beats import filtfilt, windows
    from ingest.readers.read import read_ecg

    ecg = read_ecg(Path(__file__).resolve().parents[2] / "data" / "real" / record)
    assert ecg.sampling_rate_hz == FS
    smooth = filtfilt(np.nan_to_num(ecg.signal - np.nanmedian(ecg.signal, axis=1, keepdims=True)), "lowpass",
                      40.0, FS)
    r_peaks, _ = find_peaks(np.abs(smooth).sum(axis=0), distance=int(0.3 * FS),
                            height=0.5 * np.abs(smooth).sum(axis=0).max())
    before, after = int(0.45 * FS), int(0.75 * FS)
    beats = windows(smooth, r_peaks, before, after)
    return beats.reshape(-1, before + after), np.full(beats.shape[0] * beats.shape[1], before)


def _whole_row_wave(rows: np.ndarray, onset: np.ndarray, searched: np.ndarray, **search: object):
    """The wave as `_wave` finds it on the whole rows (what p_waves and t_waves did before)."""
    from ingest.measure.delineate import _wave, _without, pr_baseline

    y = np.nan_to_num(rows - pr_baseline(rows, onset, FS)[:, None])
    return _without(_wave(y, FS, **search), ~searched)


@pytest.mark.parametrize("record", ["ludb/1.hea", "ningbo/JS20012.hea", "chapman_shaoxing/JS00005.hea"])
def test_p_and_t_searches_on_the_columns_they_reach_find_what_whole_rows_give(record: str) -> None:
    """`_wave_in_reach` works on a slice of the rows: on real beats (a sinus record, atrial
    tachycardia with premature beats, 2:1 flutter), and with rows that have no QRS reference,
    every P and T boundary, peak and amplitude is exactly what the whole rows give."""
    from ingest.measure.delineate import P_MIN_MV, T_MIN_MV, samples

    rows, r_at = _beat_rows(record)
    count = len(rows)
    onset = r_at - samples(0.04, FS) + (np.arange(count) % 5) - 2  # QRS onsets a little apart
    onset[::7] = -1  # no QRS reference in these rows
    offset = np.where(onset >= 0, onset + samples(0.1, FS), -1)
    previous = onset + samples(0.38, FS) - samples(0.8, FS)
    noise = np.full(count, 0.01)

    p = p_waves(rows, FS, onset, previous, noise)
    earliest = np.maximum(onset - samples(0.32, FS), previous + samples(0.02, FS))
    expected_p = _whole_row_wave(
        rows, onset, onset >= 0, peak_from=np.maximum(earliest, 0), peak_to=onset - samples(0.03, FS),
        rise_from=np.maximum(np.maximum(onset - samples(0.37, FS), previous), 0), fall_to=onset, limb_s=0.05,
        min_mv=P_MIN_MV, noise_mv=noise, end_margin_s=P_END_BEFORE_QRS_S)
    t = t_waves(rows, FS, onset, offset, 0.8, noise)
    expected_t = _whole_row_wave(
        rows, onset, (onset >= 0) & (offset >= 0), peak_from=offset + samples(0.06, FS),
        peak_to=onset + samples(0.48, FS), rise_from=offset,
        fall_to=np.minimum(onset + samples(0.736, FS), rows.shape[1] - 1), limb_s=0.1, min_mv=T_MIN_MV,
        noise_mv=noise, keep_flat=True, turning_peak=True)

    assert (p.peak >= 0).sum() > count / 3 and (t.end >= 0).sum() > count / 3  # real waves were found
    for found, expected in ((p, expected_p), (t, expected_t)):
        for part in ("onset", "peak", "end"):
            np.testing.assert_array_equal(getattr(found, part), getattr(expected, part))
        np.testing.assert_array_equal(found.amplitude, expected.amplitude)


def test_beat_windows_by_slices_are_the_gathered_samples() -> None:
    """`beats.windows` copies one slice per beat; beyond the record's ends the edge sample repeats."""
    from ingest.measure.beats import windows

    signal = np.random.default_rng(0).normal(size=(12, 2000))
    centres = np.array([0, 5, 700, 1999, 2000])
    before, after = 300, 400
    padded = np.pad(signal, ((0, 0), (before, after)), mode="edge")
    expected = np.stack([padded[:, c:c + before + after] for c in centres])
    np.testing.assert_array_equal(windows(signal, centres, before, after), expected)
    assert (windows(signal, centres, before, after)[0, :, :before] == signal[:, :1]).all()


@pytest.mark.parametrize(("record", "where"), [("cpsc2018_extra/Q0096.hea", "56 ms before"),
                                               ("ludb/45.hea", "only 36 ms after")])
def test_a_p_offset_that_does_not_follow_the_p_onset_bounds_no_p_wave(record: str, where: str) -> None:
    """Q0096 (atrial flutter): the earliest leads put the P onset 232 ms before the QRS and the
    latest leads the P end 288 ms before it; ludb/45 (paced): 36 ms apart. No P wave lies
    between such bounds, so PR, P axis and P duration are not measured, and the note says why."""
    from ingest.prepare import prepare
    from ingest.readers.read import read_ecg

    features = prepare(read_ecg(Path(__file__).resolve().parents[2] / "data" / "real" / record)).features
    assert features.global_.pr_ms is None and features.boundaries.p_on_ms is None
    assert any(f"P end lies {where} the earliest leads' P onset" in note for note in features.notes)


# The QRS offsets of 12 leads (samples at 500 Hz, 2 ms each): most end at 240-244.
EARLY_ENDS = [240, 242, 244, 242, 240, 244, 242, 240, 242, 244, 242, 240]


def _with_late(leads: dict[int, int]) -> np.ndarray:
    ends = np.array(EARLY_ENDS)
    for lead, end in leads.items():
        ends[lead] = end
    return ends


def _qrs_off(ends: np.ndarray) -> int | None:
    alone_ok = np.isin(np.array(STANDARD_LEADS), ("V1", "V2"))
    return _consensus(ends, FS, "qrs_off", earliest=False, minority_late=True, late_alone_ok=alone_ok)[0]


def test_a_late_qrs_end_in_one_limb_lead_alone_is_a_stray_lead():
    """aVL ending 40 ms after the others (muscle tremor left in its median beat) does not set the offset."""
    assert _qrs_off(_with_late({STANDARD_LEADS.index("aVL"): 264})) == 244


def test_a_late_qrs_end_in_v1_alone_is_rbbbs_r_prime():
    assert _qrs_off(_with_late({STANDARD_LEADS.index("V1"): 264})) == 264


def test_a_late_qrs_end_in_two_leads_together_counts_wherever_it_is():
    late = {STANDARD_LEADS.index("I"): 266, STANDARD_LEADS.index("V6"): 262}
    assert _qrs_off(_with_late(late)) == 262  # the second latest of six or more agreeing leads
    # 28 ms apart, and V6 24 ms after the latest of the others: no lead ends with either
    apart = {STANDARD_LEADS.index("I"): 270, STANDARD_LEADS.index("V6"): 256}
    assert _qrs_off(_with_late(apart)) == 244


def test_rbbbs_r_prime_in_v1_alone_is_kept_beyond_the_agreement_window():
    """RBBB's R' ends 50-60 ms after the QRS has ended in the other leads: V1 alone, 46 ms (23 samples) after
    the latest of them, no other lead within 40 ms of it (ludb/10: QRS 82 ms read, 128 ms with its R', RBBB
    missed). Up to R_PRIME_REACH_MS after the others' end it is the offset; further, it is no R'."""
    v1 = STANDARD_LEADS.index("V1")
    latest_other = max(EARLY_ENDS)
    assert _qrs_off(_with_late({v1: latest_other + 23})) == latest_other + 23
    reach = int(R_PRIME_REACH_MS * FS / 1000.0)
    assert _qrs_off(_with_late({v1: latest_other + reach})) == latest_other + reach
    assert _qrs_off(_with_late({v1: latest_other + reach + 5})) < latest_other + reach
    # The same late end in a limb lead alone is a stray lead, at any distance.
    assert _qrs_off(_with_late({STANDARD_LEADS.index("aVL"): latest_other + 23})) <= latest_other


def _t_rows(clear: int, small: int) -> np.ndarray:
    """Rows from QRS onset (sample 100): `clear` leads with a 0.4 mV T ending near 440 ms, `small` leads with
    a 0.07 mV T, wider, fading out near 500 ms (a small T's end, lost in its own slow return)."""
    t = (np.arange(700) - 100) / FS
    return np.stack([_hump(t, 0.36, 0.08, 0.4)] * clear + [_hump(t, 0.39, 0.11, 0.07)] * small)


def _global_t_end_ms(rows: np.ndarray) -> float | None:
    wave = t_waves(rows, FS, qrs_onset=np.full(len(rows), 100), qrs_offset=np.full(len(rows), 150), rr_s=1.0)
    measured = np.ones(len(rows), dtype=bool)
    end, _ = _consensus(_clear_t_ends(wave, measured)[measured], FS, "t_end", earliest=False)
    return None if end is None else (end - 100) * 1000 / FS


def test_the_global_t_end_is_where_the_clear_t_waves_end_not_the_small_ones():
    # Each lead's own T end: the small T's is 40 ms or more later than the clear T's.
    wave = t_waves(_t_rows(1, 1), FS, qrs_onset=np.full(2, 100), qrs_offset=np.full(2, 150), rr_s=1.0)
    clear_end, small_end = (wave.end - 100) * 1000 / FS
    assert small_end - clear_end >= 40, (clear_end, small_end)
    # Eight small T waves beside four clear ones set the T end without the share; with it, the clear ones do.
    assert _global_t_end_ms(_t_rows(4, 8)) == pytest.approx(clear_end, abs=4)


def test_with_fewer_than_three_clear_t_waves_every_lead_counts():
    rows = _t_rows(2, 8)
    wave = t_waves(rows, FS, qrs_onset=np.full(10, 100), qrs_offset=np.full(10, 150), rr_s=1.0)
    measured = np.ones(10, dtype=bool)
    np.testing.assert_array_equal(_clear_t_ends(wave, measured), wave.end)
    assert _global_t_end_ms(rows) is not None
