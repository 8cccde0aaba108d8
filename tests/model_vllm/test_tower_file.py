"""A checkpoint whose weights lack the ECG tower (the release ships it as a separate file):
the vLLM engine takes it from `ecg_tower_path`, like the transformers loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.model_vllm.conftest import MAX_NEW_TOKENS, VLLM_OPTIONS, ecg_page, ecg_signal

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def split_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny checkpoint without `model.ecg_tower.*`, and the tower alone in a file beside it
    (outside the folder: vLLM reads every *.safetensors of a folder without an index)."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("split")
    folder = root / "checkpoint"
    shutil.copytree(tiny_checkpoint, folder)
    weights = load_file(str(folder / "model.safetensors"))
    tower = {k: v for k, v in weights.items() if k.startswith("model.ecg_tower.")}
    assert tower, "the tiny checkpoint should carry its tower"
    save_file({k: v for k, v in weights.items() if k not in tower}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    tower_file = root / "ecg_tower.safetensors"
    save_file({k.removeprefix("model.ecg_tower."): v.contiguous() for k, v in tower.items()}, str(tower_file))
    return folder, tower_file


def test_the_tower_comes_from_its_own_file(split_checkpoint, hf_engine):
    from model.engines import GenerationRequest, load_engine

    folder, tower_file = split_checkpoint
    requests = [GenerationRequest(signal=ecg_signal(11)), GenerationRequest(signal=ecg_signal(12), image=ecg_page(640, 480))]
    engine = load_engine("vllm", folder, ecg_tower_path=tower_file, max_new_tokens=MAX_NEW_TOKENS,
                         **VLLM_OPTIONS)
    try:
        got = engine.generate(requests)
    finally:
        engine.close()
    # Same weights as the complete tiny checkpoint the transformers engine serves.
    assert [r.token_ids for r in got] == [r.token_ids for r in hf_engine.generate(requests)]
