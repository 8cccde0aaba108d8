"""Interleaved Modality Dropout (IMD): which modalities a training prompt carries, in which order.

Applied ONCE per training sample (the release applied it twice by accident, which skews the
mix to ~25% both / 37.5% / 37.5%). With both modalities present:

    p_drop = 0.5  -> drop one of them, chosen uniformly      (ecg only 25%, image only 25%)
    otherwise     -> keep both; with p_swap = 0.1 write `<image><ecg>` instead of `<ecg><image>`
                                                              (both 50%: 45% ecg-first, 5% image-first)

A sample with a single modality keeps it: a prompt is never left empty. Inference uses no
dropout; a prompt carries exactly the modalities present.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from model.processing_ecg_r1 import EcgR1Sample

P_DROP = 0.5
P_SWAP = 0.1


def choose_modalities(present: Sequence[str], rng: random.Random, p_drop: float = P_DROP,
                      p_swap: float = P_SWAP) -> tuple[str, ...]:
    """The prompt's modalities after dropout, in prompt order. `present` is in default order."""
    present = tuple(present)
    if not present:
        raise ValueError("a training sample needs at least one modality")
    if len(present) == 1:
        return present  # dropping it would leave the prompt empty
    if rng.random() < p_drop:
        dropped = rng.choice(present)
        return tuple(m for m in present if m != dropped)
    if rng.random() < p_swap:
        return tuple(reversed(present))
    return present


def apply_modality_dropout(sample: EcgR1Sample, rng: random.Random, p_drop: float = P_DROP,
                           p_swap: float = P_SWAP) -> EcgR1Sample:
    """A copy of `sample` with the dropped input removed and the prompt order set."""
    order = choose_modalities(sample.modalities(), rng, p_drop, p_swap)
    return replace(sample,
                   signal=sample.signal if "ecg" in order else None,
                   image=sample.image if "image" in order else None,
                   order=order)


__all__ = ["P_DROP", "P_SWAP", "apply_modality_dropout", "choose_modalities"]
