"""Arm electrodes swapped, on real recordings: the dev split with its left and right arm leads swapped in
software (lead I inverted, II and III, aVR and aVL exchanged), read by the protocol reader.

The swap is suspected on most of them and on none of the records as recorded; where it is, the
reading does not turn the swap into findings (an axis deviation, Q waves in I and aVL, a rhythm
that is not sinus because the P wave is upright in what is really aVL).
"""

from __future__ import annotations

import pytest

from benchmarks.perturbations import arms_swapped
from ingest.measure.features import measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.validation.evaluate import Evaluation
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.run import OURS, model_window

@pytest.fixture(scope="module")
def readings() -> list[tuple[set[str], set[str]]]:
    """(labels as recorded, labels with the arms swapped) for every readable dev record."""
    pairs = []
    for reference in load_references(DEFAULT_DATA_DIR, "dev"):
        signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
        pairs.append(tuple(set(protocol_read(measure(s, fs), ecg.demographics).labels)
                           for s in (signal, arms_swapped(signal))))
    return pairs


def test_no_record_as_recorded_is_suspected(evaluation: Evaluation) -> None:
    rows = [row for row in evaluation.rows if row.delineator == OURS]
    assert len(rows) == 332
    assert not [row.key for row in rows if v.LEAD_REVERSAL in row.labels]


def test_the_swap_is_suspected_on_most_dev_records_and_not_read_as_findings(readings) -> None:
    assert len(readings) == 180
    suspected = [(recorded, swapped) for recorded, swapped in readings if v.LEAD_REVERSAL in swapped]
    assert len(suspected) >= 115  # 120 when written; the earlier rule (P, QRS and T all negative in I) 91
    # Where it is suspected, the axis is not read.
    assert not [swapped for _, swapped in suspected
                if swapped & {v.RIGHT_AXIS_DEVIATION, v.LEFT_AXIS_DEVIATION, v.EXTREME_AXIS_DEVIATION}]

    def made_up(label: str) -> int:
        return sum(label in swapped and label not in recorded for recorded, swapped in readings)

    # Labels the swap adds over all 180 (most now on the records where it is not suspected); before the
    # swap was read as such: right axis deviation 121, extreme 37, pathological Q waves 57, undetermined
    # rhythm 79. When written: 30, 11, 5, 16.
    assert made_up(v.RIGHT_AXIS_DEVIATION) <= 35
    assert made_up(v.EXTREME_AXIS_DEVIATION) <= 15
    assert made_up(v.PATHOLOGICAL_Q_WAVES) <= 8
    assert made_up(v.UNDETERMINED_RHYTHM) <= 20
