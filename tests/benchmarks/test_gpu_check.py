"""benchmarks/gpu_check.py prepared on CPU: the tiny model through the same code the 8B check runs.

No timing is asserted; what is asserted is that every measurement of the grid runs and lands in
the table, that the budget skips what would not fit, and that the 8B configuration it builds on a
GPU has the released model's size and input contract.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from benchmarks import gpu_check
from model.input_contract import RELEASE_CONTRACT, contract_for_checkpoint


def test_the_tiny_grid_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    rows = gpu_check.main(["--tiny", "--engines", "hf", "--batch-sizes", "1", "2", "--hf-tokens", "2",
                           "--report-tokens", "4"])
    assert [(r.engine, r.modality, r.batch) for r in rows] == [
        ("hf", modality, batch) for modality in gpu_check.MODALITIES for batch in (1, 2)]
    assert all(r.reports_per_s > 0 and r.tokens_per_s > 0 and r.seconds > 0 for r in rows)
    out = capsys.readouterr().out
    assert "GPU check on CPU" in out and "tiny model, release input contract" in out
    assert out.count("\nhf ") == 6


def test_the_budget_skips_what_does_not_fit(tmp_path: Path) -> None:
    folder = gpu_check.write_checkpoint(tmp_path / "tiny", tiny=True)
    args = argparse.Namespace(tiny=True, batch_sizes=[1], hf_tokens=2, report_tokens=4)
    rows = gpu_check.run_hf(args, folder, deadline=time.monotonic() - 1)
    assert [r.note for r in rows] == ["skipped: budget"] * 3


def test_the_8b_checkpoint_is_the_release_shape(tmp_path: Path) -> None:
    import json

    folder = gpu_check.write_checkpoint(tmp_path / "8b", tiny=False)
    config = json.loads((folder / "config.json").read_text())
    text = config["text_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_key_value_heads"], text["vocab_size"]) == \
        (4096, 36, 8, 151936)
    assert config["vision_config"]["depth"] == 27 and config["ecg_config"]["width"] == 768
    assert contract_for_checkpoint(folder) == RELEASE_CONTRACT
    assert not list(folder.glob("*.safetensors"))  # vLLM fills random weights in (load_format="dummy")


def test_cpu_preparation_overlaps_decode(tmp_path: Path) -> None:
    """The pipeline of the overlap row, with the tiny transformers model as the 'GPU'."""
    folder = gpu_check.write_checkpoint(tmp_path / "tiny", tiny=True)
    model, processor = gpu_check.build_hf(folder, tiny=True)

    def generate(requests, tokens):
        _, seconds, made = gpu_check.hf_generate(model, processor, requests, tokens)
        return seconds, made

    args = argparse.Namespace(batch_sizes=[1, 2], overlap_batches=2, workers=1, report_tokens=2)
    [row] = gpu_check.overlap(generate, args, deadline=time.monotonic() + 600)
    assert (row.engine, row.batch) == ("vllm+cpu", 2) and row.reports_per_s > 0
    assert "over 2 batches of real files" in row.note and "GPU busy" in row.note and "CPU alone" in row.note
