"""How much heart rate a checkpoint's ECG tower (or ViT) carries: a linear probe of its tokens on real recordings.

    python -m training.tower_probe --model model/demo --corpus WORK/all/corpus.jsonl [--data data/real] [--tower vision]
    probe_heart_rate(model_dir, corpus_file, data_dir, tower="ecg") -> ProbeReport

The demonstration model's tower is frozen after pretraining (training/tower.py), so the language
model can read from the ECG only what the tower's tokens carry. This puts a number on that
ceiling: the tower's tokens, mean-pooled, are fitted to the measured heart rate by ridge
regression on the corpus's TRAINING rows, and the fit is then scored on the held-out TEST split
of the real recordings (`data_dir`, as `train eval-real` reads them; their heart rate measured
by our own measurement, as `eval-real` scores the model's). If the probe's error is about the
model's own, the tower is the bottleneck; if it is far lower, the projector and the language
model are. With `tower="vision"` the same is done for the ViT: its merged tokens of each row's
page (the training rows' images; the held-out records' pages drawn as the engines draw them).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from pydantic import BaseModel

from training.rows import read_rows
from training.config import TowerPool
from training.tower import load_signals, pooled_tokens
from training.vision_tower import Pages, load_pages, patch_embedding_as_matmul, processor_sized

RIDGE = 10.0  # on standardised features: enough to keep 64 features from fitting ~650 rows by heart
WITHIN_BPM = 10.0


class ProbeReport(BaseModel):
    tower: str = "ecg"
    pool: TowerPool = "mean"  # the ECG tower's tokens averaged, or its first (CLS) token alone
    train_rows: int
    test_records: int
    train_mae_bpm: float
    test_mae_bpm: float
    test_within_10_bpm: float  # share of test records whose probed rate is within 10 bpm of the measured one
    mean_only_mae_bpm: float  # the test error of always saying the training rows' mean rate

    def lines(self) -> list[str]:
        name = "ECG tower" if self.tower == "ecg" else "ViT"
        pooled = "the first (CLS) token" if self.pool == "cls" else "mean-pooled tokens"
        return [f"{name} heart-rate probe (ridge on {pooled}; {self.train_rows} training rows -> "
                f"{self.test_records} held-out real records):",
                f"  training rows: mean |error| {self.train_mae_bpm:.1f} bpm",
                f"  held-out real: mean |error| {self.test_mae_bpm:.1f} bpm, within {WITHIN_BPM:g} bpm on "
                f"{self.test_within_10_bpm:.2f} (saying the mean rate: {self.mean_only_mae_bpm:.1f} bpm)"]


def _pooled(tower: torch.nn.Module, signals: torch.Tensor, pool: TowerPool = "mean") -> np.ndarray:
    with torch.no_grad():
        return torch.cat([pooled_tokens(tower(signals[i:i + 32]), pool)
                          for i in range(0, len(signals), 32)]).numpy()


def ridge_fit(features: np.ndarray, targets: np.ndarray,
              ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, sd, weights) of a ridge fit on standardised features with an intercept."""
    mean, sd = features.mean(axis=0), features.std(axis=0) + 1e-6
    design = np.c_[(features - mean) / sd, np.ones(len(features))]
    weights = np.linalg.solve(design.T @ design + ridge * np.eye(design.shape[1]), design.T @ targets)
    return mean, sd, weights


def ridge_predict(fit: tuple[np.ndarray, np.ndarray, np.ndarray], features: np.ndarray) -> np.ndarray:
    mean, sd, weights = fit
    return np.c_[(features - mean) / sd, np.ones(len(features))] @ weights


def _pooled_pages(model: torch.nn.Module, pages: Pages) -> np.ndarray:
    visual = model.model.visual
    pooled = []
    with torch.no_grad(), patch_embedding_as_matmul(visual):
        for start in range(0, len(pages.images), 16):
            pixel_values, grids = pages.batch(range(start, min(start + 16, len(pages.images))))
            tokens = model.model.get_image_features(pixel_values, grids).pooler_output
            pooled.append(torch.stack([page.mean(dim=0) for page in tokens]))
    return torch.cat(pooled).numpy()


def probe_heart_rate(model_dir: Path, corpus_file: Path, data_dir: Path, tower: str = "ecg",
                     pool: TowerPool = "mean") -> ProbeReport:
    from ingest.prepare import prepare
    from ingest.readers.read import read_ecg
    from ingest.validation.references import load_references
    from model.processing_ecg_r1 import prepare_signal
    from training.sft import load_model

    if tower not in ("ecg", "vision"):
        raise ValueError(f"tower must be ecg or vision, not {tower!r}")
    model, processor = load_model(model_dir)
    model.eval()
    needs = "signal_path" if tower == "ecg" else "image_path"
    rows = [row for row in read_rows(corpus_file, split="train") if getattr(row, needs) is not None
            and isinstance(row.meta.get("measured"), dict) and row.meta["measured"].get("hr_bpm")]
    train_rate = np.array([float(row.meta["measured"]["hr_bpm"]) for row in rows])  # type: ignore[index]
    if tower == "ecg":
        train_features = _pooled(model.model.ecg_tower, load_signals(corpus_file, rows), pool)
    else:
        train_features = _pooled_pages(model, load_pages(corpus_file, rows, processor))
    fit = ridge_fit(train_features, train_rate)
    train_error = np.abs(ridge_predict(fit, train_features) - train_rate)

    inputs, test_rate = [], []
    for reference in load_references(data_dir, split="test"):
        prepared = prepare(read_ecg(reference.file(data_dir)))
        rate = prepared.features.global_.hr_bpm if prepared.features is not None else None
        if rate is None or prepared.model_signal is None:
            continue
        test_rate.append(rate)
        inputs.append(prepare_signal(prepared.model_signal) if tower == "ecg"
                      else processor_sized(prepared.page(), processor))
    measured = np.array(test_rate)
    if tower == "ecg":
        test_features = _pooled(model.model.ecg_tower, torch.from_numpy(np.stack(inputs)), pool)
    else:
        test_features = _pooled_pages(model, Pages(inputs, processor))
    test_error = np.abs(ridge_predict(fit, test_features) - measured)
    return ProbeReport(tower=tower, pool=pool if tower == "ecg" else "mean", train_rows=len(rows),
                       test_records=len(measured),
                       train_mae_bpm=round(float(train_error.mean()), 1), test_mae_bpm=round(float(test_error.mean()), 1),
                       test_within_10_bpm=round(float((test_error <= WITHIN_BPM).mean()), 2),
                       mean_only_mae_bpm=round(float(np.abs(measured - train_rate.mean()).mean()), 1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus the model was trained on")
    parser.add_argument("--data", type=Path, default=Path("data/real"), help="real recordings with a test split")
    parser.add_argument("--tower", choices=("ecg", "vision"), default="ecg", help="which tower's tokens")
    parser.add_argument("--pool", choices=get_args(TowerPool), default="mean",
                        help="the ECG tower's tokens averaged, or its first (CLS) token alone")
    args = parser.parse_args(argv)
    print("\n".join(probe_heart_rate(args.model, args.corpus, args.data, args.tower, args.pool).lines()))


if __name__ == "__main__":
    main()
