"""Fixtures of the vLLM tests, run with .venv-vllm/bin/python (see scripts/vllm-env.sh).

Without vLLM installed these tests are skipped on a developer's machine but FAIL under
CI=true (scripts/test.sh builds .venv-vllm and runs them there), like the service tests.
One vLLM engine serves the whole session: starting one takes ~20-40 s on a CPU.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MAX_NEW_TOKENS = 24  # long enough for outputs to diverge when anything differs
# The tiny model needs ~1.5 KB of KV cache per token: 256 MiB is plenty (the default, a share
# of RAM, would take gigabytes from a machine that runs other tests).
VLLM_OPTIONS = {"kv_cache_memory_bytes": 256 << 20}


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is not None:
        return
    message = "vLLM is not installed in this interpreter (run scripts/vllm-env.sh, then .venv-vllm/bin/python -m pytest)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true: the vLLM tests must run")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _vllm_installed() -> None:
    require_vllm()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ECG-R1, saved as a release-shaped checkpoint (config, safetensors, tokenizer)."""
    require_vllm()
    from model.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-ecg-r1"), seed=0)


@pytest.fixture(scope="session")
def vllm_engine(tiny_checkpoint: Path) -> Iterator:
    from model.engines import load_engine

    engine = load_engine("vllm", tiny_checkpoint, max_new_tokens=MAX_NEW_TOKENS,
                         **VLLM_OPTIONS)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def hf_engine(tiny_checkpoint: Path):
    """The transformers engine on the same checkpoint: float32 on the CPU, as the vLLM engine here."""
    import torch

    from model.engines import load_engine

    return load_engine("hf", tiny_checkpoint, max_new_tokens=MAX_NEW_TOKENS, batch_size=8, device="cpu",
                       dtype=torch.float32)


def ecg_signal(seed: int) -> np.ndarray:
    """A (12, 5000) 500 Hz signal: per lead a sine whose rate and amplitude depend on the seed, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500.0
    rates, amplitudes = rng.uniform(0.8, 3.0, size=(12, 1)), rng.uniform(0.2, 2.0, size=(12, 1))
    leads = amplitudes * np.sin(2 * np.pi * rates * t)
    return (leads + rng.normal(0.0, 0.1, size=leads.shape)).astype(np.float32)


def ecg_page(width: int, height: int, seed: int = 0) -> Image.Image:
    """A paper-coloured page with random dark strokes; sizes not multiples of 32 force a resize."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), 240, dtype=np.uint8)
    page[rng.random((height, width)) < 0.05] = (30, 30, 30)
    return Image.fromarray(page)
