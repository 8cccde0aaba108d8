"""The DICOM waveform reader, on pydicom's real Mortara ELI 250 file and on files written here."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ingest.ecg import STANDARD_LEADS, Sex, SourceFormat
from ingest.errors import IngestError
from ingest.readers.read import read_ecg
from tests.ingest_readers.builders import (
    GENERAL_ECG_SOP,
    HEMODYNAMIC_SOP,
    mdc_sources,
    waveform_group,
    write_dicom_ecg,
)


@pytest.fixture(scope="module")
def mortara(mortara_dicom_path: Path):
    return read_ecg(mortara_dicom_path)


def test_mortara_rhythm_is_twelve_leads_of_plausible_millivolts(mortara) -> None:
    assert mortara.source_format is SourceFormat.DICOM
    assert mortara.lead_names == list(STANDARD_LEADS)
    assert mortara.signal.shape == (12, 10000) and mortara.signal.dtype == np.float32
    assert mortara.sampling_rate_hz == 1000.0
    assert mortara.duration_s == 10.0
    peak = np.abs(mortara.signal).max(axis=1)
    assert (peak > 0.2).all() and (peak < 5.0).all()  # mV, not uV and not raw counts
    # 1.25 uV per unit: every sample is a multiple of 0.00125 mV.
    np.testing.assert_allclose(mortara.signal[0, :50] / 0.00125, np.round(mortara.signal[0, :50] / 0.00125), atol=1e-3)
    assert mortara.provenance["multiplex_group"] == "RHYTHM"
    assert mortara.provenance["filters"] == "0.05-300 Hz"  # notch 0 = none
    assert "derived_leads" not in mortara.provenance


def test_mortara_leads_are_where_their_codes_say(mortara) -> None:
    lead = {name: mortara.signal[i].astype(np.float64) for i, name in enumerate(mortara.lead_names)}
    # The device's limb leads obey Einthoven and Goldberger: a wrong mapping would not.
    np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], atol=0.003)
    np.testing.assert_allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=0.003)
    np.testing.assert_allclose(lead["aVF"], lead["II"] - lead["I"] / 2, atol=0.003)


def test_mortara_median_beat_is_kept(mortara) -> None:
    assert mortara.median_beat is not None
    assert mortara.median_beat.shape == (12, 1200)
    assert mortara.median_beat_rate_hz == 1000.0
    assert 0.2 < np.abs(mortara.median_beat).max() < 5.0
    assert "median_beat" not in mortara.provenance  # used, despite its channel without filter attributes


def test_mortara_demographics(mortara) -> None:
    demographics = mortara.demographics
    assert demographics.patient_id == "642341"
    assert demographics.patient_name == "Anonymous"
    assert demographics.sex is Sex.FEMALE
    assert demographics.birth_date == dt.date(1971, 1, 23)
    assert demographics.age_years == 42
    assert demographics.accession == "03028041970546"
    assert demographics.study_uid == "1.3.76.13.65829.2.20130125082826.1072139.2"
    assert demographics.acquired_at == dt.datetime(2013, 1, 25, 10, 59, 19)


def test_mortara_device_measurements_statements_and_name(mortara) -> None:
    measured = mortara.device_measurements
    assert measured is not None
    assert (measured.rr_ms, measured.pr_ms, measured.qrs_ms) == (982, 161, 75)
    assert (measured.qt_ms, measured.qtc_ms) == (368, 370)
    assert (measured.p_axis_deg, measured.qrs_axis_deg, measured.t_axis_deg) == (74, 52, 57)
    assert measured.hr_bpm == pytest.approx(60000 / 982, abs=0.1)
    assert measured.qtc_fridericia_ms is None  # the device did not report it
    assert mortara.device_statement_texts == ["RITMO SINUSALE", "ECG NORMALE"]
    assert mortara.device_name == "Mortara Instrument, Inc. el250"


# --- files written here ------------------------------------------------------------------

SHUFFLED = ["V6", "aVF", "I", "V3", "III", "aVL", "V1", "II", "V5", "aVR", "V2", "V4"]


def _pick(signal: np.ndarray, names: list[str]) -> np.ndarray:
    return np.stack([signal[STANDARD_LEADS.index(name)] for name in names])


def test_mdc_coded_leads_are_mapped_by_code_not_position(tmp_path: Path, ecg12: np.ndarray) -> None:
    # Code meanings deliberately say nothing useful: only the MDC codes identify the leads.
    sources = [(code, "MDC", f"channel {i}") for i, (code, _, _) in enumerate(mdc_sources(SHUFFLED))]
    group = waveform_group(_pick(ecg12, SHUFFLED) * 1000, sources, fs=500, label="RHYTHM", units="uV")
    ecg = read_ecg(write_dicom_ecg(tmp_path / "mdc.dcm", [group]))
    assert ecg.lead_names == list(STANDARD_LEADS)
    np.testing.assert_allclose(ecg.signal, ecg12, atol=0.001)  # 1 uV quantisation


def test_meaning_text_is_the_fallback_for_unknown_codes(tmp_path: Path, ecg12: np.ndarray) -> None:
    sources = [("VENDOR-" + str(i), "99VENDOR", f"Lead {name}") for i, name in enumerate(SHUFFLED)]
    group = waveform_group(_pick(ecg12, SHUFFLED) * 1000, sources, fs=500, label="RHYTHM")
    ecg = read_ecg(write_dicom_ecg(tmp_path / "vendor.dcm", [group]))
    np.testing.assert_allclose(ecg.signal, ecg12, atol=0.001)


def test_general_ecg_in_millivolt_units_with_eight_leads(tmp_path: Path, ecg12: np.ndarray) -> None:
    eight = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    group = waveform_group(_pick(ecg12, eight), mdc_sources(eight), fs=500, label="RHYTHM",
                           units="mV", sensitivity=0.005)
    ecg = read_ecg(write_dicom_ecg(tmp_path / "general.dcm", [group], sop_class=GENERAL_ECG_SOP))
    assert ecg.provenance["sop_class"] == "General ECG Waveform Storage"
    assert ecg.provenance["derived_leads"] == "III,aVR,aVL,aVF"
    np.testing.assert_allclose(ecg.signal[6:], ecg12[6:], atol=0.003)
    np.testing.assert_allclose(ecg.signal[2], ecg.signal[1] - ecg.signal[0], atol=1e-5)


def test_without_rhythm_label_the_longest_non_median_group_is_used(tmp_path: Path, ecg12: np.ndarray) -> None:
    sources = mdc_sources(STANDARD_LEADS)
    short = waveform_group(ecg12[:, :1000] * 1000 + 50, sources, fs=500, label="FIRST 2S")
    median = waveform_group(ecg12[:, :3000] * 1000, sources, fs=500, label="MEDIAN BEAT")
    long = waveform_group(ecg12 * 1000, sources, fs=500, label="FULL DISCLOSURE")
    ecg = read_ecg(write_dicom_ecg(tmp_path / "groups.dcm", [short, median, long]))
    assert ecg.provenance["multiplex_group"] == "FULL DISCLOSURE"
    assert ecg.signal.shape == (12, 5000)
    assert ecg.median_beat is not None and ecg.median_beat.shape == (12, 3000)


def test_no_device_annotations_means_no_device_measurements(tmp_path: Path, ecg12: np.ndarray) -> None:
    group = waveform_group(ecg12 * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM")
    ecg = read_ecg(write_dicom_ecg(tmp_path / "plain.dcm", [group]))
    assert ecg.device_measurements is None
    assert ecg.device_statements == []
    assert ecg.device_name is None
    assert ecg.median_beat is None
    assert ecg.demographics.acquired_at == dt.datetime(2024, 3, 1, 14, 22, 33, 500000)  # offset dropped


def _numeric(code: str, meaning: str, value: str, unit: str, channels: list[int]):
    from pydicom.dataset import Dataset

    def coded(value_: str, scheme: str, meaning_: str) -> Dataset:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value_, scheme, meaning_
        return item

    annotation = Dataset()
    annotation.ConceptNameCodeSequence = [coded(code, "SCPECG", meaning)]
    annotation.NumericValue = value
    annotation.MeasurementUnitsCodeSequence = [coded(unit, "UCUM", unit)]
    annotation.ReferencedWaveformChannels = channels
    return annotation


def test_only_global_annotations_are_device_measurements(tmp_path: Path, ecg12: np.ndarray) -> None:
    from pydicom.dataset import Dataset

    statement = Dataset()
    statement.UnformattedTextValue = "SINUS RHYTHM"
    statement.ReferencedWaveformChannels = [1, 0]
    annotations = [
        _numeric("5.13.5-9", "QRS Duration", "120", "ms", [1, 3]),  # QRS in lead V1 only: per-lead
        _numeric("5.13.5-9", "QRS Duration", "96", "ms", [1, 0]),  # the global QRS duration
        _numeric("5.13.5-7", "PR Interval", "0", "ms", [1, 0]),  # 0 = not measured
        _numeric("X-1", "Ventricular rate", "72", "/min", [1, 0]),  # matched by its meaning
        _numeric("5.10.3-13", "QRS Axis", "0", "deg", [1, 0]),  # an axis of 0 degrees is a value
        statement,
    ]
    group = waveform_group(ecg12 * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM")
    ecg = read_ecg(write_dicom_ecg(tmp_path / "annotated.dcm", [group], annotations=annotations))
    measured = ecg.device_measurements
    assert measured is not None
    assert (measured.qrs_ms, measured.pr_ms, measured.hr_bpm, measured.qrs_axis_deg) == (96, None, 72, 0)
    assert ecg.device_statement_texts == ["SINUS RHYTHM"]


# --- bad input ---------------------------------------------------------------------------

def test_truncated_dicom_is_rejected(tmp_path: Path, mortara_dicom_path: Path) -> None:
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(mortara_dicom_path.read_bytes()[:150_000])
    with pytest.raises(IngestError) as caught:
        read_ecg(cut)
    assert caught.value.path == str(cut)
    assert "truncated or corrupt DICOM" in caught.value.reason


def test_ct_image_is_an_unsupported_sop_class(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    ct = tmp_path / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), ct)
    with pytest.raises(IngestError) as caught:
        read_ecg(ct)
    assert caught.value.reason.startswith("unsupported SOP class 1.2.840.10008.5.1.4.1.1.2 (CT Image Storage)")


def test_hemodynamic_waveform_is_an_unsupported_sop_class(tmp_path: Path, mortara_dicom_path: Path) -> None:
    dataset = pydicom.dcmread(mortara_dicom_path)
    dataset.SOPClassUID = HEMODYNAMIC_SOP
    dataset.file_meta.MediaStorageSOPClassUID = HEMODYNAMIC_SOP
    path = tmp_path / "hemo.dcm"
    dataset.save_as(path)
    with pytest.raises(IngestError) as caught:
        read_ecg(path)
    assert caught.value.path == str(path)
    assert caught.value.reason.startswith(f"unsupported SOP class {HEMODYNAMIC_SOP} (Hemodynamic Waveform Storage)")


def test_waveform_data_shorter_than_declared_is_rejected(tmp_path: Path, ecg12: np.ndarray) -> None:
    group = waveform_group(ecg12 * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM")
    group.WaveformData = group.WaveformData[: len(group.WaveformData) // 2]
    with pytest.raises(IngestError, match=r"waveform group RHYTHM is truncated \(60000 of 120000 bytes\)"):
        read_ecg(write_dicom_ecg(tmp_path / "short.dcm", [group]))


def test_only_a_median_beat_is_not_a_rhythm(tmp_path: Path, ecg12: np.ndarray) -> None:
    group = waveform_group(ecg12[:, :600] * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="MEDIAN BEAT")
    with pytest.raises(IngestError, match="only median beats"):
        read_ecg(write_dicom_ecg(tmp_path / "median.dcm", [group]))


def test_lead_without_sensitivity_units_is_rejected(tmp_path: Path, ecg12: np.ndarray) -> None:
    group = waveform_group(ecg12 * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM")
    del group.ChannelDefinitionSequence[7].ChannelSensitivityUnitsSequence  # V2
    with pytest.raises(IngestError, match="lead V2 has no usable sensitivity units"):
        read_ecg(write_dicom_ecg(tmp_path / "nounits.dcm", [group]))


def test_two_lead_dicom_is_rejected_by_the_lead_rule(tmp_path: Path, ecg12: np.ndarray) -> None:
    group = waveform_group(ecg12[:2] * 1000, mdc_sources(["I", "II"]), fs=500, label="RHYTHM")
    with pytest.raises(IngestError, match=r"not a 12-lead ECG: found leads \[I, II\]"):
        read_ecg(write_dicom_ecg(tmp_path / "two.dcm", [group]))


def test_samples_are_scaled_as_pydicom_scales_them_bit_for_bit(tmp_path: Path, mortara_dicom_path: Path,
                                                               ecg12: np.ndarray) -> None:
    """The reader scales the channels in whole-array operations (`_decoded_channels`); every number must
    be pydicom's `waveform_array`: on the real Mortara file (both its groups), and on a group whose
    channels each have their own sensitivity, correction factor and baseline, or none at all."""
    from ingest.readers.dicom import _decoded_channels

    dataset = pydicom.dcmread(mortara_dicom_path)
    for index, group in enumerate(dataset.WaveformSequence):
        ours = _decoded_channels(group, list(group.ChannelDefinitionSequence))
        assert np.array_equal(ours, dataset.waveform_array(index))

    group = waveform_group(ecg12 * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM", sensitivity=2.5)
    for position, channel in enumerate(group.ChannelDefinitionSequence):
        channel.ChannelSensitivity = f"{0.3 + 0.37 * position:g}"
        channel.ChannelSensitivityCorrectionFactor = f"{0.9 + 0.013 * position:g}"
        channel.ChannelBaseline = f"{-1.5 + 0.25 * position:g}"
    del group.ChannelDefinitionSequence[3].ChannelSensitivityCorrectionFactor  # optional: 1 when absent
    del group.ChannelDefinitionSequence[4].ChannelBaseline  # optional: 0 when absent
    built = pydicom.dcmread(write_dicom_ecg(tmp_path / "scaled.dcm", [group]))
    ours = _decoded_channels(built.WaveformSequence[0], list(built.WaveformSequence[0].ChannelDefinitionSequence))
    theirs = built.waveform_array(0)
    assert ours.shape == theirs.shape == (5000, 12)
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours[:, 3], ours[:, 4])  # the channels were scaled differently


def test_an_unknown_sample_type_names_the_group(tmp_path: Path, ecg12: np.ndarray) -> None:
    group = waveform_group(ecg12 * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM")
    group.WaveformSampleInterpretation = "XX"
    with pytest.raises(IngestError, match="waveform group RHYTHM could not be decoded"):
        read_ecg(write_dicom_ecg(tmp_path / "odd.dcm", [group]))
