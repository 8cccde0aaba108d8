"""RL (GRPO/DAPO): advantages, dynamic sampling, overlong mask and the clipped token-level loss
against hand-computed values; a tiny RL step that samples, scores and updates the policy."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from model.processing_ecg_r1 import EcgR1Sample
from training.config import load_rl_config
from training.rl import (HfSampler, PromptStream, clipped_token_loss, completion_logprobs, group_advantages,
                         loss_side_sample, warmup_factor,
                         informative, overlong_mask, placeholder_ids, policy_update, rollout_step, sanitise,
                         sequence_batch)
from training.rows import read_rows
from training.sft import build_tiny, corpus_texts, load_sample, set_trainable


# -- pure pieces -------------------------------------------------------------------------------

def test_group_advantages_are_normalised_within_the_group() -> None:
    # mean 0.5, std (Bessel) sqrt(4 * 0.25 / 3) = 0.57735 -> +-0.8660
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert advantages.tolist() == pytest.approx([0.8659, -0.8659, -0.8659, 0.8659], abs=2e-4)
    # rewards 3, 1, 2: mean 2, std 1 -> 1, -1, 0 (less the 1e-4 in the denominator)
    assert group_advantages(torch.tensor([3.0, 1.0, 2.0])).tolist() == pytest.approx([1.0, -1.0, 0.0], abs=2e-4)
    # an all-equal group has zero advantage (which is why dynamic sampling drops it)
    assert group_advantages(torch.tensor([2.0, 2.0, 2.0])).abs().max() == 0


def test_dynamic_sampling_keeps_only_groups_with_different_rewards() -> None:
    assert not informative([1.0, 1.0, 1.0, 1.0])
    assert not informative([0.0] * 6)
    assert informative([1.0, 1.0, 1.5])
    assert informative([0.0, 3.0])


def test_overlong_completions_carry_no_loss() -> None:
    mask = overlong_mask([True, False, True], [2, 3, 3], 3, filtering=True)
    assert mask.tolist() == [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    # without filtering a cut completion is trained on like any other
    assert overlong_mask([True, False], [2, 3], 3, filtering=False).tolist() == [[1, 1, 0], [1, 1, 1]]


def test_clipped_token_level_loss_matches_hand_computation() -> None:
    # ratios 1.5 and 0.5 for a positive and a negative advantage; clip [0.8, 1.3] (eps 0.2 / 0.30)
    old = torch.zeros(2, 2)
    new = torch.log(torch.tensor([[1.5, 0.5], [1.5, 0.5]])).requires_grad_(True)
    advantages = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 2)
    loss = clipped_token_loss(new, old, advantages, mask, epsilon=0.2, epsilon_high=0.30)
    # A=+1: -min(1.5, 1.3) = -1.3 ; -min(0.5, 0.8) = -0.5
    # A=-1: -min(-1.5, -1.3) = 1.5 ; -min(-0.5, -0.8) = 0.8      mean over 4 tokens: 0.5 / 4
    assert float(loss.detach()) == pytest.approx(0.125, abs=1e-6)
    loss.backward()
    grad = new.grad
    # clipped tokens pass no gradient: (A=+1, ratio 1.5 above 1.3) and (A=-1, ratio 0.5 below 0.8)
    assert grad[0, 0] == 0 and grad[1, 1] == 0
    # unclipped ones: d(-ratio * A)/d logp = -ratio * A / 4 tokens
    assert float(grad[0, 1]) == pytest.approx(-0.5 / 4, abs=1e-6)
    assert float(grad[1, 0]) == pytest.approx(1.5 / 4, abs=1e-6)


def test_loss_is_a_mean_over_tokens_not_over_sequences() -> None:
    # one 3-token completion with A=+1 and a 1-token one with A=-1, ratio 1 everywhere:
    # token-level: (-3 + 1) / 4 = -0.5 (a per-sequence mean would give 0)
    logprobs = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss = clipped_token_loss(logprobs, logprobs, torch.tensor([1.0, -1.0]), mask, epsilon=0.2, epsilon_high=0.3)
    assert float(loss) == pytest.approx(-0.5)
    # micro-batches divided by the step's token count add up to the same mean
    first = clipped_token_loss(logprobs[:1], logprobs[:1], torch.tensor([1.0]), mask[:1], epsilon=0.2,
                               epsilon_high=0.3, token_count=4.0)
    second = clipped_token_loss(logprobs[1:], logprobs[1:], torch.tensor([-1.0]), mask[1:], epsilon=0.2,
                                epsilon_high=0.3, token_count=4.0)
    assert float(first + second) == pytest.approx(-0.5)


def test_a_completion_with_a_placeholder_token_is_cut_and_unfinished() -> None:
    assert sanitise([5, 9, 7, 2], True, [9]) == ([5], False)
    assert sanitise([5, 7, 2], True, [9]) == ([5, 7, 2], True)


def test_gpu_config_has_the_release_dapo_settings() -> None:
    config = load_rl_config("rl-8b-gpu")
    assert (config.beta, config.epsilon, config.epsilon_high) == (0.0, 0.2, 0.30)
    assert config.loss_type == "token" and config.dynamic_sampling and config.overlong_filtering
    assert (config.num_generations, config.temperature, config.max_completion_length) == (6, 1.0, 2048)
    assert config.learning_rate == 1e-6 and config.engine == "vllm"
    # the release's rl_train_dapo.sh: 8 prompts x 6 completions per update, warm-up 0.01, IMD on the loss side
    assert (config.prompts_per_step, config.rollout_batch_size, config.warmup_ratio) == (8, 48, 0.01)
    assert (config.p_drop, config.p_swap) == (0.5, 0.1)


def test_warmup_is_linear_over_the_first_share_of_updates() -> None:
    assert [warmup_factor(step, 300, 0.01) for step in range(4)] == [1 / 3, 2 / 3, 1.0, 1.0]
    assert warmup_factor(0, 32, 0.01) == 1.0  # ceil(0.32) = 1 warm-up update: the first runs at 1/1
    assert warmup_factor(0, 10, 0.0) == 1.0


def test_loss_side_imd_drops_a_modality_once_while_rollouts_keep_both() -> None:
    import numpy as np
    from PIL import Image

    config = load_rl_config("rl-tiny-cpu")
    full = EcgR1Sample(signal=np.zeros((12, 5000), dtype=np.float32), image=Image.new("RGB", (64, 64)))
    seen = {"signal": 0, "image": 0, "both": 0, "swapped": 0}
    for index in range(4000):
        loss = loss_side_sample(full, config, seed=7, group=index // 6, index=index % 6)
        kinds = loss.modalities()
        seen["both" if len(kinds) == 2 else ("signal" if "ecg" in kinds[0] else "image")] += 1
        seen["swapped"] += kinds == ("image", "ecg")
    assert full.modalities() == ("ecg", "image")  # the rollout's prompt is untouched
    assert abs(seen["signal"] / 4000 - 0.25) < 0.03 and abs(seen["image"] / 4000 - 0.25) < 0.03
    assert abs(seen["swapped"] / 4000 - 0.05) < 0.015  # swap applied once, only when both remain
    assert loss_side_sample(full, load_rl_config("rl-tiny-cpu", p_drop=0.0, p_swap=0.0), 7, 0, 0) is None


# -- a tiny RL step ---------------------------------------------------------------------------

class ScriptedSampler:
    """Returns, per prompt, the reference answer for the first `good` completions and a
    formatless text for the rest: rewards known in advance."""

    def __init__(self, processor, rows_by_signal, good: int) -> None:
        self.processor, self.rows_by_signal, self.good = processor, rows_by_signal, good

    def sample(self, samples: Sequence[EcgR1Sample], n: int, seed: int):
        stop = self.processor.stop_token_ids[0]
        out = []
        for sample in samples:
            row = self.rows_by_signal[float(sample.signal.sum())]
            good = self.processor.tokenizer(row.answer, add_special_tokens=False)["input_ids"] + [stop]
            bad = self.processor.tokenizer("normal", add_special_tokens=False)["input_ids"] + [stop]
            out.append([(good, True) if i < self.good else (bad, True) for i in range(n)])
        return out


class ShiftedRateSampler:
    """Returns, per prompt, the reference answer with its stated heart rate moved by each of `shifts` bpm."""

    def __init__(self, processor, rows_by_signal, shifts: Sequence[int]) -> None:
        self.processor, self.rows_by_signal, self.shifts = processor, rows_by_signal, shifts

    def sample(self, samples: Sequence[EcgR1Sample], n: int, seed: int):
        stop = self.processor.stop_token_ids[0]
        out = []
        for sample in samples:
            answer = self.rows_by_signal[float(sample.signal.sum())].answer
            texts = [re.sub(r"(?i)(heart rate )(\d+)( bpm)", lambda m, s=shift: f"{m[1]}{int(m[2]) + s}{m[3]}", answer)
                     for shift in self.shifts[:n]]
            out.append([(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"] + [stop], True)
                        for text in texts])
        return out


class _Cpu:
    device = torch.device("cpu")

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        loss.backward()

    @staticmethod
    def clip_grad_norm_(parameters, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)


@pytest.fixture(scope="module")
def tiny(corpus: Path):
    rows = list(read_rows(corpus, split="train"))
    model, processor = build_tiny(corpus_texts(rows), load_sft_config_tiny())
    return rows, model, processor


def load_sft_config_tiny():
    from training.config import load_sft_config

    return load_sft_config("sft-tiny-cpu").tiny


def test_hf_sampler_samples_groups_and_marks_cut_completions(corpus: Path, tiny) -> None:
    rows, model, processor = tiny
    config = load_rl_config("rl-tiny-cpu", max_completion_length=12, rollout_batch_size=4)
    samples = [load_sample(row, corpus) for row in rows[:2]]
    groups = HfSampler(model, processor, config).sample(samples, 3, seed=1)
    assert [len(g) for g in groups] == [3, 3]
    flat = [c for g in groups for c in g]
    assert all(len(ids) <= 13 for ids, _ in flat)
    assert any(not finished for _, finished in flat)  # a random model does not stop within 12 tokens
    # the ECG/image placeholders are never sampled (fed back, an <|ecg_pad|> would claim a missing ECG)
    assert not set(placeholder_ids(processor)) & {t for ids, _ in flat for t in ids}
    # temperature 1.0 sampling: the three completions of one prompt are not all the same
    assert len({tuple(ids) for ids, _ in groups[0]}) > 1
    # and the same seed gives the same rollouts
    assert HfSampler(model, processor, config).sample(samples, 3, seed=1) == groups


def test_a_tiny_rl_step_scores_rollouts_and_moves_the_policy_towards_the_better_ones(corpus: Path, tiny) -> None:
    rows, model, processor = tiny
    config = load_rl_config("rl-tiny-cpu", prompts_per_step=2, num_generations=4, micro_batch_size=4,
                            learning_rate=3e-3)
    set_trainable(model, train_ecg_tower=True, train_vision_tower=True)
    by_signal = {float(load_sample(row, corpus).signal.sum()): row for row in rows}
    sampler = ScriptedSampler(processor, by_signal, good=1)
    kept, sampled = rollout_step(sampler, processor, PromptStream(rows, seed=0), corpus, config, seed=0)
    assert len(sampled) == 8 and len(kept) == 8
    good = [c for c in kept if c.text.startswith("<think>")]
    assert all(c.rewards.format == 1.0 and c.rewards.diagnosis == 1.0 for c in good)
    assert all(c.reward == pytest.approx(c.rewards.diagnosis + c.rewards.evidence + c.rewards.format) for c in kept)
    assert all(c.reward == 0.0 for c in kept if c not in good)
    assert all(c.advantage > 0 for c in good) and all(c.advantage < 0 for c in kept if c not in good)

    def good_logprob() -> float:
        inputs, width = sequence_batch(processor, good[:1], torch.device("cpu"))
        with torch.no_grad():
            return float(completion_logprobs(model, inputs, width, 1.0).sum())

    before = good_logprob()
    weights = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    for _ in range(3):
        loss = policy_update(model, processor, optimizer, kept, config, _Cpu())
        assert loss is not None and math.isfinite(loss)
    assert any(not torch.equal(w, p) for w, p in zip(weights, model.parameters(), strict=True))
    assert good_logprob() > before  # the rewarded reading became more likely


def test_graded_evidence_makes_a_group_of_near_and_far_rates_informative_and_favours_the_nearer(corpus: Path,
                                                                                                 tiny) -> None:
    rows, _model, processor = tiny
    rows = [row for row in rows if re.search(r"(?i)heart rate \d+ bpm", row.answer)][:2]
    by_signal = {float(load_sample(row, corpus).signal.sum()): row for row in rows}

    def step(graded: bool) -> tuple[list, list]:
        config = load_rl_config("rl-tiny-cpu", prompts_per_step=2, num_generations=2, max_resample_rounds=0,
                                evidence_graded_numbers=graded)
        return rollout_step(ShiftedRateSampler(processor, by_signal, shifts=(3, 8)), processor,
                            PromptStream(rows, seed=0), corpus, config, seed=0)

    kept, sampled = step(graded=False)  # the release: neither rate is the phrase as written, so both score alike
    assert len(sampled) == 4 and kept == []
    kept, sampled = step(graded=True)
    assert len(kept) == 4
    for group in (kept[:2], kept[2:]):
        near, far = group  # 3 and 8 bpm off
        assert near.rewards.evidence > far.rewards.evidence and near.advantage > 0 > far.advantage


def test_dynamic_sampling_drops_equal_groups_and_resamples(corpus: Path, tiny) -> None:
    rows, _model, processor = tiny
    config = load_rl_config("rl-tiny-cpu", prompts_per_step=2, num_generations=2, max_resample_rounds=2)
    by_signal = {float(load_sample(row, corpus).signal.sum()): row for row in rows}
    stream = PromptStream(rows, seed=0)
    kept, sampled = rollout_step(ScriptedSampler(processor, by_signal, good=2), processor, stream, corpus,
                                 config, seed=0)
    assert kept == []  # every group all-good: all rewards equal, nothing to learn
    assert len(sampled) == 3 * 2 * 2  # the first batch and 2 resample rounds of 2 prompts x 2 completions
    assert stream.drawn == 6
