"""A recording larger than hearts make it: its gain is suspect, and what rests on amplitudes is not read.

Two PTB-XL records of a challenge release (data/real/ptbxl/HR00599 and HR20715) carry headers that say
200 units/mV where their originals' scale is 1000: every wave is five times its size. Read as stated,
HR20715's leads were all "too noisy" (the absolute noise limit is a heart's scale), so nothing was measured,
and once measured its left ventricular hypertrophy's ST segments passed for an anterior ST elevation.
"""

from __future__ import annotations

from ingest.measure.features import IMPLAUSIBLE_MEDIAN_QRS_MV, measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.run import model_window
from reports.triage import measured_findings
from tests.protocol import builders as b


def _suspect(features):
    return b.with_voltages(features, median_lead_qrs_mv=5.7, gain_suspect=True)


def test_amplitude_findings_are_not_read_at_a_suspect_gain():
    tall_st = b.with_st(b.normal_features(), {"V1": 0.6, "V2": 0.8, "V3": 0.7})
    assert any(label in v.ST_ELEVATION_LABELS for label in protocol_read(tall_st).labels)
    assert any(f.finding in v.ST_ELEVATION_LABELS for f in measured_findings(tall_st))

    read = protocol_read(_suspect(tall_st))
    assert not any(label in v.ST_ELEVATION_LABELS for label in read.labels)
    assert v.NORMAL_ECG not in read.labels  # ST segments and voltages were not read, so not "normal"
    assert v.SINUS_RHYTHM in read.labels  # rate, rhythm, intervals and axis do not depend on the gain
    assert "The median lead's QRS spans 5.7 mV, more than hearts make" in read.steps[1]
    for step in (3, 4, 5):
        assert "not read: the recording's gain is suspect" in read.steps[step], step
    assert "QTc" in read.steps[5]
    assert not any(f.finding in v.ST_ELEVATION_LABELS for f in measured_findings(_suspect(tall_st)))


def test_a_five_times_gain_is_measured_and_flagged_on_real_records():
    references = {ref.key: ref for ref in load_references(DEFAULT_DATA_DIR, "all")}
    for key in ("ptbxl/HR20715", "ptbxl/HR00599"):
        signal, fs, ecg = model_window(references[key], DEFAULT_DATA_DIR)
        features = measure(signal, fs)
        assert features.voltages.gain_suspect, key
        assert features.voltages.median_lead_qrs_mv > IMPLAUSIBLE_MEDIAN_QRS_MV
        assert len(features.leads_measured) == 12, (key, features.notes)  # HR20715: none before
        read = protocol_read(features, ecg.demographics)
        assert read.labels[0] in (v.SINUS_RHYTHM, v.SINUS_BRADYCARDIA), (key, read.labels)
        assert not {v.LVH, v.LEFT_ATRIAL_ABNORMALITY, v.PEAKED_T_WAVES} & set(read.labels), (key, read.labels)
        assert not v.is_critical(read.labels)

        # The same signal at its originals' scale is a heart's size, and read in full.
        at_scale = measure(signal / 5.0, fs)
        assert not at_scale.voltages.gain_suspect
        assert "not read: the recording's gain is suspect" not in protocol_read(at_scale).text


def test_no_record_at_a_hearts_scale_is_flagged():
    """Of the committed set, only the two five-times records are flagged (the largest other: a ventricular
    tachycardia's median lead at 3.8 mV)."""
    flagged = []
    for reference in load_references(DEFAULT_DATA_DIR, "all"):
        signal, fs, _ecg = model_window(reference, DEFAULT_DATA_DIR)
        if measure(signal, fs).voltages.gain_suspect:
            flagged.append(reference.key)
    assert sorted(flagged) == ["ptbxl/HR00599", "ptbxl/HR20715"]


def test_the_recording_flags_say_the_gain_is_suspect():
    from reports.verify import recording_flags

    assert recording_flags(b.normal_features()) == []
    assert recording_flags(_suspect(b.normal_features())) == [
        "the recording's gain is suspect (the median lead's QRS spans 5.7 mV, more than hearts make): "
        "amplitudes were not read"]
