"""RL with the policy sharded by FSDP2 (`shard = "fsdp"`), two CPU ranks over gloo under torchrun:
the global token-level mean, one sharded update against the unsharded one on the same completions,
sampling on the sharded policy, and `torchrun -m training.rl` end to end on the tiny model.

The measurements come from tests/training/fsdp_worker.py (what each check does is written there)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from model.checkpoint import load_ecg_r1
from training.config import CONFIG_DIR, load_rl_config, load_sft_config
from training.export import export_checkpoint
from training.rows import read_rows
from training.sft import build_tiny, corpus_texts

ROOT = Path(__file__).resolve().parents[2]


def torchrun(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Two CPU processes (gloo); fails the test with their output if they fail."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="module")
def measured(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("fsdp-worker")
    torchrun(ROOT / "tests" / "training" / "fsdp_worker.py", corpus, out)
    return json.loads((out / "rank0.json").read_text())


def test_global_token_mean_with_unequal_token_counts_per_rank(measured: dict) -> None:
    # 3 kept tokens on rank 0, 1 on rank 1: the sharded gradient is the 4-token mean's ...
    assert measured["world_size"] == 2
    assert measured["token_mean_max_diff"] < 1e-6
    # ... which averaging the two ranks' own token means would miss by far
    assert measured["naive_mean_max_diff"] > 0.1


def test_a_sharded_update_equals_the_unsharded_one_on_the_same_completions(measured: dict) -> None:
    # each rank stores half the parameters (the shards are rows of each tensor, so about half)
    assert measured["local_numel"] == pytest.approx(measured["full_numel"] / 2, rel=0.01)
    for name in ("sgd", "sgd_clipped", "adamw"):
        assert measured[f"{name}_loss"] == pytest.approx(measured[f"{name}_reference_loss"], rel=1e-5)
    # SGD at lr 1: the parameter change is the gradient; equal to float32 rounding: a relative 1e-5 of
    # the change, plus one unit in the last place of the largest parameter (a change is the difference
    # of two float32 parameters; at a magnitude of 0.5-1 that unit is 6e-8, the clipped step's whole
    # change 5e-3, so a step off by a per-rank norm, a third or more, is far outside it).
    float32_epsilon = 2.0 ** -23
    for name in ("sgd", "sgd_clipped"):
        rounding = float32_epsilon * measured[f"{name}_max_parameter"]
        assert measured[f"{name}_max_diff"] <= 1e-5 * measured[f"{name}_max_change"] + rounding
    # AdamW's first step is lr * g / (|g| + eps): where g is near eps, rounding moves it slightly
    assert measured["adamw_max_diff"] < 1e-2 * measured["adamw_max_change"]


def test_the_sharded_policy_samples_as_the_unsharded_one(measured: dict) -> None:
    # the ranks generate different numbers of tokens with the weights gathered, then reshard
    assert measured["samples_match_unsharded"]
    assert measured["resharded_after_sampling"]


def test_torchrun_rl_with_fsdp_trains_and_exports_a_loadable_policy(corpus: Path, tmp_path: Path) -> None:
    rows = list(read_rows(corpus, split="train"))
    model, processor = build_tiny(corpus_texts(rows), load_sft_config("sft-tiny-cpu").tiny)
    export_checkpoint(model, processor, tmp_path / "policy")
    values = tomllib.loads((CONFIG_DIR / "rl-tiny-cpu.toml").read_text())
    # Two steps of one prompt x 2 completions per rank; a random model never stops within 32
    # tokens, so overlong filtering would leave no token to train on: off here.
    values.update(shard="fsdp", max_steps=2, prompts_per_step=1, num_generations=2, max_completion_length=32,
                  rollout_batch_size=2, micro_batch_size=2, dynamic_sampling=False, overlong_filtering=False)
    config = tmp_path / "rl-fsdp.toml"
    config.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))

    done = torchrun("-m", "training.rl", "--config", config, "--corpus", corpus, "--policy", tmp_path / "policy",
                    "--out", tmp_path / "rl")
    held = re.findall(r"FSDP rank (\d)/2 holds (\d+) of (\d+) parameter elements", done.stderr)
    assert sorted(rank for rank, _, _ in held) == ["0", "1"]
    for _, local, full in held:
        assert int(local) == pytest.approx(int(full) / 2, rel=0.01)
    assert int(held[0][1]) + int(held[1][1]) == int(held[0][2])
    log = json.loads((tmp_path / "rl" / "rl_log.json").read_text())
    assert [s["step"] for s in log] == [1, 2] and all(s["loss"] is not None for s in log)
    exported = load_ecg_r1(tmp_path / "rl")  # the full state dict gathered on rank 0, every key present
    assert sum(p.numel() for p in exported.parameters()) == int(held[0][2])


def test_the_8b_config_shards_and_the_tiny_one_does_not() -> None:
    gpu, tiny = load_rl_config("rl-8b-gpu"), load_rl_config("rl-tiny-cpu")
    assert (gpu.shard, gpu.fsdp_param_dtype, gpu.fsdp_reduce_dtype) == ("fsdp", "bfloat16", "float32")
    assert tiny.shard == "none" and tiny.fsdp_param_dtype == "float32"
