"""GRPO with the DAPO settings of the ECG-R1 release, as a compact loop of our own.

    train_rl(load_rl_config("rl-tiny-cpu"), corpus_file, policy_dir, out_dir) -> RlResult
    python -m training.rl --config rl-8b-gpu --corpus corpus.jsonl --policy runs/sft --out runs/rl

One update ("step"):
1. Rollouts: `prompts_per_step` training rows, each sampled `num_generations` times at
   temperature 1.0 (the inference prompt: every modality the row has, no dropout) by
   `HfSampler` (the policy's own `generate` with sampling; CPU and GPU) or `VllmSampler`
   (vLLM, GPU). `model.engines` decodes greedily only, so sampling lives here.
2. Rewards: EDER (`training.rewards.eder_rewards`: diagnosis Jaccard + evidence + format,
   weights 1) per completion against the row's labels and evidence.
3. Dynamic sampling: a group whose rewards are all equal has zero advantage everywhere and
   teaches nothing; it is dropped and more prompts are drawn (up to `max_resample_rounds`
   more batches) until `prompts_per_step` groups remain.
4. Advantages: per group, (r - mean) / (std + 1e-4) (std with Bessel's correction, as TRL).
5. Overlong filtering: a completion cut at `max_completion_length` (no stop token) gets a
   zero loss mask: its truncated reasoning is neither rewarded nor punished.
6. IMD on the loss side (as the release, whose template re-encodes each completion's prompt in
   train mode): each completion's log-probabilities are computed on its prompt with
   Interleaved Modality Dropout applied once (p_drop, p_swap; rng from step seed, group and
   index), while its rollout saw the full prompt. The learning rate warms up linearly over
   the first `warmup_ratio` of the planned updates (release 0.01), then stays constant.
7. Loss: token-level clipped surrogate, summed over every kept token of the step and divided
   by their count (DAPO's token-level mean, TRL's "bnpo"):
       -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A),  ratio = pi / pi_old
   beta = 0: no KL term and no reference model. One optimiser step per rollout batch, so the
   "old" log-probs are the policy's own at sampling time (computed without gradient in the
   same pass's weights, i.e. detached): the ratio is 1 at the step and the clip bounds how far
   the update may move any token, as in TRL with num_iterations = 1.

Why not TRL's GRPOTrainer: it builds prompts with `processing_class(text=..., images=...)`
and knows nothing of the ECG signal, our `<ecg>` placeholder expansion or `ecg_values`; it
would need its generation and scoring internals overridden, plus a new dependency pinned to
transformers 5.19. The loop below is a few hundred lines and every DAPO piece has a unit test.

Scale: the policy keeps float32 weights. `shard = "none"`: one process, or `accelerate launch`
for data parallelism (bf16 autocast on GPUs); every process holds the whole training state
(~16 bytes/parameter), which fits models up to ~2B on one 80 GB GPU. `shard = "fsdp"` (launched
with torchrun): the policy update is sharded with FSDP2 (training/sharding.py): weights,
gradients and AdamW moments split over the ranks, the token-level mean taken over every rank's
tokens; this is how the 8B policy (~130 GB of training state) trains (training/README.md "GPU
configuration for the 8B model"). Each process samples its own prompts in both modes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from tqdm import tqdm

from model.dropout import apply_modality_dropout
from model.engines.base import cut_at_stop
from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration
from model.processing_ecg_r1 import EcgR1Processor, EcgR1Sample
from training.config import RlConfig, load_rl_config
from training.rewards import RewardBreakdown, eder_rewards
from training.rows import TrainingRow, read_rows
from training.sft import load_model, load_sample, set_trainable
from training.sharding import (Ranks, all_reduce, full_weights, gather_policy, init_ranks, shard_policy, shard_sizes,
                               token_denominator)

log = logging.getLogger(__name__)

ADVANTAGE_EPS = 1e-4


# -- the DAPO pieces (pure functions, unit-tested) ---------------------------------------------

def group_advantages(rewards: torch.Tensor, eps: float = ADVANTAGE_EPS) -> torch.Tensor:
    """GRPO's advantage of each completion in one group: (r - mean) / (std + eps)."""
    rewards = rewards.to(torch.float32)
    return (rewards - rewards.mean()) / (rewards.std(unbiased=True) + eps)


def informative(rewards: Sequence[float], tolerance: float = 1e-6) -> bool:
    """Dynamic sampling keeps a group only if its rewards are not all equal."""
    return max(rewards) - min(rewards) > tolerance


def overlong_mask(finished: Sequence[bool], lengths: Sequence[int], width: int, *, filtering: bool) -> torch.Tensor:
    """[n, width] loss mask: 1 on each completion's tokens, all 0 for a completion cut at the
    length limit when overlong filtering is on."""
    mask = torch.zeros(len(lengths), width)
    for row, (done, length) in enumerate(zip(finished, lengths, strict=True)):
        if done or not filtering:
            mask[row, :length] = 1.0
    return mask


def clipped_token_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                       mask: torch.Tensor, *, epsilon: float, epsilon_high: float,
                       token_count: float | None = None) -> torch.Tensor:
    """DAPO's token-level clipped surrogate. logprobs/old_logprobs/mask: [n, T]; advantages: [n].

    The sum over masked tokens is divided by `token_count` (the kept tokens of the whole step,
    so micro-batches add up to one token-level mean) or by this batch's own count."""
    ratio = torch.exp(logprobs - old_logprobs)
    advantage = advantages.unsqueeze(1)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon_high) * advantage
    per_token = -torch.minimum(unclipped, clipped)
    denominator = token_count if token_count is not None else mask.sum().clamp(min=1.0)
    return (per_token * mask).sum() / denominator


def total_reward(breakdown: RewardBreakdown, weights: Sequence[float]) -> float:
    return weights[0] * breakdown.diagnosis + weights[1] * breakdown.evidence + weights[2] * breakdown.format


# -- rollouts ----------------------------------------------------------------------------------

@dataclass
class Completion:
    """One sampled completion of one prompt."""

    group: int  # index of its prompt within the step
    row: TrainingRow
    sample: EcgR1Sample  # the rollout's prompt: every modality the row has (inference mode)
    token_ids: list[int]  # generated ids before the stop token, plus the stop token when finished
    text: str
    finished: bool
    rewards: RewardBreakdown | None = None
    reward: float = 0.0
    advantage: float = 0.0
    # The prompt the loss is computed on: IMD applied (the release's template in train mode
    # re-encodes each completion's prompt with dropout), None = the rollout's prompt.
    loss_sample: EcgR1Sample | None = None

    @property
    def scored_sample(self) -> EcgR1Sample:
        return self.loss_sample if self.loss_sample is not None else self.sample


def placeholder_ids(processor: EcgR1Processor) -> list[int]:
    """Tokens a completion must never contain: the ECG and image placeholders and their brackets.
    Fed back for the update, an `<|ecg_pad|>` would claim an ECG embedding that does not exist."""
    return [processor.ecg_start_token_id, processor.ecg_token_id, processor.ecg_end_token_id,
            processor.vision_start_token_id, processor.image_token_id, processor.vision_end_token_id]


def sanitise(ids: list[int], finished: bool, forbidden: Sequence[int]) -> tuple[list[int], bool]:
    """A completion with a placeholder token is cut before it and counted as unfinished (so
    overlong filtering gives it no loss). HfSampler suppresses them; vLLM's output is checked."""
    for i, token in enumerate(ids):
        if token in forbidden:
            return ids[:i], False
    return ids, finished


class Sampler(Protocol):
    def sample(self, samples: Sequence[EcgR1Sample], n: int, seed: int) -> list[list[tuple[list[int], bool]]]:
        """For each sample, n completions as (token ids incl. the stop token if finished, finished)."""


class HfSampler:
    """Sampling with the policy's own `generate` (temperature, top-p); batched, left padded.
    A sharded policy samples inside `training.sharding.full_weights` (entered by the loop)."""

    def __init__(self, model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, config: RlConfig) -> None:
        self.model, self.processor, self.config = model, processor, config

    @torch.no_grad()
    def sample(self, samples: Sequence[EcgR1Sample], n: int, seed: int) -> list[list[tuple[list[int], bool]]]:
        stop_ids = self.processor.stop_token_ids
        forbidden = placeholder_ids(self.processor)
        flat = [s for s in samples for _ in range(n)]
        out: list[tuple[list[int], bool]] = []
        was_training = self.model.training
        self.model.eval()
        torch.manual_seed(seed)  # same seed, same rollouts: the demo is reproducible
        for start in range(0, len(flat), self.config.rollout_batch_size):
            chunk = flat[start:start + self.config.rollout_batch_size]
            inputs = self.processor(chunk, padding_side="left").to(self.model.device)
            # fp32 master weights; on a GPU the rollouts run in bf16 autocast, as the update does
            with torch.autocast(self.model.device.type, dtype=torch.bfloat16,
                                enabled=self.config.bf16 and self.model.device.type == "cuda"):
                generated = self.model.generate(
                    **inputs, do_sample=True, temperature=self.config.temperature, top_p=self.config.top_p,
                    top_k=0, max_new_tokens=self.config.max_completion_length, eos_token_id=stop_ids,
                    pad_token_id=self.processor.tokenizer.pad_token_id, suppress_tokens=forbidden, use_cache=True,
                    # transformers turns this on for an FSDP module (ranks decode in lockstep); a
                    # sharded policy samples with its weights gathered, each rank on its own
                    synced_gpus=False)
            for row in generated[:, inputs["input_ids"].shape[1]:].tolist():
                ids, finished = sanitise(*cut_at_stop(row, stop_ids), forbidden)
                out.append((ids + [row[len(ids)]] if finished else ids, finished))
        self.model.train(was_training)
        return [out[i * n:(i + 1) * n] for i in range(len(samples))]


class VllmSampler:
    """Sampling with vLLM (GPU). The policy's weights reach vLLM through a saved folder: after
    each update the policy is written to a scratch folder and vLLM restarted on it (simple and
    version-proof; at 8B it costs ~1 min per step on a fast disk, so raise prompts_per_step).
    A sharded policy passes `write` (collective: rank 0 writes the gathered weights, every rank
    waits), a `scratch` folder all ranks share and `sync_every_sample=False`: the loop syncs once
    per step on every rank (ranks may sample a different number of times: dynamic sampling), and
    each rank serves its own prompts from its own engine.
    Not exercised on this CPU machine (see training/README.md "What was tested")."""

    def __init__(self, model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, config: RlConfig,
                 gpu_memory_utilization: float = 0.3, *, scratch: Path | None = None,
                 write: Callable[[Path], None] | None = None, sync_every_sample: bool = True) -> None:
        self.model, self.processor, self.config = model, processor, config
        self.scratch = scratch or Path(tempfile.mkdtemp(prefix="ecgr1-rl-vllm-"))
        self.memory = gpu_memory_utilization
        self.write = write or self._export
        self.sync_every_sample = sync_every_sample
        self.engine: Any = None

    def _export(self, folder: Path) -> None:
        from training.export import export_checkpoint

        export_checkpoint(self.model, self.processor, folder, verify=False)

    def sync(self) -> None:
        from model.engines.vllm_engine import VllmEngine

        if self.engine is not None:
            self.engine.close()
        self.write(self.scratch)
        self.engine = VllmEngine.from_pretrained(self.scratch, max_new_tokens=self.config.max_completion_length,
                                                 gpu_memory_utilization=self.memory)

    def sample(self, samples: Sequence[EcgR1Sample], n: int, seed: int) -> list[list[tuple[list[int], bool]]]:
        from vllm import SamplingParams

        from model.engines.base import GenerationRequest

        if self.sync_every_sample:
            self.sync()
        stop_ids = self.processor.stop_token_ids
        params = SamplingParams(n=n, temperature=self.config.temperature, top_p=self.config.top_p,
                                max_tokens=self.config.max_completion_length, stop_token_ids=stop_ids,
                                seed=seed, detokenize=False)
        prompts = [self.engine.prompt_for(GenerationRequest(signal=s.signal, image=s.image)) for s in samples]
        results = []
        for output in self.engine.llm.generate(prompts, params, use_tqdm=False):
            group = []
            for completion in output.outputs:
                ids, stopped = cut_at_stop(completion.token_ids, stop_ids)
                ids, finished = sanitise(ids, stopped or completion.finish_reason == "stop",
                                         placeholder_ids(self.processor))
                group.append((ids + [stop_ids[0]] if finished else ids, finished))
            results.append(group)
        return results


# -- the update --------------------------------------------------------------------------------

def sequence_batch(processor: EcgR1Processor, completions: Sequence[Completion],
                   device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
    """Prompt (left padded, as sampled) + completion (right padded) for each completion; returns
    the model inputs and the completion width."""
    inputs = processor([c.scored_sample for c in completions], padding_side="left")
    width = max(len(c.token_ids) for c in completions)
    pad = processor.tokenizer.pad_token_id
    tail = torch.full((len(completions), width), pad, dtype=torch.long)
    tail_mask = torch.zeros((len(completions), width), dtype=torch.long)
    for row, completion in enumerate(completions):
        tail[row, :len(completion.token_ids)] = torch.tensor(completion.token_ids)
        tail_mask[row, :len(completion.token_ids)] = 1
    data = dict(inputs)
    data["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
    data["attention_mask"] = torch.cat([inputs["attention_mask"], tail_mask], dim=1)
    data["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(tail, dtype=torch.int)], dim=1)
    return {k: v.to(device) for k, v in data.items()}, width


def placeholder_ids_of(model: ECGR1ForConditionalGeneration) -> list[int]:
    config = model.config
    return [config.ecg_start_token_id, config.ecg_token_id, config.ecg_end_token_id,
            config.vision_start_token_id, config.image_token_id, config.vision_end_token_id]


def completion_logprobs(model: ECGR1ForConditionalGeneration, inputs: dict[str, torch.Tensor], width: int,
                        temperature: float) -> torch.Tensor:
    """[n, width] log-probabilities of the completion tokens under the model (at the sampling temperature)."""
    logits = model(**inputs, logits_to_keep=width + 1, use_cache=False).logits[:, :-1, :]
    logits = logits.float() / temperature
    # The sampler never draws the placeholder tokens (suppressed): score with the same support.
    logits[..., placeholder_ids_of(model)] = float("-inf")
    targets = inputs["input_ids"][:, -width:]
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


# -- the loop ----------------------------------------------------------------------------------

@dataclass
class StepLog:
    step: int
    reward_mean: float  # over every completion sampled this step (kept groups or not)
    diagnosis: float
    evidence: float
    format: float
    groups_kept: int
    groups_dropped: int
    overlong: int
    loss: float | None
    wall_s: float


@dataclass
class RlResult:
    out_dir: Path
    steps: list[StepLog] = field(default_factory=list)
    wall_s: float = 0.0
    stopped_by_time: bool = False

    def reward_curve(self) -> list[float]:
        return [s.reward_mean for s in self.steps]


def score(completions: Sequence[Completion], weights: Sequence[float], graded_numbers: bool = False) -> None:
    for c in completions:
        c.rewards = eder_rewards(c.text, c.row.labels, c.row.evidence, graded_numbers)
        c.reward = total_reward(c.rewards, weights)


class PromptStream:
    """Training rows in a seeded shuffled order, epoch after epoch."""

    def __init__(self, rows: Sequence[TrainingRow], seed: int, shard: int = 0, shards: int = 1) -> None:
        self.rows = list(rows)[shard::shards]
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.epochs = 0.0
        self.drawn = 0

    def take(self, count: int) -> list[TrainingRow]:
        out = []
        for _ in range(count):
            if not self.order:
                self.order = list(range(len(self.rows)))
                self.rng.shuffle(self.order)
            out.append(self.rows[self.order.pop()])
            self.drawn += 1
        return out


def rollout_step(sampler: Sampler, processor: EcgR1Processor, stream: PromptStream, corpus_file: Path,
                 config: RlConfig, seed: int) -> tuple[list[Completion], list[Completion]]:
    """Sample and score groups until `prompts_per_step` informative ones are found (or the
    resample budget ends). Returns (kept completions, every completion sampled)."""
    kept: list[Completion] = []
    sampled: list[Completion] = []
    groups = 0
    for round_ in range(1 + (config.max_resample_rounds if config.dynamic_sampling else 0)):
        need = config.prompts_per_step - groups
        if need <= 0:
            break
        rows = stream.take(need)
        samples = [load_sample(row, corpus_file) for row in rows]
        outputs = sampler.sample(samples, config.num_generations, seed=seed * 1000 + round_)
        for row, sample, group_outputs in zip(rows, samples, outputs, strict=True):
            group = [Completion(group=groups, row=row, sample=sample, token_ids=ids, finished=done,
                                text=processor.decode(ids)) for ids, done in group_outputs]
            score(group, config.reward_weights, config.evidence_graded_numbers)
            for index, completion in enumerate(group):
                completion.loss_sample = loss_side_sample(sample, config, seed, completion.group, index)
            sampled.extend(group)
            rewards = [c.reward for c in group]
            if config.dynamic_sampling and not informative(rewards):
                continue
            for c, a in zip(group, group_advantages(torch.tensor(rewards)).tolist(), strict=True):
                c.advantage = a
            kept.extend(group)
            groups += 1
    return kept, sampled


def imd_rl_rng(seed: int, group: int, index: int) -> random.Random:
    """The loss-side dropout rng of one completion: a pure function of (step seed, group, index)."""
    return random.Random(f"imd-rl:{seed}:{group}:{index}")


def loss_side_sample(sample: EcgR1Sample, config: RlConfig, seed: int, group: int, index: int) -> EcgR1Sample | None:
    """IMD on the loss side, as the release: rollouts see the full prompt, but each completion's
    log-probabilities are computed on the prompt re-encoded in train mode (dropout and swap
    applied once). None when IMD is off (p_drop = p_swap = 0)."""
    if config.p_drop <= 0 and config.p_swap <= 0:
        return None
    return apply_modality_dropout(sample, imd_rl_rng(seed, group, index), config.p_drop, config.p_swap)


def warmup_factor(step: int, steps: int, ratio: float) -> float:
    """Linear warm-up over the first ceil(ratio * steps) updates, then 1 (the release's 0.01)."""
    warm = math.ceil(ratio * steps) if ratio > 0 else 0
    return 1.0 if warm == 0 or step >= warm else (step + 1) / warm


def kept_tokens(completions: Sequence[Completion], config: RlConfig) -> float:
    """How many completion tokens carry loss (overlong filtering applied)."""
    masks = [overlong_mask([c.finished], [len(c.token_ids)], len(c.token_ids),
                           filtering=config.overlong_filtering) for c in completions]
    return float(sum(m.sum() for m in masks))


def micro_batch_loss(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, chunk: Sequence[Completion],
                     config: RlConfig, device: torch.device, token_count: float, *, live: bool = True) -> torch.Tensor:
    """The chunk's summed clipped token loss divided by `token_count`. `live=False` masks every
    token (a pass that only keeps the ranks of a sharded update in step)."""
    inputs, width = sequence_batch(processor, chunk, device)
    mask = overlong_mask([c.finished for c in chunk], [len(c.token_ids) for c in chunk], width,
                         filtering=config.overlong_filtering).to(device) * float(live)
    logprobs = completion_logprobs(model, inputs, width, config.temperature)
    # One update per rollout batch: the sampling policy is these very weights, so pi_old is
    # pi detached (ratio 1 at the step; the clip bounds the move).
    old = logprobs.detach()
    advantages = torch.tensor([c.advantage for c in chunk], device=device)
    return clipped_token_loss(logprobs, old, advantages, mask, epsilon=config.epsilon,
                              epsilon_high=config.epsilon_high, token_count=token_count)


def policy_update(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, optimizer: torch.optim.Optimizer,
                  completions: Sequence[Completion], config: RlConfig, accelerator: Any) -> float | None:
    """One optimiser step over the kept completions; returns the loss (None if no token carries loss)."""
    token_count = kept_tokens(completions, config)
    if token_count == 0:
        return None
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for start in range(0, len(completions), config.micro_batch_size):
        chunk = completions[start:start + config.micro_batch_size]
        loss = micro_batch_loss(model, processor, chunk, config, accelerator.device, token_count)
        accelerator.backward(loss)
        total += float(loss.detach())
    accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def sharded_policy_update(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor,
                          optimizer: torch.optim.Optimizer, completions: Sequence[Completion], filler: Completion,
                          config: RlConfig, ranks: Ranks) -> float | None:
    """`policy_update` on an FSDP-sharded policy; every rank calls it with its own completions
    (possibly none). Returns the global token-level loss (None when no rank has a kept token).

    `filler`: any completion of this rank, run fully masked when the rank has fewer micro-batches
    than another (each forward/backward is a collective, so all ranks run the same number)."""
    local_tokens = kept_tokens(completions, config)
    denominator = token_denominator(local_tokens, ranks.world_size)
    if denominator == 0:
        return None
    chunks = [completions[i:i + config.micro_batch_size] for i in range(0, len(completions), config.micro_batch_size)]
    passes = int(all_reduce(len(chunks), dist.ReduceOp.MAX))
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for index in range(passes):
        live = index < len(chunks)
        loss = micro_batch_loss(model, processor, chunks[index] if live else [filler], config, ranks.device,
                                denominator, live=live)
        loss.backward()
        total += float(loss.detach())
    # DTensor gradients: clip_grad_norm_ takes the norm over all shards of all ranks
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return all_reduce(total) / ranks.world_size  # each rank's share was scaled by world / global count


def planned_steps(config: RlConfig, train_rows: int) -> int:
    per_epoch = max(1, train_rows // config.prompts_per_step)
    steps = int(per_epoch * config.num_train_epochs)
    return min(steps, config.max_steps) if config.max_steps > 0 else steps


@dataclass
class PolicyRun:
    """The policy as the loop drives it, unsharded (accelerate) or sharded (FSDP2). `save` and
    `should_stop` are called by every process (the sharded ones are collective)."""

    sampler: Sampler
    rollouts: Callable[[], AbstractContextManager[Any]]  # entered around each step's sampling
    process_index: int
    num_processes: int
    is_main: bool
    update: Callable[[list[Completion], list[Completion]], float | None]  # (kept, sampled) -> loss
    save: Callable[[Path], None]
    should_stop: Callable[[bool], bool]  # this process's wish -> the decision every process takes
    close: Callable[[], None]
    optimizer: torch.optim.Optimizer | None = None  # its learning rate follows the warm-up


def _unsharded_run(config: RlConfig, model: ECGR1ForConditionalGeneration, processor: EcgR1Processor) -> PolicyRun:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision="bf16" if config.bf16 and torch.cuda.is_available() else "no")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    policy = accelerator.unwrap_model(wrapped)
    sampler: Sampler = (VllmSampler(policy, processor, config) if config.engine == "vllm"
                        else HfSampler(policy, processor, config))

    def update(kept: list[Completion], _sampled: list[Completion]) -> float | None:
        return policy_update(wrapped, processor, optimizer, kept, config, accelerator) if kept else None

    def save(folder: Path) -> None:
        if accelerator.is_main_process:
            _save(policy, processor, folder)

    return PolicyRun(sampler=sampler, rollouts=nullcontext, process_index=accelerator.process_index,
                     num_processes=accelerator.num_processes, is_main=accelerator.is_main_process, update=update,
                     save=save, should_stop=lambda wish: wish, close=lambda: None, optimizer=optimizer)


def _sharded_run(config: RlConfig, model: ECGR1ForConditionalGeneration, processor: EcgR1Processor,
                 out_dir: Path) -> PolicyRun:
    ranks = init_ranks()
    shard_policy(model, config.fsdp_param_dtype, config.fsdp_reduce_dtype)
    local, full = shard_sizes(model)
    log.info("FSDP rank %d/%d holds %d of %d parameter elements", ranks.rank, ranks.world_size, local, full)
    # Built after sharding: AdamW's moments take the DTensor parameters' shapes, 1/world each.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)

    def save(folder: Path) -> None:
        plain = gather_policy(model)  # collective
        if plain is not None:
            _save(plain, processor, folder)
        dist.barrier()  # the folder is complete before any rank reads it (the vLLM sync)

    # Gathering is collective, so it happens once per step on every rank, never per sampling
    # call: with dynamic sampling the ranks may sample a different number of times.
    sampler: Sampler
    rollouts: Callable[[], AbstractContextManager[Any]]
    if config.engine == "vllm":
        vllm = VllmSampler(model, processor, config, scratch=out_dir / "vllm-sync", write=save,
                           sync_every_sample=False)
        sampler, rollouts = vllm, lambda: _synced(vllm)
    else:
        sampler, rollouts = HfSampler(model, processor, config), lambda: full_weights(model)

    def update(kept: list[Completion], sampled: list[Completion]) -> float | None:
        return sharded_policy_update(model, processor, optimizer, kept, sampled[0], config, ranks)

    return PolicyRun(sampler=sampler, rollouts=rollouts, process_index=ranks.rank, num_processes=ranks.world_size,
                     is_main=ranks.is_main, update=update, save=save,
                     should_stop=lambda wish: all_reduce(float(wish), dist.ReduceOp.MAX) > 0,
                     close=dist.destroy_process_group if ranks.owns_group else lambda: None, optimizer=optimizer)


@contextmanager
def _synced(sampler: VllmSampler) -> Iterator[None]:
    """vLLM serving the current weights for a step's rollouts (a collective sync when sharded)."""
    sampler.sync()
    yield


def train_rl(config: RlConfig, corpus_file: Path, policy_dir: Path | str | None, out_dir: Path, *,
             split: str = "train", time_limit_s: float | None = None, progress: bool = True,
             model: ECGR1ForConditionalGeneration | None = None,
             processor: EcgR1Processor | None = None) -> RlResult:
    """Run GRPO/DAPO from the policy at `policy_dir` (or the given model) and save it to `out_dir`.

    `time_limit_s` stops between steps once exceeded (the demo's budget); the result says so.
    With `config.shard == "fsdp"` every torchrun process calls this (training/sharding.py)."""
    started = time.monotonic()
    corpus_file, out_dir = Path(corpus_file), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None or processor is None:
        policy_dir = policy_dir or config.base_model
        if policy_dir is None:
            raise ValueError("no policy: give the SFT checkpoint (policy_dir / --policy) or base_model in the config")
        # float32 weights always: AdamW's updates at lr 1e-6 are far below bf16's resolution and
        # would round away on bf16 weights; `bf16` means autocast for the forward passes.
        model, processor = load_model(policy_dir, ecg_tower_path=config.ecg_tower_path, bf16=False)
    set_trainable(model, train_ecg_tower=config.train_ecg_tower, train_vision_tower=config.train_vision_tower)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    run = _sharded_run(config, model, processor, out_dir) if config.shard == "fsdp" \
        else _unsharded_run(config, model, processor)

    rows = list(read_rows(corpus_file, split=split))
    if not rows:
        raise ValueError(f"{corpus_file}: no {split} rows")
    stream = PromptStream(rows, config.seed, run.process_index, run.num_processes)
    steps = planned_steps(config, len(rows))
    result = RlResult(out_dir=out_dir)
    bar = tqdm(range(steps), desc="RL (GRPO/DAPO)", unit="step", disable=not progress or not run.is_main)
    for step in bar:
        if run.should_stop(time_limit_s is not None and time.monotonic() - started > time_limit_s):
            result.stopped_by_time = True
            break
        step_started = time.monotonic()
        with run.rollouts():
            kept, sampled = rollout_step(run.sampler, processor, stream, corpus_file, config, seed=config.seed + step)
        if run.optimizer is not None:
            for group in run.optimizer.param_groups:
                group["lr"] = config.learning_rate * warmup_factor(step, steps, config.warmup_ratio)
        loss = run.update(kept, sampled)
        entry = StepLog(step=step + 1, reward_mean=_mean([c.reward for c in sampled]),
                        diagnosis=_mean([c.rewards.diagnosis for c in sampled if c.rewards]),
                        evidence=_mean([c.rewards.evidence for c in sampled if c.rewards]),
                        format=_mean([c.rewards.format for c in sampled if c.rewards]),
                        groups_kept=len({c.group for c in kept}),
                        groups_dropped=len(sampled) // config.num_generations - len({c.group for c in kept}),
                        overlong=sum(not c.finished for c in sampled), loss=loss,
                        wall_s=time.monotonic() - step_started)
        result.steps.append(entry)
        bar.set_postfix(reward=f"{entry.reward_mean:.3f}", kept=entry.groups_kept)
        log.info("RL step %d: %s", step + 1, entry)
        if config.save_steps > 0 and (step + 1) % config.save_steps == 0:
            run.save(out_dir / f"checkpoint-{step + 1}")
    bar.close()

    if config.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    model.eval()
    run.save(out_dir)
    if run.is_main:
        (out_dir / "rl_log.json").write_text(json.dumps([s.__dict__ for s in result.steps], indent=1) + "\n")
    run.close()
    result.wall_s = time.monotonic() - started
    return result


def _save(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m training.rl`; on several GPUs `torchrun --nproc_per_node N -m training.rl ...` with
    `shard = "fsdp"` (or `accelerate launch -m training.rl ...` for unsharded data parallelism)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="rl-8b-gpu")
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--policy", help="the SFT checkpoint folder or hub id (default: the config's base_model)")
    parser.add_argument("--out", required=True, type=Path)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    result = train_rl(load_rl_config(options.config), options.corpus, options.policy, options.out)
    curve = result.reward_curve()
    print(f"RL done: {len(curve)} steps, mean reward {curve[0]:.3f} -> {curve[-1]:.3f}; model in {result.out_dir}")


if __name__ == "__main__":
    main()


__all__ = ["Completion", "HfSampler", "PromptStream", "RlResult", "StepLog", "VllmSampler", "clipped_token_loss",
           "completion_logprobs", "group_advantages", "informative", "kept_tokens", "micro_batch_loss",
           "overlong_mask", "planned_steps", "placeholder_ids", "policy_update", "rollout_step", "sanitise",
           "sequence_batch", "sharded_policy_update", "total_reward", "train_rl"]
