"""The tower probe: what heart rate the shipped demonstration model's frozen ECG tower carries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.measure.features import measure
from ingest.validation.references import load_references
from ingest.validation.run import model_window
from training.rows import TrainingRow, make_messages, write_rows
from training.tower_probe import probe_heart_rate

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "data" / "real"


def _real_dev_corpus(folder: Path, limit: int = 60) -> Path:
    """Training rows from data/real's dev split (never its test split), with their measured rate."""
    (folder / "signals").mkdir(parents=True)
    rows = []
    for reference in load_references(REAL, split="dev")[:limit]:
        signal, fs, _ = model_window(reference, REAL)
        rate = measure(signal, fs).global_.hr_bpm
        if rate is None:
            continue
        name = reference.key.replace("/", "-")
        np.save(folder / "signals" / f"{name}.npy", signal.astype(np.float32))
        rows.append(TrainingRow(id=name, source="manifest", signal_path=f"signals/{name}.npy",
                                messages=make_messages("<think>x</think><answer></answer>"),
                                meta={"measured": {"hr_bpm": rate}}))
    corpus = folder / "corpus.jsonl"
    write_rows(corpus, rows)
    return corpus


def test_the_demo_towers_tokens_carry_the_heart_rate_of_unseen_real_recordings(tmp_path: Path) -> None:
    report = probe_heart_rate(REPO / "model" / "demo", _real_dev_corpus(tmp_path), REAL)
    assert report.train_rows >= 50
    assert report.test_records >= 100  # the held-out split, measured
    # Better than saying every ECG has the average rate: the tower does see the beats.
    assert report.test_mae_bpm < report.mean_only_mae_bpm
    assert 0.0 <= report.test_within_10_bpm <= 1.0
    assert any("held-out real" in line for line in report.lines())
