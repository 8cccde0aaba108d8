"""The WFDB reader on records written with wfdb.wrsamp (formats 16 and 212) and a CinC-style .mat."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS, Sex, SourceFormat
from ingest.errors import IngestError
from ingest.readers.read import read_ecg
from ingest.readers.demographics import demographics_from_comments
from tests.ingest_readers.builders import write_mat_record, write_wfdb


@pytest.mark.parametrize(("fmt", "tolerance_mv"), [("16", 0.001), ("212", 0.005)])
def test_format_round_trip_in_millivolts(tmp_path: Path, ecg12: np.ndarray, fmt: str, tolerance_mv: float) -> None:
    header = write_wfdb(tmp_path, f"rec{fmt}", np.array(ecg12), STANDARD_LEADS, fmt=fmt)
    ecg = read_ecg(header)
    assert ecg.source_format is SourceFormat.WFDB
    assert ecg.sampling_rate_hz == 500.0
    assert ecg.lead_names == list(STANDARD_LEADS)
    assert ecg.signal.dtype == np.float32 and ecg.signal.shape == (12, 5000)
    np.testing.assert_allclose(ecg.signal, ecg12, atol=tolerance_mv)
    assert ecg.provenance["formats"] == fmt


def test_microvolt_units_are_converted_to_millivolts(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "uv", np.array(ecg12), STANDARD_LEADS, units="uV")
    assert "/uV" in header.read_text()
    ecg = read_ecg(header)
    np.testing.assert_allclose(ecg.signal, ecg12, atol=0.001)


def test_ptbxl_and_mimic_style_names_and_order(tmp_path: Path, ecg12: np.ndarray) -> None:
    # PTB-XL writes AVR/AVL/AVF; MIMIC-IV-ECG stores aVF before aVL.
    order = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    source = np.stack([ecg12[STANDARD_LEADS.index(name)] for name in order])
    spelled = [name.upper() if name.startswith("a") else name for name in order]
    ecg = read_ecg(write_wfdb(tmp_path, "ptbxl", source, spelled))
    assert ecg.lead_names == list(STANDARD_LEADS)
    np.testing.assert_allclose(ecg.signal, ecg12, atol=0.001)


def test_eight_lead_record_gets_derived_limb_leads(tmp_path: Path, ecg12: np.ndarray) -> None:
    eight = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    source = np.stack([ecg12[STANDARD_LEADS.index(name)] for name in eight])
    ecg = read_ecg(write_wfdb(tmp_path, "eight", source, eight))
    assert ecg.provenance["derived_leads"] == "III,aVR,aVL,aVF"
    assert ecg.lead_names == list(STANDARD_LEADS) and ecg.missing_leads == []
    np.testing.assert_allclose(ecg.signal[3], -(ecg.signal[0] + ecg.signal[1]) / 2, atol=1e-5)


def test_mat_record_is_read(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_mat_record(tmp_path, "A0001", np.array(ecg12), STANDARD_LEADS, comments=["Age: 74", "Sex: Male"])
    ecg = read_ecg(header)
    np.testing.assert_allclose(ecg.signal, ecg12, atol=0.001)
    assert (ecg.demographics.age_years, ecg.demographics.sex) == (74, Sex.MALE)


def test_header_comments_and_base_time_give_demographics(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "demo", np.array(ecg12), STANDARD_LEADS,
                        comments=["Age: 63", "Sex: Female", "Dx: 426783006"],
                        base=dt.datetime(2021, 6, 5, 11, 29, 0))
    demographics = read_ecg(header).demographics
    assert demographics.age_years == 63
    assert demographics.sex is Sex.FEMALE
    assert demographics.acquired_at == dt.datetime(2021, 6, 5, 11, 29, 0)
    assert demographics.patient_id is None  # WFDB carries none: never invented


@pytest.mark.parametrize(("comments", "age", "sex"), [
    (["<age>: 63 <sex>: M <diagnoses> ..."], 63, Sex.MALE),
    (["age: 81", "sex: female"], 81, Sex.FEMALE),
    (["Age: 40 Sex: F"], 40, Sex.FEMALE),
    (["Dx: 164889003", "Rx: Unknown"], None, Sex.UNKNOWN),
])
def test_comment_styles(comments: list[str], age: int | None, sex: Sex) -> None:
    demographics, _notes = demographics_from_comments(comments)
    assert (demographics.age_years, demographics.sex) == (age, sex)


# --- bad input ---------------------------------------------------------------------------

def test_two_lead_holter_record_is_rejected(tmp_path: Path) -> None:
    t = np.arange(3600) / 360
    signal = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])
    header = write_wfdb(tmp_path, "100", signal, ["MLII", "V5"], fs=360, fmt="212")
    with pytest.raises(IngestError) as caught:
        read_ecg(header)
    assert caught.value.path == str(header)
    assert "found leads [MLII, V5]" in caught.value.reason
    assert "required: I, II, V1, V2, V3, V4, V5, V6" in caught.value.reason


def test_header_without_its_dat_is_rejected(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "lonely", np.array(ecg12), STANDARD_LEADS)
    (tmp_path / "lonely.dat").unlink()
    with pytest.raises(IngestError) as caught:
        read_ecg(header)
    assert caught.value.path == str(header)
    assert caught.value.reason == "signal file lonely.dat named in the header is missing"


def test_truncated_dat_is_rejected(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "cut", np.array(ecg12), STANDARD_LEADS)
    dat = tmp_path / "cut.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises(IngestError) as caught:
        read_ecg(header)
    assert caught.value.reason == "signal file cut.dat is truncated (5000 bytes, the header implies 120000)"


def test_nan_only_lead_is_rejected_by_name(tmp_path: Path, ecg12: np.ndarray) -> None:
    signal = np.array(ecg12)
    signal[7] = np.nan  # V2: written as the format's "invalid sample" value
    header = write_wfdb(tmp_path, "nanlead", signal, STANDARD_LEADS)
    with pytest.raises(IngestError) as caught:
        read_ecg(header)
    assert caught.value.path == str(header)
    assert caught.value.reason == "lead V2 has no valid samples (all NaN)"


def test_non_voltage_units_on_a_lead_are_rejected(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "mmhg", np.array(ecg12), STANDARD_LEADS)
    header.write_text(header.read_text().replace("/mV 16 0", "/mmHg 16 0", 1))
    with pytest.raises(IngestError, match="lead I has units 'mmHg', not a voltage"):
        read_ecg(header)


def test_signal_file_given_instead_of_header(tmp_path: Path, ecg12: np.ndarray) -> None:
    write_wfdb(tmp_path, "rec", np.array(ecg12), STANDARD_LEADS)
    with pytest.raises(IngestError, match="signal file of the WFDB record rec.hea"):
        read_ecg(tmp_path / "rec.dat")


def test_multi_segment_record_is_rejected(tmp_path: Path) -> None:
    header = tmp_path / "multi.hea"
    header.write_text("multi/2 2 360 7200\nmulti_1 3600\nmulti_2 3600\n")
    with pytest.raises(IngestError, match="multi-segment WFDB records are not supported"):
        read_ecg(header)


def test_record_without_signal_names_is_rejected_not_guessed_by_position(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "anon", np.array(ecg12), STANDARD_LEADS)
    lines = header.read_text().splitlines()
    # Drop the description (the lead name) from every signal line.
    header.write_text("\n".join([lines[0], *[" ".join(line.split()[:-1]) for line in lines[1:13]]]) + "\n")
    with pytest.raises(IngestError, match=r"found leads \[channel 1 \(unnamed\), channel 2 \(unnamed\)"):
        read_ecg(header)
