"""The vLLM engine against the transformers engine on the tiny ECG-R1 (float32, CPU):
greedy outputs must be token-identical in every modality case, alone and batched."""

from __future__ import annotations

import pytest

from tests.model_vllm.conftest import MAX_NEW_TOKENS, ecg_page, ecg_signal

pytestmark = pytest.mark.vllm


def _request(order, signal_seed=0, image_seed=0, page=(700, 500)):
    from model.engines import GenerationRequest

    return GenerationRequest(signal=ecg_signal(signal_seed) if "ecg" in order else None,
                             image=ecg_page(*page, seed=image_seed) if "image" in order else None,
                             order=order)


CASES = {
    "signal+image": ("ecg", "image"),
    "image+signal": ("image", "ecg"),  # ECG after the image: its text positions follow the image grid
    "signal only": ("ecg",),
    "image only": ("image",),
}


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_outputs_are_token_identical(vllm_engine, hf_engine, case):
    request = _request(CASES[case])
    [expected] = hf_engine.generate([request])
    [got] = vllm_engine.generate([request])
    assert got.token_ids == expected.token_ids
    assert got.text == expected.text and got.finished == expected.finished
    assert len(got.token_ids) == MAX_NEW_TOKENS or got.finished


def test_a_mixed_batch_equals_the_transformers_engine(vllm_engine, hf_engine):
    """Different signals, pages (one far above the 768-token cap) and modality mixes in one batch."""
    requests = [
        _request(("ecg", "image"), signal_seed=1, image_seed=1),
        _request(("ecg",), signal_seed=2),
        _request(("image",), image_seed=3, page=(2200, 1700)),
        _request(("ecg", "image"), signal_seed=4, image_seed=4, page=(2200, 1700)),
        _request(("ecg",), signal_seed=5),
    ]
    got = vllm_engine.generate(requests)
    expected = hf_engine.generate(requests)
    assert [r.token_ids for r in got] == [r.token_ids for r in expected]


def test_the_signal_changes_the_vllm_output(vllm_engine):
    """The ECG embeddings reach the language model: different signals, different text; adding
    the signal to an image changes the text. (With an image present, the tiny random model's
    small ECG embeddings rarely change the greedy tokens, so signals are compared alone.)"""
    outputs = vllm_engine.generate([_request(("ecg",), signal_seed=6), _request(("ecg",), signal_seed=7),
                                    _request(("ecg", "image"), signal_seed=6), _request(("image",))])
    assert len({tuple(r.token_ids) for r in outputs}) == 4


def test_the_vllm_engine_interprets_prepared_ecgs(vllm_engine, hf_engine):
    """The Interpreter contract: one Interpretation per prepared ECG, in order, equal to hf's."""
    from ingest.ecg import STANDARD_LEADS, Ecg, SourceFormat
    from ingest.interpretation import Interpreter
    from ingest.prepare import PreparedEcg

    def prepared(signal, image):
        ecg = Ecg(source_format=SourceFormat.WFDB, source_path="/data/x", signal=signal,
                  sampling_rate_hz=500.0 if signal is not None else None,
                  lead_names=list(STANDARD_LEADS) if signal is not None else [])
        return PreparedEcg(ecg=ecg, model_signal=signal, image=image, features=None)

    batch = [prepared(ecg_signal(8), ecg_page(700, 500)), prepared(None, ecg_page(640, 480, seed=9)),
             prepared(None, None)]
    assert isinstance(vllm_engine, Interpreter)
    got, expected = vllm_engine.interpret(batch), hf_engine.interpret(batch)
    assert [i.raw_text for i in got] == [i.raw_text for i in expected]
    assert [i.modalities for i in got] == [["ecg", "image"], ["image"], []]
    assert got[2].parsed.problems[0] == "no signal or image to interpret"
    assert all(i.interpreter == "ecg-r1" and not i.is_demonstration for i in got)
