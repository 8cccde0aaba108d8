"""Breathing wander on real recordings: the dev split with a slow swing added at every electrode (0.5 mV,
about 0.3 Hz, each electrode its own amplitude, rate and phase, the leads formed from the electrodes as a
cart forms them), read by the protocol reader beside the same records as recorded.

A spline through one PR knot a beat cannot follow such a swing between slow beats, and what it leaves
under the P waves hid them: sinus rhythms turned "undetermined". With T-P knots where the baseline moves
(`ingest.measure.features._tp_knots`) they stay sinus.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from benchmarks.perturbations import wander
from ingest.measure.features import measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.run import model_window

FS = 500.0
# A sine at each of RA, LA, LL and V1-V6 (30-100 % of 0.5 mV, 0.21-0.39 Hz) through the lead definitions.
BREATHING = wander(0.5)


@pytest.fixture(scope="module")
def readings() -> list[tuple[set[str], set[str]]]:
    """(labels as recorded, labels with the wander) for every dev record."""
    pairs = []
    for reference in load_references(DEFAULT_DATA_DIR, "dev"):
        signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
        assert fs == FS
        wandering = BREATHING(signal, np.random.default_rng(zlib.crc32(reference.key.encode())))
        pairs.append(tuple(set(protocol_read(measure(s, fs), ecg.demographics).labels)
                           for s in (signal, wandering)))
    return pairs


def test_wander_does_not_hide_the_sinus_rhythm(readings) -> None:
    def count(changed) -> int:
        return sum(1 for recorded, wandering in readings if changed(recorded, wandering))

    sinus = (v.SINUS_RHYTHM, v.SINUS_BRADYCARDIA, v.SINUS_TACHYCARDIA)
    lost_sinus = count(lambda recorded, wandering: any(label in recorded and label not in wandering
                                                       for label in sinus))
    made_undetermined = count(lambda recorded, wandering: v.UNDETERMINED_RHYTHM in wandering - recorded)
    made_af = count(lambda recorded, wandering: v.ATRIAL_FIBRILLATION in wandering - recorded)
    # Of the 180, with one knot a beat: 21 sinus rhythms lost, 19 made undetermined, 3 made atrial
    # fibrillation; when written: 6, 4 and 2. Since a recording of suspect gain is measured (PTB-XL HR20715,
    # five times its original's scale, had no lead measured before), 7, 4 and 3: its sinus P waves, found
    # before 5 of its 9 regular beats as recorded, are lost under the swing among its premature beats.
    assert lost_sinus <= 8
    assert made_undetermined <= 6
    assert made_af <= 3
