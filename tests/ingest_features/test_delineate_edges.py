"""Waves at the edges of their searches (`ingest.measure.delineate`, `ingest.measure.features`).

A T wave's peak is a turning point inside its search, not the search's edge.

ludb/124: a flat T (0.05-0.1 mV) ending 440 ms after the QRS onset, then a taller hump (a U
wave) still rising where the T search stops (550 ms): taking the edge as the T's peak put the T
end at 686 ms and called marked QT prolongation.
"""

from __future__ import annotations

import numpy as np
import pytest

from ingest.measure.delineate import P_END_BEFORE_QRS_S, p_waves, t_waves
from ingest.measure.features import _consensus

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
