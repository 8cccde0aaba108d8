"""The auxiliary "read the ECG" loss: right positions, right targets, off at weight 0, never exported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from model.checkpoint import load_ecg_r1
from model.processing_ecg_r1 import IGNORE_INDEX
from training.aux_ecg import (AuxEcgTargets, answer_start_positions, aux_ecg_loss, aux_heart_rate_loss,
                              heart_rate_positions, rate_digit_loss)
from training.config import load_sft_config
from training.rows import read_rows
from training.sft import train_sft
from training.tower import MEASURES


def test_positions_start_at_the_last_prompt_token() -> None:
    labels = torch.full((2, 10), IGNORE_INDEX)
    labels[0, 6:] = 5  # answer starts at 6: the token at 5 writes it
    labels[1, 3:8] = 5
    assert answer_start_positions(labels, 3).tolist() == [[5, 6, 7], [2, 3, 4]]
    assert answer_start_positions(labels, 8)[0].tolist() == [5, 6, 7, 8, 9, 9, 9, 9]  # clamped to the sequence
    with pytest.raises(ValueError, match="no labelled"):
        answer_start_positions(torch.full((1, 4), IGNORE_INDEX), 2)


def test_loss_reads_only_the_answer_start_and_uses_the_rows_targets(corpus: Path) -> None:
    rows = list(read_rows(corpus, split="train"))[:3]
    targets = AuxEcgTargets.from_rows(rows)
    assert targets.label_targets.shape == (3, len(targets.labels))
    labels = torch.full((2, 12), IGNORE_INDEX)
    labels[:, 6:] = 1
    hidden = torch.randn(2, 12, 8, requires_grad=True)
    head = nn.Linear(8, targets.width)
    loss = aux_ecg_loss(head, hidden, labels, torch.tensor([2, 0]), targets, positions=2)
    loss.backward()
    touched = hidden.grad.abs().sum(dim=-1) > 0
    assert touched[:, 5:7].all() and not touched[:, :5].any() and not touched[:, 7:].any()
    # a head that outputs exactly the targets of rows 2 and 0 (large logits for the labels) has ~no loss
    perfect = torch.cat([targets.label_targets * 40 - 20, targets.measures], dim=1)[[2, 0]]
    exact_loss = aux_ecg_loss(lambda x: perfect, hidden, labels, torch.tensor([2, 0]), targets, positions=2)
    swapped = aux_ecg_loss(lambda x: perfect, hidden, labels, torch.tensor([0, 2]), targets, positions=2)
    assert float(exact_loss) < 1e-6
    assert rows[0].labels == rows[2].labels or float(swapped) > float(exact_loss) + 0.1


def test_training_with_the_aux_loss_exports_no_head(corpus: Path, tmp_path: Path) -> None:
    config = load_sft_config("sft-tiny-cpu", max_steps=3, save_steps=0, logging_steps=1,
                             per_device_train_batch_size=2, global_batch_size=2, aux_ecg_weight=1.0)
    result = train_sft(config, corpus, tmp_path, progress=False)
    assert len(result.aux_losses) == 3 and all(loss > 0 for loss in result.aux_losses)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        assert not any("aux" in key for key in weights.keys())
    model = load_ecg_r1(tmp_path)  # the folder loads as a plain ECG-R1
    assert not any("aux" in name for name, _ in model.named_parameters())
    # weight 0 (the release's configs) trains without the head and records no aux loss
    off = load_sft_config("sft-tiny-cpu", max_steps=1, save_steps=0, logging_steps=1,
                          per_device_train_batch_size=2, global_batch_size=2)
    assert off.aux_ecg_weight == 0 and load_sft_config("sft-8b-gpu").aux_ecg_weight == 0
    assert train_sft(off, corpus, tmp_path / "off", progress=False).aux_losses == []


def test_heart_rate_position_is_the_token_that_writes_the_rates_first_digit() -> None:
    prefix, digits = [7, 8], [1, 2, 3]
    labels = torch.tensor([
        [IGNORE_INDEX, IGNORE_INDEX, 5, 7, 8, 2, 3, 9],  # "rate 23": the 8 at index 4 writes the 2
        [IGNORE_INDEX, 7, 8, 9, 7, 8, 1, 9],  # "rate" + a word first: the second "rate 1" is the rate
        [IGNORE_INDEX, 5, 7, 8, 9, 9, 9, 9],  # no rate stated
    ])
    positions, found = heart_rate_positions(labels, prefix, digits)
    assert found.tolist() == [True, True, False]
    assert positions[:2].tolist() == [4, 5]
    # the prompt is never searched: the same words there (IGNORE_INDEX in the labels) are not seen
    assert not heart_rate_positions(torch.full((1, 6), IGNORE_INDEX), prefix, digits)[1].any()


def test_heart_rate_loss_reads_that_position_only_and_the_rows_measured_rate(measured_corpus: Path) -> None:
    rows = list(read_rows(measured_corpus, split="train"))[:3]
    targets = AuxEcgTargets.from_rows(rows)
    rate = MEASURES.index("hr_bpm")
    assert targets.present[:, rate].all()
    labels = torch.full((2, 8), IGNORE_INDEX)
    labels[0, 3:] = torch.tensor([7, 8, 2, 3, 9])  # writes the rate from index 4
    labels[1, 2:] = torch.tensor([7, 8, 1, 9, 9, 9])  # from index 3
    hidden = torch.randn(2, 8, 4, requires_grad=True)
    loss = aux_heart_rate_loss(nn.Linear(4, 1), hidden, labels, torch.tensor([2, 0]), targets, [7, 8], [1, 2, 3])
    loss.backward()
    touched = (hidden.grad.abs().sum(dim=-1) > 0).nonzero().tolist()
    assert touched == [[0, 4], [1, 3]]
    exact = targets.measures[[2, 0], rate][:, None]
    assert float(aux_heart_rate_loss(lambda x: exact, hidden, labels, torch.tensor([2, 0]), targets,
                                     [7, 8], [1, 2, 3])) < 1e-9
    swapped = aux_heart_rate_loss(lambda x: exact, hidden, labels, torch.tensor([0, 2]), targets, [7, 8], [1, 2, 3])
    assert targets.measures[0, rate] == targets.measures[2, rate] or float(swapped) > 1e-6


def test_rate_digit_loss_scores_the_rates_digits_and_nothing_else() -> None:
    prefix, digits = [7, 8], [1, 2, 3]
    labels = torch.tensor([
        [IGNORE_INDEX, 7, 8, 2, 3, 9, 1, 2],  # "rate 23 ...": digits 2, 3 written at 2 and 3; the later 1 2 are not the rate
        [IGNORE_INDEX, 5, 7, 8, 1, 2, 3, 1],  # "rate 123" then a digit more: three digits only, from 3
        [IGNORE_INDEX, 5, 5, 5, 5, 5, 5, 5],  # no rate
    ])
    positions, found = heart_rate_positions(labels, prefix, digits)
    logits = torch.randn(3, 8, 10, requires_grad=True)
    loss = rate_digit_loss(logits, labels, positions, found, digits)
    loss.backward()
    touched = (logits.grad.abs().sum(dim=-1) > 0).nonzero().tolist()
    assert touched == [[0, 2], [0, 3], [1, 3], [1, 4], [1, 5]]
    expected = nn.functional.cross_entropy(
        torch.stack([logits[0, 2], logits[0, 3], logits[1, 3], logits[1, 4], logits[1, 5]]).detach(),
        torch.tensor([2, 3, 1, 2, 3]))
    assert abs(float(loss.detach()) - float(expected)) < 1e-6
    # no row stating a rate: nothing to score, and still a tensor in the graph
    none = rate_digit_loss(logits, labels[2:], *heart_rate_positions(labels[2:], prefix, digits), digits)
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_rate_digits_weight_needs_the_heart_rate_aux_loss() -> None:
    with pytest.raises(ValueError, match="aux_rate_digits_weight"):
        load_sft_config("sft-tiny-cpu", aux_rate_digits_weight=1.0)
    with pytest.raises(ValueError, match="aux_rate_digits_weight"):
        load_sft_config("sft-tiny-cpu", aux_ecg_weight=0.1, aux_rate_digits_weight=1.0)
    config = load_sft_config("sft-tiny-cpu", aux_ecg_weight=0.1, aux_ecg_at="heart_rate", aux_rate_digits_weight=2.0)
    assert config.aux_rate_digits_weight == 2.0


def test_training_with_the_heart_rate_aux_loss_finds_the_rate_in_the_reading(measured_corpus: Path,
                                                                            tmp_path: Path) -> None:
    config = load_sft_config("sft-tiny-cpu", max_steps=3, save_steps=0, logging_steps=1,
                             per_device_train_batch_size=2, global_batch_size=2, aux_ecg_weight=1.0,
                             aux_ecg_at="heart_rate", aux_rate_digits_weight=1.0)
    result = train_sft(config, measured_corpus, tmp_path, progress=False)
    # every step found a stated rate to score (a loss of exactly 0 would mean no position matched)
    assert len(result.aux_losses) == 3 and all(loss > 0 for loss in result.aux_losses)
    model = load_ecg_r1(tmp_path)
    assert not any("aux" in name for name, _ in model.named_parameters())
