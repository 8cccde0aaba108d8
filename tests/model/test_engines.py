"""The transformers engine: every modality case, batching == one by one, the Interpreter contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.ecg import STANDARD_LEADS, Ecg, SourceFormat
from ingest.interpretation import Interpreter
from ingest.prepare import PreparedEcg
from ingest.report_format import format_output
from model.engines import GenerationRequest, load_engine
from model.engines.base import DEMONSTRATION_BANNER, Engine, GenerationResult, cut_at_stop
from model.engines.hf_engine import HfEngine
from model.tiny import save_tiny_model
from tests.model.conftest import ecg_like_image

MAX_NEW = 12


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> HfEngine:
    return load_engine("hf", tiny_checkpoint, max_new_tokens=MAX_NEW, batch_size=4, device="cpu")


def _prepared(signal=None, image=None) -> PreparedEcg:
    ecg = Ecg(source_format=SourceFormat.WFDB if signal is not None else SourceFormat.PDF,
              source_path="/data/x", signal=signal, sampling_rate_hz=500.0 if signal is not None else None,
              lead_names=list(STANDARD_LEADS) if signal is not None else [])
    return PreparedEcg(ecg=ecg, model_signal=signal, image=image, features=None)


def test_engine_is_an_interpreter(engine):
    assert isinstance(engine, Interpreter)
    assert engine.name == "ecg-r1" and not engine.is_demonstration
    assert str(engine.device) == "cpu"


@pytest.mark.parametrize("case", ["both", "signal", "image"])
def test_each_modality_case_generates(engine, signal, small_image, case):
    request = GenerationRequest(signal=signal if case != "image" else None,
                                image=small_image if case != "signal" else None)
    [result] = engine.generate([request])
    assert 0 < len(result.token_ids) <= MAX_NEW
    assert result.finished == (len(result.token_ids) < MAX_NEW)
    assert not set(result.token_ids) & set(engine.stop_ids)
    assert result.text == engine.processor.decode(result.token_ids)


def test_inputs_change_the_output(engine, signal, other_signal, small_image):
    a, b, c = engine.generate([GenerationRequest(signal=signal), GenerationRequest(signal=other_signal),
                               GenerationRequest(image=small_image)])
    assert len({tuple(a.token_ids), tuple(b.token_ids), tuple(c.token_ids)}) == 3


def test_batched_generation_equals_one_by_one(engine, signal, other_signal, small_image):
    """Left padding and masks right: prompts of different lengths in one batch give the same tokens."""
    requests = [
        GenerationRequest(signal=signal, image=small_image),
        GenerationRequest(signal=other_signal),
        GenerationRequest(image=ecg_like_image(160, 96, seed=5)),
        GenerationRequest(signal=other_signal, image=ecg_like_image(200, 300, seed=6), order=("image", "ecg")),
        GenerationRequest(signal=signal),  # a second chunk (batch_size 4)
    ]
    batched = engine.generate(requests)
    single = [engine.generate([r])[0] for r in requests]
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]


def test_interpret_prepared_ecgs(engine, signal, small_image):
    batch = [_prepared(signal, small_image), _prepared(None, small_image), _prepared(None, None)]
    out = engine.interpret(batch)
    assert [i.modalities for i in out] == [["ecg", "image"], ["image"], []]
    assert all(i.interpreter == "ecg-r1" and not i.is_demonstration for i in out)
    expected = engine.generate([GenerationRequest(signal=signal, image=small_image)])[0].text
    assert out[0].raw_text == expected  # verbatim
    assert "no <think> section" in out[0].parsed.problems  # random weights: malformed, flagged, kept
    assert out[2].raw_text == "" and out[2].parsed.problems[0] == "no signal or image to interpret"


class _CannedEngine(Engine):
    """An engine that says fixed text: checks the Interpretation wrapping, not generation."""

    def __init__(self, text: str, demonstration: bool) -> None:
        self.text, self.version, self.is_demonstration = text, "canned", demonstration

    def generate(self, requests):
        return [GenerationResult(token_ids=[1], text=self.text, finished=True) for _ in requests]


def test_well_formed_output_is_parsed(signal):
    text = format_output({n: f"step {n}" for n in range(1, 7)}, "Sinus rhythm.", ["sinus rhythm", "LVH"])
    [interpretation] = _CannedEngine(text, demonstration=False).interpret([_prepared(signal)])
    assert interpretation.raw_text == text
    assert interpretation.parsed.well_formed and interpretation.parsed.labels == ["sinus rhythm", "LVH"]


def test_demonstration_model_is_labelled(signal):
    text = format_output({n: "x" for n in range(1, 7)}, "Normal ECG.", ["normal ECG"])
    [interpretation] = _CannedEngine(text, demonstration=True).interpret([_prepared(signal)])
    assert interpretation.is_demonstration
    assert interpretation.raw_text.startswith(DEMONSTRATION_BANNER)
    assert interpretation.parsed.narrative.startswith(DEMONSTRATION_BANNER)
    assert interpretation.parsed.labels == ["normal ECG"] and interpretation.parsed.well_formed


def test_demonstration_flag_comes_from_the_checkpoint(tmp_path, signal):
    folder = save_tiny_model(tmp_path / "demo", seed=0, demonstration=True)
    demo = load_engine("hf", folder, max_new_tokens=4)
    assert demo.is_demonstration
    [interpretation] = demo.interpret([_prepared(signal)])
    assert interpretation.is_demonstration and DEMONSTRATION_BANNER in interpretation.raw_text


def test_cut_at_stop():
    assert cut_at_stop([5, 6, 2, 0, 0], [2, 3]) == ([5, 6], True)
    assert cut_at_stop([5, 6, 7], [2]) == ([5, 6, 7], False)


def test_unknown_engine_kind(tiny_checkpoint):
    with pytest.raises(ValueError, match="unknown engine kind"):
        load_engine("onnx", tiny_checkpoint)


def test_checkpoint_sampling_settings_do_not_leak_into_greedy_decoding(tmp_path, tiny_checkpoint, engine, signal):
    """Qwen3-VL checkpoints ship sampling settings in generation_config.json; the engine stays greedy."""
    import json
    import shutil

    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "sampling"))
    settings = json.loads((folder / "generation_config.json").read_text())
    settings.update(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.5)
    (folder / "generation_config.json").write_text(json.dumps(settings))
    sampling = load_engine("hf", folder, max_new_tokens=MAX_NEW, device="cpu")
    request = [GenerationRequest(signal=signal)]
    assert sampling.generate(request)[0].token_ids == engine.generate(request)[0].token_ids
