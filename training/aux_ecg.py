"""An auxiliary "read the ECG" objective for SFT of the tiny demo model (issue 17).

The 3-layer language model of the demo, trained from scratch, learns the wording of the
readings and never learns to attend to its 101 ECG positions: its LM loss is mostly on fixed
text, and the few input-dependent tokens do not pull hard enough. Yet the ECG tokens carry the
information (a ridge probe on them predicts heart rate to 4.1 bpm). So, during SFT, a small
linear head reads the LM's final hidden states at the first assistant positions and must
predict the same targets the tower pretraining uses (training/tower.py: the row's multi-hot
labels and its standardised HR/PR/QRS/QTc/axis). Its loss, times `aux_ecg_weight`, is added to
the LM loss, so the text positions that start the reading must gather what the ECG says.

Which positions: the last prompt position (the one that writes the first answer token) and the
next `positions - 1`, whose inputs are only the reading's fixed opening words ("<think>\n**Step
1: ..."). Later answer positions would see the written heart rate and labels (teacher forcing),
and the head could copy them instead of reading the ECG.

`aux_ecg_at = "heart_rate"` reads one position instead: the one whose hidden state writes the first
digit of the stated heart rate ("... Heart rate |6|1 bpm"), and predicts the row's measured heart
rate alone. A ridge probe of the shipped model's final hidden state there read held-out real rates
no better than the model states them (training/README.md): the language model does not gather the
rate where it writes it. This loss asks that position, and no other, to hold it. The text before it
in the reading ("12 of 12 leads measured.") does not state the rate, so the head cannot copy it.

With that loss alone the state came to hold the rate (a probe read it to 6.9 bpm) while the model
wrote one rate for nearly every ECG: the output head, one of hundreds of tokens' cross-entropy, did not
learn to read it. `rate_digits_weight` w adds w times the cross-entropy of the stated rate's own digit
tokens (`rate_digit_loss`: the position found above and the one or two after it that write the rest of
the number), so the read-out of that state is trained as hard as its gathering.

The loss applies to every row, also those whose signal was dropped by Interleaved Modality
Dropout: their image shows the same ECG. The head is a module of the trainer, not of the model,
so it is never saved into the model folder or a checkpoint's weights (it is thrown away, like
the tower pretraining's head); `aux_ecg_weight = 0` (the GPU config) leaves SFT as it was.

    AuxEcgTargets.from_rows(rows) -> targets;  AuxEcgTrainer(aux=targets, weight=1.0, ...)
    heart_rate_positions(labels, rate_prefix_ids, digit_ids) -> (positions, found)
    rate_digit_loss(logits, labels, positions, found, digit_ids) -> scalar
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from model.processing_ecg_r1 import IGNORE_INDEX
from training.config import AuxEcgAt
from training.rows import TrainingRow
from training.tower import MEASURES, label_matrix, measure_matrix

# The words just before a stated heart rate's first digit ("Heart rate 61 bpm"), as the target writes them.
RATE_PREFIX = " rate "


@dataclass
class AuxEcgTargets:
    """Per training row (by dataset index): multi-hot labels and standardised measurements with their mask."""

    labels: list[str]
    label_targets: torch.Tensor  # [rows, labels]
    measures: torch.Tensor  # [rows, len(MEASURES)], standardised, 0 where not measured
    present: torch.Tensor  # [rows, len(MEASURES)], 1 where measured

    @classmethod
    def from_rows(cls, rows: Sequence[TrainingRow]) -> AuxEcgTargets:
        labels = sorted({label for row in rows for label in row.labels})
        measures, present = measure_matrix(rows)
        return cls(labels=labels, label_targets=label_matrix(rows, labels), measures=measures, present=present)

    @property
    def width(self) -> int:
        return self.label_targets.shape[1] + self.measures.shape[1]


def answer_start_positions(labels: torch.Tensor, positions: int) -> torch.Tensor:
    """[batch, positions] indices: the last prompt position and the `positions - 1` after it.

    `labels` [batch, seq] carries IGNORE_INDEX on the prompt; its first labelled index is the
    first answer token, written by the hidden state one position earlier."""
    labelled = labels != IGNORE_INDEX
    if not labelled.any(dim=1).all():
        raise ValueError("a row has no labelled (assistant) token")
    first = labelled.int().argmax(dim=1) - 1  # the last prompt position
    offsets = torch.arange(positions, device=labels.device)
    return (first[:, None] + offsets[None, :]).clamp(max=labels.shape[1] - 1)


def aux_ecg_loss(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, row_index: torch.Tensor,
                 targets: AuxEcgTargets, positions: int) -> torch.Tensor:
    """Label BCE + masked measurement MSE of `head` on the mean hidden state at the answer's start."""
    where = answer_start_positions(labels, positions)
    pooled = hidden.gather(1, where[:, :, None].expand(-1, -1, hidden.shape[-1])).mean(dim=1)
    out = head(pooled.float())
    n_labels = targets.label_targets.shape[1]
    rows = row_index.cpu()
    label_targets = targets.label_targets[rows].to(out.device)
    measures, present = targets.measures[rows].to(out.device), targets.present[rows].to(out.device)
    label_loss = nn.functional.binary_cross_entropy_with_logits(out[:, :n_labels], label_targets)
    squared = (out[:, n_labels:] - measures) ** 2 * present
    return label_loss + squared.sum() / present.sum().clamp(min=1.0)


def heart_rate_positions(labels: torch.Tensor, rate_prefix_ids: Sequence[int],
                         digit_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """([batch] index, [batch] found): per row, the position whose hidden state writes the first digit of
    the first stated heart rate, i.e. the last token of `rate_prefix_ids` where a digit follows it.

    `labels` [batch, seq] holds the target's token ids (IGNORE_INDEX on the prompt), so only the reading
    is searched; a row stating no rate is not found (its index is 0 and is not used)."""
    n = len(rate_prefix_ids)
    if labels.shape[1] <= n:
        return torch.zeros(labels.shape[0], dtype=torch.long), torch.zeros(labels.shape[0], dtype=torch.bool)
    prefix = torch.tensor(list(rate_prefix_ids), device=labels.device)
    digits = torch.tensor(list(digit_ids), device=labels.device)
    windows = labels.unfold(1, n, 1)[:, :labels.shape[1] - n]  # [batch, seq - n, n]: each window and a next token
    match = (windows == prefix).all(dim=-1) & torch.isin(labels[:, n:], digits)
    found = match.any(dim=1)
    first = match.int().argmax(dim=1)  # the first match (0 where there is none)
    return torch.where(found, first + n - 1, 0).cpu(), found.cpu()


def aux_heart_rate_loss(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, row_index: torch.Tensor,
                        targets: AuxEcgTargets, rate_prefix_ids: Sequence[int],
                        digit_ids: Sequence[int]) -> torch.Tensor:
    """MSE of `head` on the hidden state that writes the heart rate's first digit, against the row's
    standardised measured heart rate; rows without a stated or a measured rate count for nothing."""
    positions, found = heart_rate_positions(labels, rate_prefix_ids, digit_ids)
    return _rate_at_loss(head, hidden, positions, found, row_index, targets)


def _rate_at_loss(head: nn.Module, hidden: torch.Tensor, positions: torch.Tensor, found: torch.Tensor,
                  row_index: torch.Tensor, targets: AuxEcgTargets) -> torch.Tensor:
    """`aux_heart_rate_loss` with the rate's positions already found (`heart_rate_positions`)."""
    positions, found = positions.to(hidden.device), found.to(hidden.device)
    at = hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]  # [batch, hidden]
    out = head(at.float())[:, 0]
    rows, rate = row_index.cpu(), MEASURES.index("hr_bpm")
    measured = targets.measures[rows, rate].to(out.device)
    used = targets.present[rows, rate].to(out.device) * found.float()
    return ((out - measured) ** 2 * used).sum() / used.sum().clamp(min=1.0)


# A stated heart rate has at most three digits (up to 300 bpm).
_RATE_DIGITS = 3


def rate_digit_loss(logits: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor, found: torch.Tensor,
                    digit_ids: Sequence[int]) -> torch.Tensor:
    """Mean next-token cross-entropy of the stated heart rate's digits alone.

    `positions` [batch] (from `heart_rate_positions`) writes each row's first rate digit; the next
    positions write the following digits while the label there is still a digit (at most three in all).
    Rows not `found` count for nothing; 0 when no row states a rate."""
    batch, length = labels.shape
    offsets = torch.arange(_RATE_DIGITS, device=labels.device)
    writer = (positions.to(labels.device)[:, None] + offsets[None, :]).clamp(max=length - 2)  # [batch, 3]
    written = labels.gather(1, writer + 1)
    is_digit = torch.isin(written, torch.tensor(list(digit_ids), device=labels.device))
    # a digit counts only while every one before it in the number is a digit too ("72 bpm": two)
    used = is_digit.int().cumprod(dim=1).bool() & found.to(labels.device)[:, None]
    if not used.any():
        return logits.sum() * 0.0
    rows = torch.arange(batch, device=labels.device)[:, None].expand_as(writer)
    chosen = logits[rows[used], writer[used]].float()  # [n, vocab]
    return nn.functional.cross_entropy(chosen, written[used])


class AuxEcgTrainer(Trainer):
    """`Trainer` whose loss is the LM loss + weight x the aux ECG loss; the head trains with the model.

    The batch carries `row_index` (the collator adds it) to look the targets up; it is not a model input."""

    def __init__(self, *args: Any, aux: AuxEcgTargets, weight: float, positions: int, at: AuxEcgAt = "answer_start",
                 rate_digits_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hidden_size = self.model.config.text_config.hidden_size
        torch.manual_seed(self.args.seed)
        self.aux_head = nn.Linear(hidden_size, aux.width if at == "answer_start" else 1).to(self.args.device)
        self.aux, self.aux_weight, self.aux_positions, self.aux_at = aux, weight, positions, at
        self.rate_digits_weight = rate_digits_weight
        if at == "heart_rate":
            from training.digit_loss import digit_token_ids

            tokenizer = self.processing_class
            self.rate_prefix_ids = tokenizer.encode(RATE_PREFIX, add_special_tokens=False)
            self.digit_ids = digit_token_ids(tokenizer)
        self.aux_losses: list[float] = []
        self._captured: list[torch.Tensor] = []
        language_model = self.accelerator.unwrap_model(self.model).model.language_model
        language_model.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        self._captured[:] = [output.last_hidden_state]

    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(*args, **kwargs)
        # The head learns at the model's rate, without weight decay; the scheduler covers its group too.
        optimizer.add_param_group({"params": list(self.aux_head.parameters()), "weight_decay": 0.0})
        return optimizer

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        row_index = inputs.pop("row_index")
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                             num_items_in_batch=num_items_in_batch)
        extra = loss.new_zeros(())
        if self.aux_at == "heart_rate":
            # found once: the rate's state for the aux head, and its digits for the read-out
            positions, found = heart_rate_positions(inputs["labels"], self.rate_prefix_ids, self.digit_ids)
            aux = _rate_at_loss(self.aux_head, self._captured[0], positions, found, row_index, self.aux)
            if self.rate_digits_weight > 0:
                extra = self.rate_digits_weight * rate_digit_loss(outputs.logits, inputs["labels"], positions, found,
                                                                  self.digit_ids)
        else:
            aux = aux_ecg_loss(self.aux_head, self._captured[0], inputs["labels"], row_index, self.aux,
                               self.aux_positions)
        self.aux_losses.append(float(aux.detach()))
        total = loss + self.aux_weight * aux + extra
        return (total, outputs) if return_outputs else total


__all__ = ["AuxEcgTargets", "AuxEcgTrainer", "answer_start_positions", "aux_ecg_loss", "aux_heart_rate_loss",
           "heart_rate_positions", "rate_digit_loss"]
