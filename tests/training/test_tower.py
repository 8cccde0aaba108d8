"""Tiny ECG tower pretraining: it learns the rows' labels and measurements from the signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.modeling_ecg_r1 import EcgTower
from model.tiny import TINY_ECG
from training.rows import TrainingRow, make_messages, read_rows
from training.tower import MEASURES, measure_matrix, pooled_tokens, pretrain_ecg_tower


def test_pretraining_lowers_the_loss_and_beats_the_majority(corpus: Path) -> None:
    rows = list(read_rows(corpus, split="train"))
    torch.manual_seed(0)
    tower = EcgTower(TINY_ECG)
    before = [p.detach().clone() for p in tower.parameters()]
    record = pretrain_ecg_tower(tower, corpus, rows, epochs=25, batch_size=4, progress=False)
    assert record.losses[-1] < 0.5 * record.losses[0]
    assert record.train_accuracy >= record.majority_accuracy
    assert record.labels == sorted({label for row in rows for label in row.labels})
    assert any(not torch.equal(a, b) for a, b in zip(before, tower.parameters(), strict=True))
    assert not tower.training  # left in eval mode: SFT freezes it


def test_measurements_are_standardised_where_present() -> None:
    def row(measured: dict[str, float] | None) -> TrainingRow:
        return TrainingRow(id="x", source="synthetic", messages=make_messages("<think>x</think><answer></answer>"),
                           meta={"measured": measured} if measured is not None else {})

    values, present = measure_matrix([row({"hr_bpm": 60.0}), row({"hr_bpm": 100.0, "qrs_ms": 90.0}), row(None)])
    hr = MEASURES.index("hr_bpm")
    assert present[:, hr].tolist() == [1.0, 1.0, 0.0]
    assert values[:, hr].tolist() == [-1.0, 1.0, 0.0]  # mean 80, SD 20 over the rows that have it
    assert values[1, MEASURES.index("qrs_ms")] == 0.0  # a single value standardises to 0


def _spike_train(period: int, length: int = 5000, leads: int = 12) -> torch.Tensor:
    signal = torch.zeros(leads, length)
    signal[:, ::period] = 1.0
    return signal


def _period(signal: torch.Tensor) -> int:
    """The strongest repeat of a 1-D signal from the autocorrelation of its slope (lags 100-2000
    samples; the slope, so that a slow baseline wander does not dominate)."""
    slope = torch.diff(signal)
    centred = slope - slope.mean()
    spectrum = torch.fft.rfft(centred, n=2 * signal.numel())
    correlation = torch.fft.irfft(spectrum * spectrum.conj())[: signal.numel()]
    return 100 + int(torch.argmax(correlation[100:2000]))


def test_augmentation_varies_each_recording_but_keeps_its_rate() -> None:
    from training.tower import augment_batch

    signals = torch.stack([_spike_train(400), _spike_train(625)])  # 75 and 48 bpm at 500 Hz
    varied = augment_batch(signals, torch.Generator().manual_seed(3))
    again = augment_batch(signals, torch.Generator().manual_seed(3))
    assert varied.shape == signals.shape
    assert torch.equal(varied, again)  # the seed decides
    assert not torch.allclose(varied, signals)
    for original, changed in zip(signals, varied, strict=True):
        assert _period(changed[0]) == _period(original[0])  # the beats still come every RR
    # The spikes moved: the batch is turned round in time, not only scaled and noised.
    assert int(torch.argmax(varied[0, 0, :400])) != 0 or int(torch.argmax(varied[1, 0, :625])) != 0


def test_pretraining_with_augmentation_still_learns(corpus: Path) -> None:
    rows = list(read_rows(corpus, split="train"))
    torch.manual_seed(0)
    tower = EcgTower(TINY_ECG)
    record = pretrain_ecg_tower(tower, corpus, rows, epochs=25, batch_size=4, augment=True, progress=False)
    assert record.losses[-1] < 0.85 * record.losses[0]
    assert record.train_accuracy >= record.majority_accuracy


def test_stretching_moves_the_beats_by_the_factor_it_reports() -> None:
    from training.tower import STRETCH_RANGE, stretch_in_time

    def beats(period: int) -> torch.Tensor:  # rounded beats (a spike would be split between samples)
        bump = torch.exp(-0.5 * (torch.arange(-20, 21, dtype=torch.float32) / 5.0) ** 2)
        return torch.nn.functional.conv1d(_spike_train(period)[:, None], bump[None, None], padding=20)[:, 0]

    signals = torch.stack([beats(400), beats(500), beats(625)])  # 75, 60 and 48 bpm
    stretched, rate_factors = stretch_in_time(signals, torch.Generator().manual_seed(5), share=1.0)
    again, _ = stretch_in_time(signals, torch.Generator().manual_seed(5), share=1.0)
    assert stretched.shape == signals.shape and torch.equal(stretched, again)
    low, high = STRETCH_RANGE
    assert all(1 / high <= factor <= 1 / low for factor in rate_factors.tolist())
    assert any(abs(factor - 1.0) > 0.02 for factor in rate_factors.tolist())
    for original, changed, factor in zip(signals, stretched, rate_factors.tolist(), strict=True):
        # Beats every RR before; every RR / factor now (to the sample the interpolation rounds to).
        assert abs(_period(changed[0]) - _period(original[0]) / factor) <= 2
    unchanged, none = stretch_in_time(signals, torch.Generator().manual_seed(5), share=0.0)
    assert torch.equal(unchanged, signals) and torch.equal(none, torch.ones(3))


def test_a_stretched_row_is_trained_on_its_new_rate_and_not_on_rate_named_labels() -> None:
    from training.tower import _stretched_targets

    hr, qrs, axis = (MEASURES.index(name) for name in ("hr_bpm", "qrs_ms", "qrs_axis_deg"))
    wanted = torch.zeros(2, len(MEASURES))
    measured = torch.ones(2, len(MEASURES))
    wanted[:, hr] = torch.tensor([1.0, -0.5])  # standardised: mean 80, SD 20 -> 100 and 70 bpm
    rate_named = torch.tensor([True, False])  # e.g. "sinus tachycardia", "right bundle branch block"
    targets, mask, labelled = _stretched_targets(wanted, measured, torch.tensor([0.8, 1.0]), torch.tensor(80.0),
                                                 torch.tensor(20.0), rate_named)
    assert targets[0, hr].item() == (100 * 0.8 - 80) / 20  # 100 bpm played 1.25x slower: 80 bpm
    assert targets[1, hr].item() == -0.5  # the row left as it was keeps its own
    assert mask[0, qrs] == 0 and mask[0, axis] == 1 and mask[1, qrs] == 1
    assert labelled.tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert wanted[0, hr].item() == 1.0 and measured[0, qrs] == 1  # the batch's own tensors untouched


def test_pretraining_with_stretching_still_learns(corpus: Path) -> None:
    rows = list(read_rows(corpus, split="train"))
    torch.manual_seed(0)
    tower = EcgTower(TINY_ECG)
    record = pretrain_ecg_tower(tower, corpus, rows, epochs=25, batch_size=4, augment=True, stretch=1.0,
                                progress=False)
    assert record.losses[-1] < 0.85 * record.losses[0]


def test_the_turned_batch_is_augment_batch_and_says_where_each_row_was_turned() -> None:
    from training.tower import augment_batch, augment_batch_turned

    signals = torch.stack([_spike_train(400), _spike_train(625)])  # spikes at samples 0, 400, ... and 0, 625, ...
    turned, offsets = augment_batch_turned(signals, torch.Generator().manual_seed(3))
    assert torch.equal(turned, augment_batch(signals, torch.Generator().manual_seed(3)))
    for row, offset in enumerate(offsets):
        # The spike of sample 0 is now at the offset (scaled by at most exp(+-0.15), with noise and wander of at
        # most a few tenths of a mV), and the samples beside it hold none.
        lead = turned[row, 0]
        assert lead[offset] > 0.6
        assert lead[(offset - 1) % 5000] < 0.4 and lead[(offset + 1) % 5000] < 0.4


def test_beat_patch_targets_mark_the_patches_the_turned_beats_fall_in() -> None:
    from training.tower import beat_patch_targets

    positions = [np.array([0, 420, 4990]), np.array([], dtype=np.int64)]
    targets = beat_patch_targets(positions, [100, 7], patch_size=50, patches=100)
    assert targets.shape == (2, 100)
    # Turned by 100 samples: 0 -> 100 (patch 2), 420 -> 520 (patch 10), 4990 -> 5090 % 5000 = 90 (patch 1).
    assert torch.nonzero(targets[0]).flatten().tolist() == [1, 2, 10]
    assert targets[1].sum() == 0  # a row without beats (asystole, or none found) marks none


def test_beat_positions_are_the_beats_the_measurement_counts(corpus: Path) -> None:
    from ingest.measure.features import measure
    from training.tower import beat_positions, load_signals

    rows = [row for row in read_rows(corpus, split="train")][:3]
    signals = load_signals(corpus, rows)
    for signal, beats in zip(signals, beat_positions(signals), strict=True):
        features = measure(signal.numpy().astype(np.float64), 500.0)
        rr_ms = float(np.median(np.diff(beats))) * 2.0  # 2 ms a sample at 500 Hz
        assert len(beats) == len(features.rhythm.beat_times_ms) >= 5
        assert abs(60000.0 / rr_ms - features.global_.hr_bpm) < 5.0


def test_pretraining_with_the_beat_loss_learns_where_the_beats_are(corpus: Path) -> None:
    rows = list(read_rows(corpus, split="train"))
    torch.manual_seed(0)
    tower = EcgTower(TINY_ECG)
    record = pretrain_ecg_tower(tower, corpus, rows, epochs=25, batch_size=4, augment=True, beats=1.0, progress=False)
    assert len(record.beat_losses) == 25
    # Saying the share of patches with a beat for every patch costs about 0.36-0.40 here (12-14 beats in 100
    # patches); the trained head does better: the tokens tell where the QRS complexes are.
    assert record.beat_losses[-1] < 0.6 * record.beat_losses[0]
    assert record.beat_losses[-1] < 0.3
    assert record.train_accuracy >= record.majority_accuracy
    without = pretrain_ecg_tower(EcgTower(TINY_ECG), corpus, rows, epochs=2, batch_size=4, augment=True,
                                 progress=False)
    assert without.beat_losses == []


def test_pooled_tokens_are_the_mean_or_the_first_token() -> None:
    tokens = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    assert torch.equal(pooled_tokens(tokens, "mean"), tokens.mean(dim=1))
    assert torch.equal(pooled_tokens(tokens, "cls"), tokens[:, 0])


class _GradientSpy(EcgTower):
    """An EcgTower that keeps the gradient the pretraining loss sends back into each of its outputs."""

    def __init__(self) -> None:
        super().__init__(TINY_ECG)
        self.gradients: list[torch.Tensor] = []

    def forward(self, ecg_values: torch.Tensor) -> torch.Tensor:
        tokens = super().forward(ecg_values)
        if tokens.requires_grad:
            tokens.register_hook(self.gradients.append)
        return tokens


def test_with_the_cls_pool_the_report_is_learnt_from_the_first_token_alone(corpus: Path) -> None:
    rows = list(read_rows(corpus, split="train"))
    torch.manual_seed(0)
    cls_tower = _GradientSpy()
    record = pretrain_ecg_tower(cls_tower, corpus, rows, epochs=25, batch_size=4, augment=True, pool="cls",
                                progress=False)
    assert record.losses[-1] < 0.5 * record.losses[0]
    assert record.train_accuracy >= record.majority_accuracy
    assert cls_tower.gradients and all(float(g[:, 0].abs().sum()) > 0 for g in cls_tower.gradients)
    assert all(float(g[:, 1:].abs().sum()) == 0.0 for g in cls_tower.gradients)
    # The default reads them all.
    mean_tower = _GradientSpy()
    pretrain_ecg_tower(mean_tower, corpus, rows, epochs=1, batch_size=4, augment=True, progress=False)
    assert all(float(g[:, 1:].abs().sum()) > 0 for g in mean_tower.gradients)
