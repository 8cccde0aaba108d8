"""Measurement helpers written for speed must give the library's numbers exactly.

`beats.filtfilt` is scipy's sosfiltfilt step for step with the filter's steady state cached;
`beats.median_of` and `beats.nanmedian_rows` sort instead of calling numpy's medians, which
cost ~10-300 us a call on the few values they get. Every measurement rests on them (the QRS
band, the 40 Hz rows boundaries are found on, the noise of a beat, each beat's PR).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import sosfiltfilt

from ingest.measure.beats import butter_sos, filtfilt, samples


@pytest.mark.parametrize(("kind", "cutoff"), [("lowpass", 40.0), ("bandpass", (5.0, 15.0)), ("highpass", 0.5)])
@pytest.mark.parametrize("shape", [(5000,), (12, 5000), (7, 12, 600), (12, 40), (3, 2)])
def test_filtfilt_gives_scipys_sosfiltfilt_exactly(kind: str, cutoff, shape: tuple[int, ...]) -> None:
    fs = 500.0
    signal = np.random.default_rng(len(shape)).normal(size=shape)
    lowest = min(cutoff) if isinstance(cutoff, tuple) else cutoff
    padlen = min(shape[-1] - 1, samples(1.0 / lowest, fs))
    expected = sosfiltfilt(butter_sos(kind, cutoff, fs), signal, axis=-1, padlen=padlen)
    np.testing.assert_array_equal(filtfilt(signal, kind, cutoff, fs), expected)


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
