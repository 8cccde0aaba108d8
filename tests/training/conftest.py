"""Fixtures of the training tests: a handful of corpus rows made here, and a tiny model trained on them.

The rows are made the way the corpus generator makes them (a simulated 12-lead from
`training.synthetic.simulate`, its rendering, the protocol reader's reading as the answer),
but written by this file so these tests do not depend on the generator's sizes or splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.measure.features import measure
from ingest.protocol import protocol_read
from ingest.prepare.render import render_12lead, save_png
from training.rows import TrainingRow, make_messages, write_rows
from training.synthetic import FS, simulate


def write_corpus(folder: Path, count: int, seed: int = 7, test_rows: int = 0, measured: bool = False) -> Path:
    """`count` rows (the last `test_rows` of them in the test split) with .npy signals and .png images;
    `measured`: each row's meta carries its measured heart rate, as the demo's corpus rows do."""
    (folder / "signals").mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    rows = []
    for index in range(count):
        row_id = f"t-{index:03d}"
        signal, _truth = simulate(row_id, seed, index)
        features = measure(signal, FS)
        reading = protocol_read(features)
        np.save(folder / "signals" / f"{row_id}.npy", signal.astype(np.float32))
        save_png(render_12lead(signal, FS), folder / "images" / f"{row_id}.png")
        rows.append(TrainingRow(
            id=row_id, source="synthetic", split="test" if index >= count - test_rows else "train",
            signal_path=f"signals/{row_id}.npy", image_path=f"images/{row_id}.png",
            messages=make_messages(reading.text), labels=reading.labels, evidence=reading.evidence,
            meta={"measured": {"hr_bpm": features.global_.hr_bpm}} if measured else {}))
    corpus = folder / "corpus.jsonl"
    write_rows(corpus, rows)
    return corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight rows: six train, two test."""
    return write_corpus(tmp_path_factory.mktemp("corpus"), 8, test_rows=2)


@pytest.fixture(scope="session")
def measured_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six training rows whose meta carries the measured heart rate."""
    return write_corpus(tmp_path_factory.mktemp("measured-corpus"), 6, measured=True)
