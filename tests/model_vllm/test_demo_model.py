"""The shipped demonstration model (model/demo, written by `ecg-worklist train demo`) under vLLM:
it loads (32-pixel image patches, its own tokenizer), says it is a demonstration, and decodes
greedily exactly as the transformers engine does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model_vllm.conftest import VLLM_OPTIONS, ecg_page, ecg_signal

pytestmark = pytest.mark.vllm

DEMO = Path(__file__).resolve().parents[2] / "model" / "demo"
TOKENS = 48


@pytest.mark.skipif(not (DEMO / "model.safetensors").is_file(), reason="model/demo not produced yet")
def test_demo_model_loads_in_vllm_and_matches_the_hf_engine():
    import torch

    from model.engines import GenerationRequest, load_engine

    requests = [GenerationRequest(signal=ecg_signal(21), image=ecg_page(1056, 640)),
                GenerationRequest(signal=ecg_signal(22)), GenerationRequest(image=ecg_page(1056, 640, seed=3))]
    hf = load_engine("hf", DEMO, max_new_tokens=TOKENS, device="cpu", dtype=torch.float32)
    engine = load_engine("vllm", DEMO, max_new_tokens=TOKENS, **VLLM_OPTIONS)
    try:
        assert engine.is_demonstration
        got = engine.generate(requests)
    finally:
        engine.close()
    assert [r.token_ids for r in got] == [r.token_ids for r in hf.generate(requests)]
