"""Interleaved Modality Dropout: applied once, the measured mix matches p_drop = 0.5, p_swap = 0.1."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from model.dropout import P_DROP, P_SWAP, apply_modality_dropout, choose_modalities
from model.processing_ecg_r1 import EcgR1Sample

N = 20_000


def _shares(seed: int = 0) -> dict[tuple[str, ...], float]:
    rng = random.Random(seed)
    counts = Counter(choose_modalities(("ecg", "image"), rng) for _ in range(N))
    return {order: count / N for order, count in counts.items()}


def test_measured_distribution_matches_once_applied_dropout():
    shares = _shares()
    # expected: drop one with p_drop (each 25%), else both (50%), swapped in p_swap of those
    both = shares.get(("ecg", "image"), 0) + shares.get(("image", "ecg"), 0)
    tolerance = 4 * np.sqrt(0.25 * 0.75 / N)  # ~4 sigma of a 25% share
    assert abs(both - (1 - P_DROP)) < tolerance
    assert abs(shares[("ecg",)] - P_DROP / 2) < tolerance
    assert abs(shares[("image",)] - P_DROP / 2) < tolerance
    swapped_of_both = shares[("image", "ecg")] / both
    assert abs(swapped_of_both - P_SWAP) < 4 * np.sqrt(P_SWAP * (1 - P_SWAP) / (N / 2))
    # not the release's accidental double application (25% both, 37.5% each single)
    assert both > 0.45 and shares[("ecg",)] < 0.3
    assert set(shares) == {("ecg", "image"), ("image", "ecg"), ("ecg",), ("image",)}  # never empty


def test_single_modality_is_never_dropped():
    rng = random.Random(1)
    assert {choose_modalities(("ecg",), rng) for _ in range(2000)} == {("ecg",)}
    assert {choose_modalities(("image",), rng) for _ in range(2000)} == {("image",)}
    with pytest.raises(ValueError):
        choose_modalities((), rng)


def test_seeded_rng_is_reproducible():
    def draws(seed: int) -> list[tuple[str, ...]]:
        rng = random.Random(seed)
        return [choose_modalities(("ecg", "image"), rng) for _ in range(500)]

    assert draws(42) == draws(42)
    assert draws(42) != draws(43)


def test_dropout_removes_the_dropped_input(signal, small_image):
    rng = random.Random(3)
    seen = set()
    for _ in range(200):
        out = apply_modality_dropout(EcgR1Sample(signal=signal, image=small_image), rng)
        order = out.modalities()
        seen.add(order)
        assert (out.signal is not None) == ("ecg" in order)
        assert (out.image is not None) == ("image" in order)
        assert order  # never empty
    assert seen == {("ecg", "image"), ("image", "ecg"), ("ecg",), ("image",)}
