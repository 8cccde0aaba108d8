"""`ProtocolReader` as the worker uses it: batches of prepared ECGs, scans without a signal, a real ECG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ingest.ecg import Demographics, Ecg, Sex, SourceFormat
from ingest.interpretation import Interpreter
from ingest.measure.measured import GroundingFeatures
from ingest.prepare import PreparedEcg, prepare
from ingest.protocol import PROTOCOL_READER_VERSION, ProtocolReader, protocol_read
from ingest.protocol import vocabulary as v
from ingest.readers.read import read_ecg
from reports.verify import verify
from tests.protocol import builders as b


def _prepared(features: GroundingFeatures | None, sex: Sex = Sex.UNKNOWN) -> PreparedEcg:
    signal = None if features is None else np.zeros((12, 5000), dtype=np.float32)
    ecg = Ecg(source_format=SourceFormat.PDF if features is None else SourceFormat.WFDB, source_path="x",
              signal=signal, sampling_rate_hz=None if features is None else 500.0,
              demographics=Demographics(sex=sex))
    return PreparedEcg(ecg=ecg, model_signal=signal, image=Image.new("RGB", (20, 10)), features=features)


def test_is_an_interpreter_and_keeps_batch_order() -> None:
    reader = ProtocolReader()
    assert isinstance(reader, Interpreter)
    assert (reader.name, reader.version) == ("protocol-reader", PROTOCOL_READER_VERSION)
    batch = [_prepared(b.normal_features()), _prepared(None), _prepared(b.first_degree_block_and_inferior_stemi())]
    out = reader.interpret(batch)
    assert [o.parsed.labels[-1] for o in out] == [v.NORMAL_ECG, v.IMAGE_ONLY, "st depression (lateral)"]
    assert all(o.interpreter == "protocol-reader" and not o.is_demonstration for o in out)
    assert [o.modalities for o in out] == [["ecg"], [], ["ecg"]]
    assert out[0].raw_text == protocol_read(b.normal_features()).text


def test_image_only_scan_is_well_formed_and_left_to_a_cardiologist() -> None:
    out = ProtocolReader().interpret([_prepared(None)])[0]
    assert out.parsed.well_formed, out.parsed.problems
    assert out.parsed.labels == [v.IMAGE_ONLY]
    assert "Signal not available for measurement" in out.parsed.steps[1]
    assert "requires cardiologist reading" in out.parsed.narrative
    assert verify(out.parsed, None) == []


def test_sex_from_demographics_sets_the_qtc_limit() -> None:
    features = b.with_qt(b.normal_features(), 455.0)
    woman, man = ProtocolReader().interpret([_prepared(features, Sex.FEMALE), _prepared(features, Sex.MALE)])
    assert v.PROLONGED_QT not in woman.parsed.labels
    assert v.PROLONGED_QT in man.parsed.labels


def test_one_unreadable_ecg_does_not_fail_the_batch() -> None:
    broken = b.normal_features()
    broken.leads["V1"] = None  # type: ignore[assignment]  # what a corrupt stored feature set could hold
    out = ProtocolReader().interpret([_prepared(broken), _prepared(b.normal_features())])
    assert out[0].parsed.labels == [v.READ_FAILED] and out[0].parsed.well_formed
    assert out[1].parsed.labels == [v.SINUS_RHYTHM, v.NORMAL_ECG]


def test_real_ecg_read_end_to_end(mortara_dicom_path: Path) -> None:
    """The Mortara ELI 250 record: measured by ingest.measure.features, read, and consistent with itself."""
    prepared = prepare(read_ecg(mortara_dicom_path))
    out = ProtocolReader().interpret([prepared])[0]
    assert out.parsed.well_formed, out.parsed.problems
    assert out.parsed.labels and set(out.parsed.labels) <= set(v.LABELS)
    hr = round(prepared.features.global_.hr_bpm)
    assert f"Heart rate {hr} bpm" in out.parsed.steps[1]
    # The device's own statements on this record are "RITMO SINUSALE", "ECG NORMALE".
    assert out.parsed.labels == [v.SINUS_RHYTHM, v.NORMAL_ECG]
    assert verify(out.parsed, prepared.features) == []
