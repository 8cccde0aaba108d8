"""The model window: resampling to 500 Hz, the 10 s crop/pad policy, lead order, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.errors import IngestError
from ingest.prepare.signal import MIN_DURATION_S, resample, resampling_ratio, to_model_window
from tests.ingest_render.synthetic import FS, N, make_ecg, sine_at, sines


@pytest.mark.parametrize(("fs_in", "expected"), [
    (1000, (1, 2)), (500, (1, 1)), (250, (2, 1)), (360, (25, 18)), (257, (500, 257)),
    (128, (125, 32)), (499.5, (1000, 999)),
])
def test_resampling_ratio_is_exact_for_usual_rates(fs_in, expected):
    assert resampling_ratio(fs_in, 500) == expected


@pytest.mark.parametrize("bad", [0, -500, float("nan"), float("inf")])
def test_resampling_ratio_rejects_impossible_rates(bad):
    with pytest.raises(ValueError):
        resampling_ratio(bad, 500)


@pytest.mark.parametrize("fs_in", [1000, 360, 257, 250])
def test_resample_keeps_low_frequency_content(fs_in):
    source = sines(fs_in, 10)
    out = resample(source, fs_in, 500)
    assert out.dtype == np.float32
    assert out.shape == (12, N)
    truth = sine_at(np.arange(N) / 500)
    # Away from the ends the sines come through with their amplitude and phase.
    interior = slice(100, N - 100)
    assert np.max(np.abs(out[:, interior] - truth[:, interior])) < 5e-3
    # padtype="line" keeps the ends free of ringing too, up to the last source sample
    # (an upsampled output's final sample lies past it: that one is extrapolated).
    inside = np.arange(N) / 500 <= (source.shape[1] - 1) / fs_in
    assert np.max(np.abs(out - truth)[:, inside]) < 0.05


def test_resample_removes_content_above_the_new_nyquist():
    # 400 Hz at 1000 Hz would fold to 100 Hz if we merely took every other sample.
    t = np.arange(10_000) / 1000
    tone = np.sin(2 * np.pi * 400 * t)[None, :]
    naive = tone[:, ::2]
    assert np.std(naive) > 0.5  # the alias a plain decimation lets through
    out = resample(tone, 1000, 500)
    assert np.std(out[:, 50:-50]) < 0.01


def test_resample_at_the_same_rate_is_a_float32_copy():
    source = sines(500, 2).astype(np.float64)
    out = resample(source, 500, 500)
    assert out.dtype == np.float32 and out is not source
    np.testing.assert_array_equal(out, source.astype(np.float32))


def test_ten_seconds_at_500_hz_pass_unchanged():
    source = sines(FS, 10)
    window = to_model_window(make_ecg(source, FS))
    assert window.signal.shape == (12, N) and window.signal.dtype == np.float32
    assert window.sampling_rate_hz == 500
    np.testing.assert_array_equal(window.signal, source)
    assert "as recorded" in window.note
    assert window.padded_s == 0 and window.discarded_s == 0 and window.nonfinite_samples == 0


@pytest.mark.parametrize("fs_in", [1000, 360, 257, 250])
def test_other_rates_are_resampled_to_500_hz(fs_in):
    window = to_model_window(make_ecg(sines(fs_in, 10), fs_in))
    assert window.signal.shape == (12, N)
    truth = sine_at(np.arange(N) / 500)
    assert np.max(np.abs(window.signal[:, 100:-100] - truth[:, 100:-100])) < 5e-3
    assert f"resampled {fs_in} Hz -> 500 Hz" in window.note


def test_a_longer_record_keeps_its_first_ten_seconds():
    source = sines(FS, 12.5)
    window = to_model_window(make_ecg(source, FS))
    np.testing.assert_array_equal(window.signal, source[:, :N])
    assert window.discarded_s == pytest.approx(2.5)
    assert "first 10 s of 12.5 s kept" in window.note and "2.5 s discarded" in window.note


def test_a_long_record_at_1000_hz_is_cropped_without_edge_effects_at_10_s():
    window = to_model_window(make_ecg(sines(1000, 60), 1000))
    truth = sine_at(np.arange(N) / 500)
    # The last samples of the window were filtered with real neighbours, not padding.
    assert np.max(np.abs(window.signal[:, -100:] - truth[:, -100:])) < 5e-3
    assert window.discarded_s == pytest.approx(50)


def test_a_shorter_record_is_right_padded_with_zeros():
    source = sines(FS, 7)
    window = to_model_window(make_ecg(source, FS))
    np.testing.assert_array_equal(window.signal[:, :3500], source)
    assert not window.signal[:, 3500:].any()
    assert window.padded_s == pytest.approx(3.0)
    assert "7 s recorded" in window.note and "padded with 3 s of zeros" in window.note


def test_a_two_second_strip_is_not_a_12_lead_ecg():
    with pytest.raises(IngestError) as caught:
        to_model_window(make_ecg(sines(FS, 2), FS, path="/inbox/strip.hea"))
    assert caught.value.path == "/inbox/strip.hea"
    assert "2.00 s" in caught.value.reason and f"{MIN_DURATION_S:g} s" in caught.value.reason


def test_the_minimum_duration_itself_is_accepted():
    window = to_model_window(make_ecg(sines(FS, MIN_DURATION_S), FS))
    assert window.padded_s == pytest.approx(10 - MIN_DURATION_S)


def test_non_finite_samples_become_zero_and_do_not_smear():
    source = sines(1000, 10).astype(np.float64)
    source[3, 4083] = np.nan  # at a crest of lead aVR's 3 Hz sine
    source[3, 4084] = np.inf
    source[7, 10] = -np.inf
    window = to_model_window(make_ecg(source, 1000))
    assert np.isfinite(window.signal).all()
    assert window.nonfinite_samples == 3
    assert "3 non-finite sample(s) set to 0" in window.note
    # Leads without bad samples are untouched by the others' repairs.
    truth = sine_at(np.arange(N) / 500)
    assert np.max(np.abs(window.signal[5, 100:-100] - truth[5, 100:-100])) < 5e-3
    # The repaired spot in lead aVR dips towards 0 only locally (the filter's reach).
    error = np.abs(window.signal[3] - truth[3])
    assert error[2030:2050].max() > 0.1
    assert error[100:2000].max() < 5e-3 and error[2080:-100].max() < 5e-3


def test_input_ecg_is_not_modified():
    source = sines(1000, 10).astype(np.float64)
    source[0, 5] = np.nan
    ecg = make_ecg(source, 1000)
    to_model_window(ecg)
    assert np.isnan(ecg.signal[0, 5])


def test_leads_are_put_in_standard_order_by_name():
    shuffled = list(reversed(STANDARD_LEADS))
    # Each channel carries a constant naming its lead: 0 for I, 1 for II, ...
    source = np.array([[STANDARD_LEADS.index(name)] * N for name in shuffled], dtype=np.float32)
    window = to_model_window(make_ecg(source, FS, lead_names=shuffled))
    np.testing.assert_array_equal(window.signal[:, 0], np.arange(12))


def test_extra_channels_are_left_out():
    source = np.vstack([sines(FS, 10), np.full((1, N), 9.0, dtype=np.float32)])
    window = to_model_window(make_ecg(source, FS, lead_names=[*STANDARD_LEADS, "Pleth"]))
    assert window.signal.shape == (12, N) and window.signal.max() < 9


def test_a_missing_standard_lead_is_named():
    leads = [lead for lead in STANDARD_LEADS if lead != "V3"]
    with pytest.raises(IngestError) as caught:
        to_model_window(make_ecg(sines(FS, 10)[:11], FS, lead_names=leads, path="/inbox/eleven.hea"))
    assert caught.value.path == "/inbox/eleven.hea" and "V3" in caught.value.reason


@pytest.mark.parametrize(("signal", "fs", "lead_names", "words"), [
    (None, 500, None, "no signal"),
    (np.zeros((12, N), np.float32), 0, None, "sampling rate"),
    (np.zeros((11, N), np.float32), 500, None, "does not match"),
])
def test_unusable_signals_raise_ingest_error(signal, fs, lead_names, words):
    with pytest.raises(IngestError, match=words):
        to_model_window(make_ecg(signal, fs, lead_names))


def test_the_mortara_dicom_at_1000_hz_becomes_a_500_hz_window(mortara_dicom_path):
    from ingest.readers.read import read_ecg

    ecg = read_ecg(mortara_dicom_path)
    window = to_model_window(ecg)
    assert window.signal.shape == (12, N) and np.isfinite(window.signal).all()
    assert window.note.startswith("resampled 1000 Hz -> 500 Hz")
    # Same ECG at half the rate: lead II's samples match the source's every other sample
    # closely (the ECG has little content near 250 Hz), and the peak voltage survives.
    lead_ii = ecg.signal[ecg.lead_names.index("II")]
    assert np.median(np.abs(window.signal[1] - lead_ii[::2])) < 0.01
    assert window.signal[1].max() == pytest.approx(lead_ii.max(), rel=0.1)


def test_a_rate_within_float_noise_of_500_hz_is_not_resampled():
    source = sines(FS, 10)
    window = to_model_window(make_ecg(source, 500.0000001))
    np.testing.assert_array_equal(window.signal, source)
    assert "resampled" not in window.note
