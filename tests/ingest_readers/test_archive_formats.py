"""The hospital-archive readers (GE MUSE, Philips, HL7 aECG XML; SCP-ECG) on real public files.

For each real file (tests/data/formats/MANIFEST.md): the device's measurements equal what the
file states, the statements are read, the signal agrees with an independent decoder
(`sierraecg` for Philips XLI, `ecgdatakit` for the others) within 1 uV, the eight acquired
leads give the twelve by the lead rule, and damaged files are refused with a reason.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import Measurements, Sex, SourceFormat
from ingest.errors import IngestError
from ingest.readers.detect import detect_format
from ingest.readers.read import read_ecg

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"
MUSE = FORMATS / "muse" / "muse_ecg1.xml"
PHILIPS_104 = FORMATS / "philips" / "3191723_ZZDEMOPTONLY_1-04_orig.xml"
PHILIPS_103 = FORMATS / "philips" / "129DYPRG.XML"
AECG = FORMATS / "aecg" / "Example_aECG.xml"
SCP_HUFFMAN = FORMATS / "scp" / "Example.scp"
SCP_RAW = FORMATS / "scp" / "demo.scp"
ONE_UV_IN_MV = 1e-3


def _max_difference_vs_ecgdatakit(path: Path) -> float:
    """max |ours - ecgdatakit| over every lead ecgdatakit returns, in mV."""
    import warnings

    from ecgdatakit.parsing.parser import FileParser

    ecg = read_ecg(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = FileParser.parse(str(path))
    worst = 0.0
    for lead in record.leads:
        assert lead.units == "mV"
        ours = ecg.signal[ecg.lead_names.index(lead.label)]
        theirs = np.asarray(lead.samples, dtype=np.float64)
        assert theirs.shape == ours.shape, lead.label
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
    print(f"{path.name}: max |ours - ecgdatakit| = {worst * 1000:.6f} uV over {len(record.leads)} leads")
    return worst


@pytest.mark.parametrize(("path", "source_format"), [
    (MUSE, SourceFormat.MUSE_XML), (PHILIPS_104, SourceFormat.PHILIPS_XML), (PHILIPS_103, SourceFormat.PHILIPS_XML),
    (AECG, SourceFormat.HL7_AECG), (SCP_HUFFMAN, SourceFormat.SCP_ECG), (SCP_RAW, SourceFormat.SCP_ECG),
])
def test_detected_by_content_whatever_the_name(tmp_path: Path, path: Path, source_format: SourceFormat) -> None:
    disguised = tmp_path / "ecg.bin"
    shutil.copy(path, disguised)
    assert detect_format(disguised) is source_format
    assert read_ecg(disguised).source_format is source_format


# --- GE MUSE ---------------------------------------------------------------------------------

def test_muse_measurements_statements_and_demographics() -> None:
    ecg = read_ecg(MUSE)
    # <RestingECGMeasurements> and <QRSTimesTypes><GlobalRR> of the file, as stated there.
    assert ecg.device_measurements == Measurements(hr_bpm=60, rr_ms=1000, pr_ms=158, qrs_ms=78, qt_ms=364, qtc_ms=364,
                                                   qtc_fridericia_ms=364, p_axis_deg=49, qrs_axis_deg=54, t_axis_deg=46)
    original = [s.text for s in ecg.device_statements if s.confirmed is False]
    confirmed = [s.text for s in ecg.device_statements if s.confirmed]
    assert original[:4] == ["Wide QRS rhythm", "Left axis deviation", "Non-specific intra-ventricular conduction block",
                            "Lateral infarct, age undetermined"]
    assert confirmed[0] == "Ventricular-paced rhythm" and confirmed[-1].startswith("Confirmed by")
    demographics = ecg.demographics
    assert (demographics.patient_id, demographics.sex, demographics.age_years) == ("JAX01234", Sex.MALE, 60)
    assert demographics.acquired_at.isoformat() == "2021-05-10T13:15:18"  # MUSE dates are MM-DD-YYYY
    assert ecg.device_name == "GE MAC55"


def test_muse_eight_acquired_leads_and_four_derived() -> None:
    ecg = read_ecg(MUSE)
    assert ecg.provenance["acquired_leads"] == "I,II,V1,V2,V3,V4,V5,V6"
    assert ecg.provenance["derived_leads"] == "III,aVR,aVL,aVF"
    signal = {name: ecg.signal[i] for i, name in enumerate(ecg.lead_names)}
    np.testing.assert_allclose(signal["III"], signal["II"] - signal["I"], atol=1e-6)
    assert (ecg.sampling_rate_hz, ecg.signal.shape) == (500.0, (12, 5000))
    assert ecg.median_beat.shape == (12, 600) and ecg.median_beat_rate_hz == 500.0


def test_muse_signal_matches_ecgdatakit_within_1_uv() -> None:
    assert _max_difference_vs_ecgdatakit(MUSE) < ONE_UV_IN_MV


def test_muse_lead_failing_its_crc_is_refused(tmp_path: Path) -> None:
    text = MUSE.read_text(encoding="latin-1")
    start = text.index("<WaveFormData>", text.index("<WaveformType>Rhythm")) + len("<WaveFormData>")
    start += len(text[start:]) - len(text[start:].lstrip())
    payload = text[start:start + 8]  # the first 6 bytes of lead I
    flipped = base64.b64encode(bytes([base64.b64decode(payload)[0] ^ 0x01]) + base64.b64decode(payload)[1:]).decode()
    damaged = tmp_path / "damaged.xml"
    damaged.write_text(text[:start] + text[start:].replace(payload, flipped, 1), encoding="latin-1")
    with pytest.raises(IngestError, match="rhythm lead I: data fails its CRC32 check"):
        read_ecg(damaged)


# --- Philips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [PHILIPS_104, PHILIPS_103])
def test_philips_xli_matches_sierraecg_within_1_uv(path: Path) -> None:
    import warnings

    from sierraecg import read_file

    ecg = read_ecg(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = read_file(str(path))
    worst = 0.0
    for lead in reference.leads:
        theirs = np.asarray(lead.samples, dtype=np.float64) * 5 / 1000  # both files: 5 uV per bit
        worst = max(worst, float(np.max(np.abs(ecg.signal[ecg.lead_names.index(lead.label)] - theirs))))
    print(f"{path.name}: max |ours - sierraecg| = {worst * 1000:.6f} uV over {len(reference.leads)} leads")
    assert len(reference.leads) == 12 and worst < ONE_UV_IN_MV
    assert _max_difference_vs_ecgdatakit(path) < ONE_UV_IN_MV


def test_philips_104_measurements_statements_and_demographics() -> None:
    ecg = read_ecg(PHILIPS_104)
    # <interpretation><globalmeasurements> of the file.
    assert ecg.device_measurements == Measurements(hr_bpm=84, rr_ms=714, pr_ms=144, qrs_ms=84, qt_ms=352, qtc_ms=417,
                                                   qtc_fridericia_ms=394, p_axis_deg=81, qrs_axis_deg=78, t_axis_deg=67)
    assert [(s.code, s.text, s.detail) for s in ecg.device_statements] == [
        ("SR", "SINUS RHYTHM", "normal P axis, V-rate 60-99"),
        ("LVHCNP", "PROBABLE LEFT VENTRICULAR HYPERTROPHY", "(RaVL+SV3)xQRSd >280"),
        ("STELVH", "ANTERIOR ST ELEVATION, PROBABLY DUE TO LVH", "ST >0.20 mV in V1-V4 & LVH"),
    ]
    assert all(s.confirmed is False for s in ecg.device_statements)  # status "Await confirmation"
    assert ecg.demographics.patient_name == "ZZDEMOPTONLY^ADULT"
    assert ecg.demographics.acquired_at.isoformat() == "2010-01-19T15:19:22"
    assert ecg.device_name == "Philips PageWriter Touch" and ecg.median_beat.shape[0] == 12


def test_philips_103_measurements() -> None:
    ecg = read_ecg(PHILIPS_103)
    # <interpretationmeasurements> of the file (sthorizaxis "Failed" is not one we read).
    assert ecg.device_measurements == Measurements(hr_bpm=41, pr_ms=151, qrs_ms=135, qt_ms=476, qtc_ms=393,
                                                   p_axis_deg=66, qrs_axis_deg=-21, t_axis_deg=59)
    assert ">>> Acute MI <<<" in ecg.device_statement_texts
    assert ecg.demographics.age_years == 50


def test_philips_damaged_xli_is_refused(tmp_path: Path) -> None:
    text = PHILIPS_103.read_text(encoding="utf-8")
    start = text.index(">", text.index("<parsedwaveforms")) + 1
    damaged = tmp_path / "damaged.xml"
    data = "".join(text[start:text.index("</parsedwaveforms>")].split())
    damaged.write_text(text[:start] + data[:4000] + text[text.index("</parsedwaveforms>"):], encoding="utf-8")
    with pytest.raises(IngestError, match="XLI waveforms"):
        read_ecg(damaged)


# --- HL7 aECG --------------------------------------------------------------------------------

def test_aecg_signal_annotations_and_measurements() -> None:
    ecg = read_ecg(AECG)
    assert (ecg.sampling_rate_hz, ecg.signal.shape) == (500.0, (12, 5000))
    assert "derived_leads" not in ecg.provenance  # all twelve leads are recorded in this file
    assert ecg.median_beat is not None and ecg.median_beat_rate_hz == 500.0
    # The device's annotation set states PR 148, QRS 120, QT 420, QTc 443 ms and axes 44/-61/86.
    assert ecg.device_measurements == Measurements(pr_ms=148, qrs_ms=120, qt_ms=420, qtc_ms=443,
                                                   p_axis_deg=44, qrs_axis_deg=-61, t_axis_deg=86)
    assert [(s.code, s.confirmed) for s in ecg.device_statements] == [("MDC_ECG_RHY_SINUS_RHY", False)]
    assert ecg.provenance["annotations"].startswith("3 annotation sets (1 by the device)")
    assert "MDC_ECG_BEAT x12" in ecg.provenance["annotations"]
    assert ecg.device_name == "Mortara Instrument, Inc. ELI250"


def test_aecg_inconsistent_age_and_birth_are_dropped() -> None:
    # The example states birth 1953-05-08 and a reported age of 46 on 2002-11-22 (49 by the dates).
    ecg = read_ecg(AECG)
    assert (ecg.demographics.birth_date, ecg.demographics.age_years) == (None, None)
    assert "stated age disagrees with the birth date" in ecg.provenance["demographics_notes"]
    assert ecg.demographics.patient_id == "SBJ-123" and ecg.demographics.sex is Sex.MALE


def test_aecg_signal_matches_ecgdatakit_within_1_uv() -> None:
    assert _max_difference_vs_ecgdatakit(AECG) < ONE_UV_IN_MV


# --- SCP-ECG ---------------------------------------------------------------------------------

def test_scp_huffman_signal_matches_ecgdatakit_within_1_uv() -> None:
    ecg = read_ecg(SCP_HUFFMAN)
    assert ecg.provenance["huffman"] == "default" and ecg.signal.shape == (12, 5000)
    assert _max_difference_vs_ecgdatakit(SCP_HUFFMAN) < ONE_UV_IN_MV


def test_scp_section_7_measurements_and_section_1_demographics() -> None:
    ecg = read_ecg(SCP_HUFFMAN)
    # Section 7 of the file (PR = QRS onset - P onset, QRS = offset - onset, QT = T offset - QRS
    # onset): the values the same recording's aECG states, which this conversion carries.
    assert ecg.device_measurements == Measurements(pr_ms=148, qrs_ms=120, qt_ms=420,
                                                   p_axis_deg=44, qrs_axis_deg=-61, t_axis_deg=86)
    assert (ecg.demographics.patient_id, ecg.demographics.sex) == ("SBJ-123", Sex.MALE)
    assert ecg.demographics.acquired_at.isoformat() == "2002-11-22T09:10:00"


def test_scp_uncompressed_eight_leads_at_1000_hz() -> None:
    ecg = read_ecg(SCP_RAW)
    assert ecg.provenance["huffman"] == "none" and (ecg.sampling_rate_hz, ecg.signal.shape) == (1000.0, (12, 10000))
    assert ecg.provenance["derived_leads"] == "III,aVR,aVL,aVF"
    # Independent of the reader: lead I's raw 16-bit samples, located with the pointer section.
    data = SCP_RAW.read_bytes()
    pointers = {int.from_bytes(data[o:o + 2], "little"): (int.from_bytes(data[o + 2:o + 6], "little"),
                                                          int.from_bytes(data[o + 6:o + 10], "little"))
                for o in range(22, 22 + 10 * 12, 10)}
    _length, index = pointers[6]
    section6 = data[index - 1 + 16:]
    avm_nv = int.from_bytes(section6[0:2], "little")
    raw = np.frombuffer(section6[6 + 2 * 8: 6 + 2 * 8 + 2 * 10000], dtype="<i2").astype(np.float64)
    first_lead = raw * avm_nv * 1e-6
    assert float(np.max(np.abs(ecg.signal[0] - first_lead))) < ONE_UV_IN_MV
    assert ecg.demographics.patient_id == "12-678-QW"


def test_scp_truncated_file_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.scp"
    cut.write_bytes(SCP_HUFFMAN.read_bytes()[:20000])
    with pytest.raises(IngestError, match="truncated SCP-ECG file"):
        read_ecg(cut)


# --- non-ECG inputs --------------------------------------------------------------------------

def _non_ecg_corpus(folder: Path) -> list[Path]:
    """XMLs that are none of our formats, images, random binary and text: none is an ECG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "order.xml": '<?xml version="1.0"?><Order><PatientID>1</PatientID><Test>ECG</Test></Order>',
        "cda.xml": '<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>ECG report</title>'
                   "</ClinicalDocument>",
        "drawing.svg": '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L10 10"/></svg>',
        "bomb.xml": '<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><RestingECG>&b;</RestingECG>',
        "broken_muse.xml": "<?xml version='1.0'?><RestingECG><PatientDemographics>",
        "empty_philips.xml": "<restingecgdata><documentinfo/></restingecgdata>",
        "notes.txt": "Patient seen in clinic. ECG: sinus rhythm, rate 72.\n",
        "results.csv": "lead,value\nI,0.1\nII,0.2\n",
        "hl7.txt": "MSH|^~\\&|ECG|HOSP|HIS|HOSP|20240301||ORU^R01|1|P|2.5.1\r",
    }
    paths = []
    for name, text in files.items():
        (folder / name).write_text(text)
        paths.append(folder / name)
    rng = np.random.default_rng(13)
    (folder / "random.bin").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "fake.scp").write_bytes(b"\x00" * 6 + b"\x00" * 10 + b"SCPECG" + rng.bytes(64))
    image = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    image.save(folder / "photo.png")
    image.save(folder / "photo.jpg")
    paths += [folder / "random.bin", folder / "fake.scp", folder / "photo.png", folder / "photo.jpg"]
    return paths


def test_no_non_ecg_file_is_accepted(tmp_path: Path) -> None:
    corpus = _non_ecg_corpus(tmp_path / "corpus")
    accepted = []
    for path in corpus:
        try:
            read_ecg(path)
            accepted.append(path.name)
        except IngestError as exc:
            assert exc.path == str(path) and exc.reason  # a reason that names the file
    print(f"non-ECG corpus: {len(corpus)} files, {len(accepted)} accepted")
    assert accepted == []


def test_billion_laughs_is_refused_without_expanding(tmp_path: Path) -> None:
    corpus = _non_ecg_corpus(tmp_path / "corpus")
    with pytest.raises(IngestError, match="refused for safety|not well-formed"):
        read_ecg(next(path for path in corpus if path.name == "bomb.xml"))


def test_statement_types_accept_plain_text() -> None:
    from ingest.ecg import Ecg

    ecg = Ecg(source_format=SourceFormat.DICOM, source_path="x", device_statements=["SINUS RHYTHM"])
    assert ecg.device_statements[0].text == "SINUS RHYTHM" and ecg.device_statements[0].confirmed is None


def test_measurement_non_values_are_none() -> None:
    from ingest.readers.archive_common import measurement

    assert measurement(999, "p_axis_deg") is None and measurement(0, "qrs_ms") is None
    assert measurement(-61, "qrs_axis_deg") == -61
