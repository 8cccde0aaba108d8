"""The written-rate probe: the language model's state is taken where it writes the heart rate, and scored."""

from __future__ import annotations

from pathlib import Path

from ingest.prepare import prepare
from ingest.readers.read import read_ecg
from ingest.validation.references import load_references
from model.engines.base import GenerationRequest
from model.engines.hf_engine import HfEngine
from training.rate_probe import probe_written_rate, rate_state

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "data" / "real"


def test_the_state_taken_is_the_one_that_wrote_the_rates_first_digit() -> None:
    engine = HfEngine.from_pretrained(REPO / "model" / "demo", device="cpu", max_new_tokens=256)
    for reference in load_references(REAL, split="test")[:3]:
        prepared = prepare(read_ecg(reference.file(REAL)))
        found = rate_state(engine, GenerationRequest(signal=prepared.model_signal, image=prepared.page()))
        assert found is not None  # the demo model states a rate in every reading
        assert found.state.shape == (engine.model.config.text_config.hidden_size,)
        # Greedy decoding wrote the digit this state's logits put first: the position is the right one.
        assert engine.processor.decode([found.first_token]) == str(int(found.written_bpm))[0]


def test_the_probe_is_fitted_on_dev_and_scored_on_test_beside_the_written_rate() -> None:
    report = probe_written_rate(REPO / "model" / "demo", REAL, limit=6)
    assert report.train_records == 6 and report.test_records == 6
    assert report.written_distinct >= 1 and 0.0 <= report.probe_within_10_bpm <= 1.0
    assert report.written_mae_bpm >= 0 and report.mean_only_mae_bpm > 0
    assert any("held-out real records" in line for line in report.lines())
