"""Pretraining the tiny ECG tower: the demo's stand-in for ECG-CoCa's pretraining.

ECG-R1 freezes a PRETRAINED signal encoder (ECG-CoCa, contrastive on ECG-report pairs). A tiny
model has no such tower, and a random one gives the language model nothing to read: the first
demo run, with the random tower trained inside SFT, wrote the same reading for every ECG. So
before SFT the tiny tower is pretrained here on the training split: its tokens, mean-pooled,
go through a linear head that predicts the row's labels (multi-label, binary cross-entropy)
and the measurements its reading states (heart rate, PR, QRS, QTc, axis from the row's
`meta.measured`, standardised; mean squared error where measured). Like ECG-CoCa, which
learnt from ECG-report pairs, the tower learns what reports say. Then SFT freezes it, as the
release freezes ECG-CoCa.

    pretrain_ecg_tower(model.model.ecg_tower, corpus_file, rows, epochs=30) -> TowerPretraining

Only the training split is used (the test split stays unseen). The head is thrown away.

With `augment=True` every batch is varied as recordings vary (`augment_batch`: where the beats
fall in the window, gain, noise, baseline wander), none of which changes a rate, a rhythm or
an interval. Without it the tower learns its ~650 rows by heart: a linear probe of its tokens
read the heart rate of held-out real recordings to 12 bpm (training rows: 2 bpm); with it, and
100 epochs, to about 7 bpm (training/README.md).

With `stretch` > 0 that share of each batch is also played slower or faster (`stretch_in_time`,
by a factor of 0.8-1.25): the beats come closer or further apart, so the tower sees many more
heart rates than its rows have, each with its own rate as the target (the rate divided by the
factor). A stretched row changes its PR, QRS and QT and may change its rate-named labels (sinus
tachycardia...) as well, so for it those are left out of the loss; its rate, its axis and its
other labels are trained. With every row stretched (`stretch=1.0`) the tower of a full demo run
read held-out real heart rates to 6.9 bpm in a linear probe (within 10 bpm on 0.81 of 151),
against 7.9 (0.72) for the shipped one; the model built on it was not better enough to ship,
so the demo configuration leaves it off (training/README.md, "Time-stretched tower").

With `beats` > 0 each patch token is also trained to say whether a QRS falls in its patch
(`beat_positions`, `beat_patch_targets`: the beats the worklist's own measurement finds in the
row, turned round with the row), a loss weighted by `beats` beside the report's. A heart rate
is the number of beats in the window: with every beat marked on its own token, the mean of the
tokens counts them, where a head on the pooled tokens alone had to find the rate in the mix.
On the demo corpus that took a probe of the tower to 5.9 bpm (within 10 bpm on 0.86 of 152 held-out
real records); the model built on it stated the rate worse, so the demo configuration leaves it
off too (training/README.md, "Beat patches in the tower").

With `pool="cls"` the head reads the tower's first (CLS) token alone instead of the mean of all
its tokens. Trained on the mean, the tower spreads what the report needs over its 101 tokens (a
probe of the shipped tower's CLS token alone reads held-out real heart rates to 15 bpm, against
8 for the mean), so the language model has to average 101 positions to find it; trained on the
CLS token, one position holds it (8.8 bpm in that probe), as a pretrained encoder's pooled token does.
The model built on such a tower read held-out real records worse (rhythm 0.63, heart rate within 10
bpm 0.61, against 0.67 and 0.70), so the demo configuration keeps the mean (training/README.md, "The
tower's summary in one token").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn
from tqdm import tqdm

from ingest.protocol import vocabulary as v
from model.modeling_ecg_r1 import EcgTower
from model.processing_ecg_r1 import prepare_signal
from training.config import TowerPool
from training.rows import TrainingRow, resolve


class TowerPretraining(BaseModel):
    labels: list[str]
    losses: list[float]  # mean loss per epoch (label BCE + measurement MSE)
    hr_error_sd: float  # mean |error| of the standardised heart rate on the training rows (1.0 = one SD)
    # The per-patch "a QRS falls here" loss (binary cross-entropy, unweighted) per epoch; empty without it.
    beat_losses: list[float] = []
    train_accuracy: float  # per-label accuracy (1 - Hamming loss) on the training rows at the end
    majority_accuracy: float  # the same for always predicting each label's majority value
    seconds: float


def label_matrix(rows: Sequence[TrainingRow], labels: Sequence[str]) -> torch.Tensor:
    index = {label: i for i, label in enumerate(labels)}
    targets = torch.zeros(len(rows), len(labels))
    for r, row in enumerate(rows):
        for label in row.labels:
            targets[r, index[label]] = 1.0
    return targets


MEASURES = ("hr_bpm", "pr_ms", "qrs_ms", "qtc_ms", "qrs_axis_deg")
_HR = MEASURES.index("hr_bpm")


def measure_matrix(rows: Sequence[TrainingRow]) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, len(MEASURES)] standardised measured values and a mask of those present."""
    standardised, present, _, _ = _measures(rows)
    return standardised, present


def _measures(rows: Sequence[TrainingRow]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(standardised values, present mask, mean, sd) of the rows' measured values."""
    values = torch.zeros(len(rows), len(MEASURES))
    present = torch.zeros(len(rows), len(MEASURES))
    for r, row in enumerate(rows):
        measured = row.meta.get("measured")
        if not isinstance(measured, dict):
            continue
        for m, name in enumerate(MEASURES):
            value = measured.get(name)
            if isinstance(value, (int, float)):
                values[r, m], present[r, m] = float(value), 1.0
    count = present.sum(dim=0).clamp(min=1.0)
    mean = (values * present).sum(dim=0) / count
    std = (((values - mean) * present) ** 2).sum(dim=0).div(count).sqrt().clamp(min=1e-6)
    return (values - mean) / std * present, present, mean, std


def load_signals(corpus_file: Path, rows: Sequence[TrainingRow]) -> torch.Tensor:
    """[n, 12, 5000] prepared signals (as the processor prepares them) of rows that have one."""
    return torch.from_numpy(np.stack([prepare_signal(np.load(resolve(corpus_file, row.signal_path)))
                                      for row in rows]))


# Augmentation ranges: gain within exp(+-0.15) (about +-16 %: wider would cross the voltage criteria
# that labels such as LVH and low voltage rest on), white noise up to 0.05 mV SD, and a baseline
# wander of 0.05-0.5 Hz up to 0.2 mV with its own phase in each lead.
AUGMENT_LOG_GAIN = 0.15
AUGMENT_NOISE_MV = 0.05
AUGMENT_WANDER_HZ = (0.05, 0.5)
AUGMENT_WANDER_MV = 0.2
_SAMPLING_RATE_HZ = 500.0


def augment_batch(signals: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[B, leads, samples] signals varied as real recordings vary, each in its own way: turned
    round in time by a random offset (so the tower cannot learn where a row's beats fall), scaled,
    with white noise and baseline wander added. The rate, rhythm and intervals are unchanged."""
    return augment_batch_turned(signals, generator)[0]


def augment_batch_turned(signals: torch.Tensor, generator: torch.Generator,
                         gain: bool = True) -> tuple[torch.Tensor, list[int]]:
    """`augment_batch`, with the number of samples each row was turned round by (sample i of a row is
    at (i + offset) % samples after it): the same draws, so the same batch for the same generator.
    gain=False leaves the amplitudes as they are (the gain is still drawn, so the other draws stay the same)."""
    batch, leads, length = signals.shape

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.empty(*shape).uniform_(low, high, generator=generator)

    offsets = torch.randint(0, length, (batch,), generator=generator).tolist()
    shifted = torch.stack([torch.roll(signal, offset, dims=-1) for signal, offset in zip(signals, offsets, strict=True)])
    scale = torch.exp(uniform(-AUGMENT_LOG_GAIN, AUGMENT_LOG_GAIN, batch, 1, 1))  # drawn either way
    noise = torch.randn(shifted.shape, generator=generator) * uniform(0.0, AUGMENT_NOISE_MV, batch, 1, 1)
    seconds = torch.arange(length, dtype=signals.dtype) / _SAMPLING_RATE_HZ
    frequency = uniform(*AUGMENT_WANDER_HZ, batch, 1, 1)
    phase = uniform(0.0, 2 * np.pi, batch, leads, 1)
    wander = torch.sin(2 * np.pi * frequency * seconds + phase) * uniform(0.0, AUGMENT_WANDER_MV, batch, 1, 1)
    return (shifted * scale if gain else shifted) + noise + wander, offsets


def beat_positions(signals: torch.Tensor, sampling_rate_hz: float = _SAMPLING_RATE_HZ) -> list[np.ndarray]:
    """Each row's QRS positions in samples: the beats the worklist's measurement (ingest.measure)
    finds in it, which are the beats its reading counts for the heart rate."""
    from ingest.measure.features import measure

    positions = []
    for signal in signals:
        features = measure(signal.numpy().astype(np.float64), sampling_rate_hz)
        times_ms = np.asarray(features.rhythm.beat_times_ms, dtype=np.float64)
        positions.append(np.round(times_ms * sampling_rate_hz / 1000.0).astype(np.int64))
    return positions


def beat_patch_targets(positions: Sequence[np.ndarray], offsets: Sequence[int], *, patch_size: int,
                       patches: int) -> torch.Tensor:
    """[B, patches]: 1.0 where a QRS of the row falls in the patch once the row is turned round by
    its offset (as `augment_batch_turned` turns it), else 0.0."""
    length = patch_size * patches
    targets = torch.zeros(len(positions), patches)
    for row, (beats, offset) in enumerate(zip(positions, offsets, strict=True)):
        where = ((beats + offset) % length) // patch_size
        targets[row, torch.from_numpy(where[where < patches])] = 1.0
    return targets


# Time stretch: a factor k plays a row k times slower (k > 1) or faster; its heart rate becomes rate / k.
# 0.8-1.25 takes 60 bpm to 48-75 and 100 bpm to 80-125: rates every corpus has, reached by other rows.
STRETCH_RANGE = (0.8, 1.25)
# Labels a change of rate alone can make untrue (a sinus rhythm at 95 bpm played faster is a sinus tachycardia).
RATE_NAMED_LABELS = frozenset({v.SINUS_RHYTHM, v.SINUS_BRADYCARDIA, v.SINUS_TACHYCARDIA, v.BRADYCARDIA, v.TACHYCARDIA,
                               v.WIDE_COMPLEX_TACHYCARDIA, v.NORMAL_ECG})


def stretch_in_time(signals: torch.Tensor, generator: torch.Generator,
                    share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, leads, samples] signals, [B] rate factors): each row, with probability `share`, played
    k times slower or faster (k log-uniform in STRETCH_RANGE) by linear interpolation, keeping its
    length; the factor by which its heart rate changes is 1 / k (1.0 for rows left as they are).

    Slower: the first samples / k of the row are spread over the whole length. Faster: the row
    is repeated end to end as far as needed, then squeezed; the joint is one more seam of the
    kind `augment_batch`'s turn in time already makes."""
    batch, _, length = signals.shape
    chosen = torch.rand(batch, generator=generator) < share
    low, high = np.log(STRETCH_RANGE[0]), np.log(STRETCH_RANGE[1])
    factors = torch.exp(torch.empty(batch).uniform_(float(low), float(high), generator=generator))
    factors = torch.where(chosen, factors, torch.ones(batch))
    rows = []
    for signal, k in zip(signals, factors.tolist(), strict=True):
        if k == 1.0:
            rows.append(signal)
            continue
        needed = max(2, int(round(length / k)))
        source = signal.repeat(1, -(-needed // length))[:, :needed]
        rows.append(nn.functional.interpolate(source[None], size=length, mode="linear", align_corners=True)[0])
    return torch.stack(rows), 1.0 / factors


def pretrain_ecg_tower(tower: EcgTower, corpus_file: Path, rows: Sequence[TrainingRow], *, epochs: int = 30,
                       batch_size: int = 32, learning_rate: float = 3e-3, seed: int = 0, augment: bool = False,
                       stretch: float = 0.0, beats: float = 0.0, pool: TowerPool = "mean",
                       progress: bool = True) -> TowerPretraining:
    """Train `tower` in place to predict the rows' labels; returns the record. `stretch`: the share
    of each augmented batch played slower or faster (`stretch_in_time`; only with `augment`).
    `beats`: the weight of the per-patch "a QRS falls here" loss (`beat_patch_targets`; rows
    stretched in time are left out of it). `pool`: which of the tower's tokens the report head
    reads (`pooled_tokens`)."""
    rows = [row for row in rows if row.signal_path is not None]
    signals = load_signals(corpus_file, rows)
    positions = beat_positions(signals) if beats > 0 else []
    patches = tower.num_tokens - 1  # the first token is the CLS
    beat_losses: list[float] = []  # per training batch, unweighted
    if beats > 0:
        torch.manual_seed(seed)  # the beat head starts from the seed alone, whatever ran before
    # A token's "a QRS falls here" logit; thrown away with the report head (made only when it trains).
    beat_head = nn.Linear(tower.width, 1) if beats > 0 else nn.Identity()

    def beat_loss(tokens: torch.Tensor, batch: list[int], offsets: list[int],
                  rate_factors: torch.Tensor | None) -> torch.Tensor:
        targets = beat_patch_targets([positions[i] for i in batch], offsets, patch_size=tower.patch_size,
                                     patches=patches)
        logits = beat_head(tokens[:, 1:]).squeeze(-1)
        per_row = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
        kept = torch.ones(len(batch)) if rate_factors is None else (rate_factors == 1.0).float()
        loss = (per_row * kept).sum() / kept.sum().clamp(min=1.0)
        beat_losses.append(float(loss.detach()))
        return beats * loss

    def encode(batch: list[int], generator: torch.Generator | None) -> Encoded:
        if generator is None:
            return Encoded(pooled_tokens(tower(signals[batch]), pool))
        inputs, rate_factors = signals[batch], None
        if stretch > 0:
            inputs, rate_factors = stretch_in_time(inputs, generator, stretch)
        varied, offsets = augment_batch_turned(inputs, generator)
        tokens = tower(varied)
        token_loss = beat_loss(tokens, batch, offsets, rate_factors) if beats > 0 else None
        return Encoded(pooled_tokens(tokens, pool), rate_factors, token_loss)

    tower.requires_grad_(True).train()
    parameters = list(tower.parameters()) + list(beat_head.parameters())
    record = fit_to_reports(encode, parameters, rows, width=tower.width, epochs=epochs,
                            batch_size=batch_size, learning_rate=learning_rate, seed=seed, augment=augment,
                            progress=progress, description="ECG tower pretraining")
    tower.eval()
    if beat_losses:
        per_epoch = -(-len(rows) // batch_size)
        record.beat_losses = [round(float(np.mean(beat_losses[i:i + per_epoch])), 4)
                              for i in range(0, len(beat_losses), per_epoch)]
    return record


def pooled_tokens(tokens: torch.Tensor, pool: TowerPool) -> torch.Tensor:
    """[B, T, width] -> [B, width]: the mean of all the tower's tokens, or its first (CLS) token alone."""
    return tokens[:, 0] if pool == "cls" else tokens.mean(dim=1)


class Encoded(NamedTuple):
    """What an encoder gives for a batch."""

    pooled: torch.Tensor  # [B, width] pooled features
    rate_factors: torch.Tensor | None = None  # each row's heart-rate factor when stretched in time (None: none was)
    token_loss: torch.Tensor | None = None  # a loss on the tokens themselves (the ECG tower's beat patches), weighted


def fit_to_reports(encode: Callable[[list[int], torch.Generator | None], Encoded],
                   parameters: list[nn.Parameter], rows: Sequence[TrainingRow], *, width: int, epochs: int,
                   batch_size: int, learning_rate: float, seed: int, augment: bool, progress: bool,
                   description: str, normalise: bool = False) -> TowerPretraining:
    """Train an encoder to predict what the rows' reports say: the shared loop of both towers.

    `encode(batch, generator)` gives the [B, width] pooled features of the rows at those indices,
    varied by `generator` (None: as they are), the rows' heart-rate factors if it stretched
    them in time, and a weighted loss of its own on the tokens if it has one (added to the loss). A linear head on them predicts each row's labels (binary cross-entropy) and
    measurements (mean squared error where measured); the head is thrown away. A stretched row
    is trained on its changed heart rate, its axis and the labels a rate does not name
    (`_stretched_targets`). With `normalise`, the pooled features are standardised over the
    batch first (a BatchNorm without weights), for an encoder whose pooled output hardly differs
    between inputs at the start (the ViT: a page is mostly grid).
    """
    started = time.monotonic()
    labels = sorted({label for row in rows for label in row.labels})
    targets = label_matrix(rows, labels)
    measures, present, mean, std = _measures(rows)
    rate_named = torch.tensor([label in RATE_NAMED_LABELS for label in labels])
    torch.manual_seed(seed)
    linear = nn.Linear(width, len(labels) + len(MEASURES))
    head = nn.Sequential(nn.BatchNorm1d(width, affine=False), linear) if normalise else linear
    parameters = parameters + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    steps = epochs * -(-len(rows) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps,
                                                   pct_start=0.1)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    order = list(range(len(rows)))
    shuffle = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    head.train()
    for _ in tqdm(range(epochs), desc=description, unit="epoch", disable=not progress):
        shuffle.shuffle(order)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            features, rate_factors, token_loss = encode(batch, generator if augment else None)
            out = head(features)
            logits, predicted_measures = out[:, :len(labels)], out[:, len(labels):]
            wanted, measured, labelled = measures[batch], present[batch], torch.ones(len(batch), len(labels))
            if rate_factors is not None:
                wanted, measured, labelled = _stretched_targets(wanted, measured, rate_factors, mean[_HR],
                                                                std[_HR], rate_named)
            squared = (predicted_measures - wanted) ** 2 * measured
            label_loss = (loss_fn(logits, targets[batch]) * labelled).sum() / labelled.sum().clamp(min=1.0)
            loss = label_loss + squared.sum() / measured.sum().clamp(min=1.0)
            if token_loss is not None:
                loss = loss + token_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(rows))
    head.eval()
    with torch.no_grad():
        out = torch.cat([head(encode(list(range(i, min(i + 64, len(rows)))), None).pooled)
                         for i in range(0, len(rows), 64)])
        predicted = out[:, :len(labels)] > 0
        hr_error = (out[:, 0 + len(labels)] - measures[:, 0]).abs() * present[:, 0]
    majority = targets.mean(dim=0) > 0.5
    return TowerPretraining(
        labels=labels, losses=[round(v, 4) for v in losses],
        train_accuracy=round(float((predicted == targets.bool()).float().mean()), 4),
        majority_accuracy=round(float((majority.expand_as(targets) == targets.bool()).float().mean()), 4),
        hr_error_sd=round(float(hr_error.sum() / present[:, 0].sum().clamp(min=1.0)), 4),
        seconds=round(time.monotonic() - started, 1))


def _stretched_targets(wanted: torch.Tensor, measured: torch.Tensor, rate_factors: torch.Tensor,
                       rate_mean: torch.Tensor, rate_sd: torch.Tensor,
                       rate_named: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(measurement targets, their mask, [B, labels] label weights) for a batch stretched in time.

    A stretched row's heart rate is its own times its factor (standardised as the others are);
    its PR, QRS and QTc changed by amounts its reading never stated, and its rate-named labels
    may no longer hold, so those are left out for it. The axis is a matter of amplitudes, which
    stretching leaves as they are."""
    stretched = rate_factors != 1.0
    wanted, measured = wanted.clone(), measured.clone()
    rate = (wanted[:, _HR] * rate_sd + rate_mean) * rate_factors
    wanted[:, _HR] = torch.where(stretched, (rate - rate_mean) / rate_sd * measured[:, _HR], wanted[:, _HR])
    for index, name in enumerate(MEASURES):
        if name not in ("hr_bpm", "qrs_axis_deg"):
            measured[stretched, index] = 0.0
    labelled = torch.ones(len(rate_factors), len(rate_named))
    labelled[stretched[:, None] & rate_named[None, :]] = 0.0
    return wanted, measured, labelled


__all__ = ["MEASURES", "STRETCH_RANGE", "Encoded", "TowerPretraining", "augment_batch", "augment_batch_turned",
           "beat_patch_targets", "beat_positions", "fit_to_reports", "label_matrix",
           "load_signals", "measure_matrix", "pretrain_ecg_tower", "stretch_in_time"]
