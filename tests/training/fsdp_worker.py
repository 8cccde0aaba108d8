"""One rank of the FSDP2 checks in test_rl_sharded.py, started by torchrun (gloo, CPU):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/training/fsdp_worker.py CORPUS OUT

1. Token mean: a one-layer model under `fully_shard`, 3 kept tokens on rank 0 and 1 on rank 1;
   the sharded gradient against the single-process gradient of the mean over all 4 tokens.
2. Update: the tiny ECG-R1 updated by `sharded_policy_update` over two ranks holding different
   completions (different token counts and micro-batch counts), against `policy_update` on one
   unsharded copy over the union: with SGD at lr 1 and no clipping (the parameter change is the
   gradient itself, so any scale error shows), with SGD and an active clip (the norm must be
   taken over every rank's shards) and with AdamW as training runs it.
3. Sampling: `HfSampler` inside `full_weights`, the ranks generating different numbers of
   tokens and sampling a different number of times, against the same sampler on an unsharded copy.
Rank 0 writes the measurements to OUT/rank0.json; the test asserts on them.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from training.config import load_rl_config, load_sft_config
from training.rl import Completion, HfSampler, clipped_token_loss, policy_update, sharded_policy_update
from training.rows import read_rows
from training.sft import build_tiny, corpus_texts, load_sample, set_trainable
from training.sharding import Ranks, full_weights, gather_policy, init_ranks, shard_policy, shard_sizes, \
    token_denominator


class _Cpu:
    """The slice of `accelerate.Accelerator` that `policy_update` uses, for one plain process."""

    device = torch.device("cpu")

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        loss.backward()

    @staticmethod
    def clip_grad_norm_(parameters, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def token_mean_check(ranks: Ranks) -> dict[str, float]:
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 4)  # [rank, token, feature]: rank 0 keeps 3 tokens, rank 1 keeps 1
    masks = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    advantages = torch.tensor([[1.0], [-2.0]])
    layer = torch.nn.Linear(4, 1)
    reference = copy.deepcopy(layer)

    def loss_of(model: torch.nn.Module, rows: slice, token_count: float | None) -> torch.Tensor:
        logprobs = model(inputs[rows]).squeeze(-1)
        return clipped_token_loss(logprobs, logprobs.detach(), advantages[rows].squeeze(-1), masks[rows],
                                  epsilon=0.2, epsilon_high=0.3, token_count=token_count)

    loss_of(reference, slice(0, 2), None).backward()  # one process: the mean over all 4 tokens
    fully_shard(layer)
    mine = slice(ranks.rank, ranks.rank + 1)
    loss_of(layer, mine, token_denominator(float(masks[mine].sum()), ranks.world_size)).backward()
    sharded = torch.cat([p.grad.full_tensor().flatten() for p in layer.parameters()])
    expected = torch.cat([p.grad.flatten() for p in reference.parameters()])
    # what averaging per-rank token means would give: (mean over rank 0's + mean over rank 1's) / 2
    naive = copy.deepcopy(reference)
    naive.zero_grad()
    for rows in (slice(0, 1), slice(1, 2)):
        (loss_of(naive, rows, None) / 2).backward()
    naive_grad = torch.cat([p.grad.flatten() for p in naive.parameters()])
    return {"token_mean_max_diff": float((sharded - expected).abs().max()),
            "token_mean_grad_max": float(expected.abs().max()),
            "naive_mean_max_diff": float((naive_grad - expected).abs().max())}


def completions_for(processor, rows, corpus: Path) -> list[Completion]:
    """Four completions of two prompts: lengths 30, 12, 20 (cut: overlong) and 7 tokens."""
    stop = processor.stop_token_ids[0]
    made = []
    for group, (row, length, finished, advantage) in enumerate(
            [(rows[0], 30, True, 1.0), (rows[0], 12, True, -0.5), (rows[0], 20, False, 0.7), (rows[1], 7, True, -1.2)]):
        ids = processor.tokenizer(row.answer, add_special_tokens=False)["input_ids"][:length]
        made.append(Completion(group=group, row=row, sample=load_sample(row, corpus),
                               token_ids=ids + [stop] if finished else ids, text="", finished=finished,
                               advantage=advantage))
    return made


def flat_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def update_check(ranks: Ranks, corpus: Path, base, processor, name: str, max_grad_norm: float,
                 ) -> dict[str, float]:
    config = load_rl_config("rl-tiny-cpu", micro_batch_size=2, max_grad_norm=max_grad_norm, learning_rate=1e-3)
    rows = list(read_rows(corpus, split="train"))
    completions = completions_for(processor, rows, corpus)
    mine = completions[:3] if ranks.rank == 0 else completions[3:]  # 2 micro-batches on rank 0, 1 on rank 1

    def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=1.0) if name.startswith("sgd") else torch.optim.AdamW(params, lr=1e-3)

    reference = copy.deepcopy(base)
    before = flat_parameters(reference)
    reference_loss = policy_update(reference, processor, make_optimizer(reference), completions, config, _Cpu())
    expected = {name: p - before[name] for name, p in flat_parameters(reference).items()}

    model = copy.deepcopy(base)
    shard_policy(model, "float32", "float32")
    local, full = shard_sizes(model)
    loss = sharded_policy_update(model, processor, make_optimizer(model), mine, mine[0], config, ranks)
    gathered = gather_policy(model)
    if gathered is None:
        return {}
    moved = {name: p - before[name] for name, p in flat_parameters(gathered).items()}
    difference = max(float((moved[name] - expected[name]).abs().max()) for name in expected)
    scale = max(float(delta.abs().max()) for delta in expected.values())
    # A change is the difference of two float32 parameters, each rounded at its own magnitude: two
    # updates that agree to rounding can still differ by one unit in the last place of the parameter.
    largest = max(float(p.abs().max()) for p in before.values())
    return {f"{name}_max_diff": difference, f"{name}_max_change": scale, f"{name}_max_parameter": largest,
            f"{name}_loss": loss, f"{name}_reference_loss": reference_loss,
            "local_numel": local, "full_numel": full}


def sampling_check(ranks: Ranks, corpus: Path, base, processor) -> dict[str, bool]:
    # Rank 0 generates up to 32 tokens and samples twice (a dynamic-sampling round more), rank 1
    # up to 6 tokens once: inside full_weights no collective may run.
    config = load_rl_config("rl-tiny-cpu", max_completion_length=32 if ranks.rank == 0 else 6, rollout_batch_size=4)
    rows = list(read_rows(corpus, split="train"))
    samples = [load_sample(rows[2 + ranks.rank], corpus)]
    expected = HfSampler(copy.deepcopy(base), processor, config).sample(samples, 2, seed=5)
    model = copy.deepcopy(base)
    shard_policy(model, "float32", "float32")
    with full_weights(model):
        sampler = HfSampler(model, processor, config)
        got = sampler.sample(samples, 2, seed=5)
        if ranks.rank == 0:
            sampler.sample(samples, 2, seed=6)
    same = torch.tensor([float(got == expected)])
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return {"samples_match_unsharded": bool(same.item()),
            "resharded_after_sampling": all(isinstance(p, DTensor) for p in model.parameters())}


def main(corpus: Path, out: Path) -> None:
    ranks = init_ranks()
    results: dict[str, object] = {"world_size": ranks.world_size}
    results.update(token_mean_check(ranks))
    rows = list(read_rows(corpus, split="train"))
    base, processor = build_tiny(corpus_texts(rows), load_sft_config("sft-tiny-cpu").tiny)
    set_trainable(base, train_ecg_tower=False, train_vision_tower=True)  # rl-tiny-cpu's choice
    results.update(update_check(ranks, corpus, base, processor, "sgd", max_grad_norm=1e9))
    results.update(update_check(ranks, corpus, base, processor, "sgd_clipped", max_grad_norm=0.05))
    results.update(update_check(ranks, corpus, base, processor, "adamw", max_grad_norm=0.05))
    results.update(sampling_check(ranks, corpus, base, processor))
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "rank0.json").write_text(json.dumps(results, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
