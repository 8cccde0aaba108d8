"""Measurement helpers written for speed must give the library's numbers exactly.

`beats.filtfilt` is scipy's sosfiltfilt step for step with the filter's steady state cached and
scipy's C loop called without sosfilt's per-call checks (or sosfilt itself, should a scipy move it);
`beats.nan_as_zero` zeroes NaN in one pass where nan_to_num makes three; `beats.median_of` and
`beats.nanmedian_rows` sort instead of calling numpy's medians, which cost ~10-300 us a call on
the few values they get. Every measurement rests on them (the QRS
band, the 40 Hz rows boundaries are found on, the noise of a beat, each beat's PR).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import sosfiltfilt

from ingest.measure import beats
from ingest.measure.beats import butter_sos, filtfilt, nan_as_zero, samples


@pytest.mark.parametrize(("kind", "cutoff"), [("lowpass", 40.0), ("bandpass", (5.0, 15.0)), ("highpass", 0.5)])
@pytest.mark.parametrize("shape", [(5000,), (12, 5000), (7, 12, 600), (12, 40), (3, 2)])
def test_filtfilt_gives_scipys_sosfiltfilt_exactly(kind: str, cutoff, shape: tuple[int, ...]) -> None:
    fs = 500.0
    signal = np.random.default_rng(len(shape)).normal(size=shape)
    lowest = min(cutoff) if isinstance(cutoff, tuple) else cutoff
    padlen = min(shape[-1] - 1, samples(1.0 / lowest, fs))
    expected = sosfiltfilt(butter_sos(kind, cutoff, fs), signal, axis=-1, padlen=padlen)
    np.testing.assert_array_equal(filtfilt(signal, kind, cutoff, fs), expected)


@pytest.mark.parametrize("shape", [(5000,), (7, 12, 600)])
def test_filtfilt_through_the_public_sosfilt_gives_the_same_numbers(monkeypatch, shape: tuple[int, ...]) -> None:
    """The fallback for a scipy without `scipy.signal._sosfilt._sosfilt`."""
    signal = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    fast = filtfilt(signal, "bandpass", (5.0, 30.0), 500.0)
    monkeypatch.setattr(beats, "_sosfilt", None)
    np.testing.assert_array_equal(filtfilt(signal, "bandpass", (5.0, 30.0), 500.0), fast)
    assert fast.dtype == np.float64 and fast.shape == shape


def test_filtfilt_of_float32_rows_and_a_single_sample() -> None:
    rows = np.random.default_rng(1).normal(size=(12, 1000)).astype(np.float32)
    expected = sosfiltfilt(butter_sos("lowpass", 40.0, 500.0), rows, axis=-1, padlen=12)
    np.testing.assert_array_equal(filtfilt(rows, "lowpass", 40.0, 500.0), expected)
    one = np.array([[0.5]])
    np.testing.assert_array_equal(filtfilt(one, "lowpass", 40.0, 500.0),
                                  sosfiltfilt(butter_sos("lowpass", 40.0, 500.0), one, axis=-1, padlen=0))


def test_the_sorting_medians_give_numpys() -> None:
    """`median_of` (a beat's flanks) and `nanmedian_rows` (each beat's PR over its leads) replace
    np.median and np.nanmedian on small arrays: the same numbers, NaN rows and infinities included."""
    from ingest.measure.beats import median_of, nanmedian_rows

    rng = np.random.default_rng(2)
    for size in (1, 2, 3, 10, 41):
        values = rng.normal(size=size)
        assert median_of(values) == np.median(values)
    assert np.isnan(median_of(np.array([1.0, np.nan, 2.0])))
    rows = rng.normal(size=(40, 12)) * 100
    rows[rng.random(rows.shape) < 0.4] = np.nan
    rows[3] = np.nan  # a beat no lead timed
    rows[5, :3] = [np.inf, -np.inf, np.inf]
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(rows, axis=1)
    np.testing.assert_array_equal(nanmedian_rows(rows), expected)


@pytest.mark.parametrize("q", [20, 50, 90, 98, 99, 100, 0, 12.5])
@pytest.mark.parametrize("shape", [(5000,), (12, 2500), (144, 170), (37,), (2,), (1,), (12, 1)])
def test_percentile_rows_gives_numpys_percentile_exactly(q: float, shape: tuple[int, ...]) -> None:
    """The QRS detector's thresholds (99th, 98th, 90th) and the QRS bounds' noise (20th) rest on it;
    a weight of 0.5 or more interpolates from the upper value, as numpy does, which a plain
    low + step * weight would miss by an ulp on some rows."""
    from ingest.measure.beats import percentile_rows

    values = np.abs(np.random.default_rng(len(shape) + int(q)).normal(size=shape)) * 3.7
    np.testing.assert_array_equal(percentile_rows(values, q), np.percentile(values, q, axis=-1))
    with_ties = np.round(values, 1)
    np.testing.assert_array_equal(percentile_rows(with_ties, q), np.percentile(with_ties, q, axis=-1))


def test_percentile_rows_with_nan_and_infinity_as_numpy() -> None:
    from ingest.measure.beats import percentile_rows

    rows = np.random.default_rng(5).normal(size=(6, 50))
    rows[1, 3] = np.nan
    rows[2, :4] = np.inf
    np.testing.assert_array_equal(percentile_rows(rows, 20), np.percentile(rows, 20, axis=-1))
    rows[1, 3] = 0.0
    np.testing.assert_array_equal(percentile_rows(rows, 99), np.percentile(rows, 99, axis=-1))


@pytest.mark.parametrize("shape", [(12, 5000), (144, 120), (3, 2), (7,)])
def test_gradient_rows_gives_numpys_gradient_exactly(shape: tuple[int, ...]) -> None:
    from ingest.measure.beats import gradient_rows

    rows = np.random.default_rng(len(shape)).normal(size=shape)
    np.testing.assert_array_equal(gradient_rows(rows), np.gradient(rows, axis=-1))
    with pytest.raises(ValueError):
        gradient_rows(np.zeros((3, 1)))  # too few samples: numpy's own error


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nan_as_zero_gives_numpys_nan_to_num_on_arrays_without_infinities(dtype) -> None:
    values = np.random.default_rng(5).normal(size=(7, 12, 300)).astype(dtype)
    values[values > 1.5] = np.nan
    kept = values.copy()
    out = nan_as_zero(values)
    expected = np.nan_to_num(values)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(values, kept)  # a copy: the windows stay as they were
