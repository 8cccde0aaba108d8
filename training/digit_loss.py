"""An SFT loss that counts the answer's digits more: the numbers only the ECG decides.

A reading is a few hundred tokens, most of them the protocol's fixed wording, and a handful of
digits (the heart rate, the intervals, the axes) that only the ECG decides. Under plain
cross-entropy a digit is one token among hundreds, and the tiny demonstration model learns to
write each number's commonest digits: on data/real's held-out records it states 64 bpm for 65 of
the 95 measured at 50-80 bpm, even when its tower carries the rate to 6 bpm (training/README.md).

`digit_loss_weight` w (SFT config; 1.0 = plain cross-entropy, the release): every label token that is
a digit counts w times in the mean over the answer's tokens, every other token once. At 5.0 in a
full demo run it took held-out heart rates within 10 bpm from 0.70 to 0.74 and cost rhythm and
label variety, so the demo configuration keeps 1.0 (training/README.md, "The digits counted five times").

    DigitWeightedTrainer(..., digit_ids=digit_token_ids(tokenizer), weight=w)
    weighted_token_loss(logits, labels, weighted_ids, weight) -> scalar loss
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer

from model.processing_ecg_r1 import IGNORE_INDEX


def digit_token_ids(tokenizer: Any) -> list[int]:
    """The ids of the ten digits, each a token of its own (Qwen's tokenizer and the tiny one split
    numbers into digits). Raises if a digit is not one token: weighting would then miss numbers."""
    ids = []
    for digit in "0123456789":
        encoded = tokenizer.encode(digit, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"the tokenizer writes the digit {digit!r} as {len(encoded)} tokens, not one")
        ids.append(int(encoded[0]))
    return ids


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, weighted_ids: torch.Tensor,
                        weight: float) -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions, the tokens in `weighted_ids` counted
    `weight` times (labels [B, T] with IGNORE_INDEX where there is no loss; logits [B, T, vocab])."""
    predicted, wanted = logits[:, :-1], labels[:, 1:]  # position t predicts token t + 1
    labelled = wanted != IGNORE_INDEX
    losses = nn.functional.cross_entropy(predicted.reshape(-1, predicted.shape[-1]).float(),
                                         wanted.clamp(min=0).reshape(-1), reduction="none").view_as(wanted)
    weights = torch.where(torch.isin(wanted, weighted_ids), weight, 1.0) * labelled
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


class DigitWeightedTrainer(Trainer):
    """`Trainer` whose loss is `weighted_token_loss` with the digits counted `weight` times."""

    def __init__(self, *args: Any, digit_ids: list[int], weight: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.digit_ids, self.digit_weight = torch.tensor(digit_ids), weight
        # The loss is a mean over this batch's tokens, not a sum over the accumulated ones divided by their count:
        # so the Trainer must divide it by the gradient accumulation steps itself (8 in the GPU configuration).
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = weighted_token_loss(outputs.logits, labels, self.digit_ids.to(labels.device), self.digit_weight)
        return (loss, outputs) if return_outputs else loss


__all__ = ["DigitWeightedTrainer", "digit_token_ids", "weighted_token_loss"]
