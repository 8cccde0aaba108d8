"""No QT where the T end lies in the next beat's waves (`ingest.measure.features.T_END_BEFORE_NEXT_QRS_MS`).

A T wave ends before the next beat's P wave begins, at least 120 ms (the shortest normal PR) before the next
QRS. chapman_shaoxing/JS00005 (dev), an atrial flutter at 162 /min, measured a QT of 316 ms, 54 ms before the
next QRS, against its GE MUSE device's 252: its T end was on the next flutter wave. ningbo/JS20012 (test), a
sinus tachycardia at 121 /min, measured 408 ms, 88 ms before the next QRS, on the next P wave, and was called
"prolonged qt". A record at a usual rate keeps its QT within a few ms of its device's.
"""

from __future__ import annotations

import pytest

from ingest.measure.features import T_END_BEFORE_NEXT_QRS_MS, _t_end_in_next_beat, measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.run import model_window


def _measured(key: str):
    reference = next(ref for ref in load_references(DEFAULT_DATA_DIR) if ref.key == key)
    signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
    return reference, measure(signal, fs, recorded_rate_hz=ecg.sampling_rate_hz), ecg


@pytest.mark.parametrize(("qt_ms", "rr_ms", "in_next_beat"), [
    (400, 1000, False),  # 60 /min: 600 ms of T-P and PR
    (316, 370, True),  # JS00005's flutter
    (380, 500, False),  # exactly the shortest PR left: still a T end
    (382, 500, True),
])
def test_the_limit_is_the_shortest_normal_pr_before_the_next_qrs(qt_ms, rr_ms, in_next_beat):
    fs = 500.0
    assert T_END_BEFORE_NEXT_QRS_MS == 120.0
    assert _t_end_in_next_beat(round(qt_ms * fs / 1000.0), rr_ms / 1000.0, fs) is in_next_beat


@pytest.mark.parametrize("key", ["chapman_shaoxing/JS00005", "ningbo/JS20012"])
def test_a_t_end_found_in_the_next_beat_claims_no_qt(key):
    _, features, ecg = _measured(key)
    assert features.global_.hr_bpm > 120
    assert features.global_.qt_ms is None and features.global_.qtc_ms is None
    assert any(note.startswith("T end not measured") and "next QRS" in note for note in features.notes), \
        features.notes
    assert v.PROLONGED_QT not in protocol_read(features, ecg.demographics).labels


def test_a_record_at_a_usual_rate_keeps_its_qt_near_the_device():
    reference, features, _ = _measured("chapman_shaoxing/JS00008")  # sinus rhythm at 63 /min
    assert features.global_.qt_ms is not None
    assert abs(features.global_.qt_ms - reference.device.qt_ms) <= 12
