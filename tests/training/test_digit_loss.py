"""The digit-weighted SFT loss: plain cross-entropy at weight 1, the digits counted more above it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.processing_ecg_r1 import IGNORE_INDEX
from training.config import load_sft_config
from training.digit_loss import digit_token_ids, weighted_token_loss
from training.rows import read_rows
from training.sft import SftCollator, SftDataset, build_tiny, corpus_texts, train_sft


@pytest.fixture(scope="module")
def tiny_batch(corpus: Path):
    rows = list(read_rows(corpus, split="train"))
    model, processor = build_tiny(corpus_texts(rows), load_sft_config("sft-tiny-cpu").tiny)
    dataset = SftDataset(corpus, rows[:3], seed=0, p_drop=0.5, p_swap=0.1)
    batch = SftCollator(processor, max_length=4096)([dataset[i] for i in range(3)])
    return model.eval(), processor, batch


def test_the_digits_are_single_tokens_that_the_readings_numbers_are_written_in(tiny_batch) -> None:
    _, processor, _ = tiny_batch
    digits = digit_token_ids(processor.tokenizer)
    assert len(set(digits)) == 10
    encoded = processor.tokenizer.encode("Heart rate 72 bpm", add_special_tokens=False)
    assert [token for token in encoded if token in digits] == [digits[7], digits[2]]


def test_at_weight_one_it_is_the_models_own_loss_and_above_it_the_digits_count_more(tiny_batch) -> None:
    model, processor, batch = tiny_batch
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    labels = batch["labels"]
    with torch.no_grad():
        outputs = model(**inputs, labels=labels)
    digits = torch.tensor(digit_token_ids(processor.tokenizer))
    plain = weighted_token_loss(outputs.logits, labels, digits, 1.0)
    assert plain.item() == pytest.approx(outputs.loss.item(), rel=1e-4)

    # By hand: the mean of the per-token losses, digits counted 5 times.
    wanted = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(outputs.logits[:, :-1].reshape(-1, outputs.logits.shape[-1]),
                                               wanted.clamp(min=0).reshape(-1), reduction="none").view_as(wanted)
    labelled, is_digit = wanted != IGNORE_INDEX, torch.isin(wanted, digits)
    assert (labelled & is_digit).sum() >= 6  # the readings state numbers
    weights = labelled.float() + 4.0 * (labelled & is_digit).float()
    expected = (losses * weights).sum() / weights.sum()
    assert weighted_token_loss(outputs.logits, labels, digits, 5.0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_sft_trains_with_the_digits_weighted(corpus: Path, tmp_path: Path) -> None:
    config = load_sft_config("sft-tiny-cpu", max_steps=6, logging_steps=1, per_device_train_batch_size=2,
                             global_batch_size=2, digit_loss_weight=5.0)
    result = train_sft(config, corpus, tmp_path, progress=False)
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 6 and all(loss == loss for loss in losses)  # trained, no NaN
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2


def test_the_digit_weight_is_not_silently_dropped_beside_the_aux_loss() -> None:
    with pytest.raises(ValueError, match="cannot be used together"):
        load_sft_config("sft-tiny-cpu", aux_ecg_weight=1.0, digit_loss_weight=5.0)
    with pytest.raises(ValueError, match="above 0"):
        load_sft_config("sft-tiny-cpu", digit_loss_weight=0.0)
