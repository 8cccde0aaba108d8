"""From one measured ECG to one training row: the step both corpus generators share.

    build_row(RowInput, out_dir) -> TrainingRow

The assistant text is the deterministic protocol reader's reading of the MEASURED features
(`ingest.protocol.read.protocol_read`): its six steps and narrative cite the numbers measured
on this very signal, so the reasoning is always grounded in what the model can see. The
`<answer>` carries the REFERENCE labels where a reference exists (a simulated truth, a
report's diagnoses) and the reader's own labels where none does. When the reader's labels
and the reference disagree, the row keeps the reference answer and records the
disagreement in `meta` (`reader_labels`, `reader_agrees`, `reader_missing`: reference
labels the reader did not write, `reader_extra`: reader labels not in the reference), so
SFT can filter on `meta.reader_agrees` and the corpus summary reports agreement per label.

The evidence (<= 3 lower-case phrases per step, for the RL evidence reward) is the
reader's: each phrase is a substring of its step's paragraph by construction.

Files: `signals/<id>.npy` ((12, 5000) float32 mV, 500 Hz) and `images/<id>.png` (the
4 px/mm rendering the model sees), paths relative to the corpus folder (`training.rows`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from ingest.ecg import Demographics
from ingest.measure.measured import GroundingFeatures
from ingest.protocol.read import protocol_read
from ingest.prepare.render import save_png
from ingest.report_format import format_output
from training.rows import TrainingRow, make_messages

Split = Literal["train", "val", "test"]
CORPUS_FILE = "corpus.jsonl"
REJECTED_FILE = "rejected.csv"
SUMMARY_FILE = "summary.json"


def split_for(key: str, val_percent: int = 10, test_percent: int = 10) -> Split:
    """A deterministic split from a key (a record id, or a patient id to keep patients together).

    sha256 of the key, not Python's hash(): the same key gets the same split on every run
    and machine.
    """
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + val_percent:
        return "val"
    return "train"


@dataclass
class RowInput:
    """What one record brings to its row."""

    id: str
    source: str
    signal: np.ndarray  # (12, 5000) float32 mV, 500 Hz
    image: Any  # PIL image (the 4 px/mm rendering)
    features: GroundingFeatures
    reference_labels: list[str] | None  # None: no reference; the reader's labels are the answer
    label_origin: Literal["simulated", "reference report", "protocol reader"]
    split: Split
    demographics: Demographics | None = None
    meta: dict[str, object] = field(default_factory=dict)


def _normalised(labels: list[str]) -> list[str]:
    seen: list[str] = []
    for label in labels:
        text = label.strip().lower()
        if text and text not in seen:
            seen.append(text)
    return seen


def build_row(item: RowInput, out_dir: Path) -> TrainingRow:
    """Read the features by the protocol, write the signal and image files, return the row."""
    reading = protocol_read(item.features, item.demographics)
    reader_labels = _normalised(reading.labels)
    labels = _normalised(item.reference_labels) if item.reference_labels is not None else reader_labels
    answer = format_output(reading.steps, reading.narrative, labels)

    signal_rel = f"signals/{item.id}.npy"
    image_rel = f"images/{item.id}.png"
    (out_dir / "signals").mkdir(parents=True, exist_ok=True)
    np.save(out_dir / signal_rel, np.asarray(item.signal, dtype=np.float32))
    save_png(item.image, out_dir / image_rel)

    meta = dict(item.meta)
    meta.update({
        "reader_labels": reader_labels,
        "reader_agrees": set(reader_labels) == set(labels),
        "reader_missing": [label for label in labels if label not in reader_labels],
        "reader_extra": [label for label in reader_labels if label not in labels],
        "measured": _measured_summary(item.features),
    })
    return TrainingRow(id=item.id, source=item.source, split=item.split, signal_path=signal_rel,
                       image_path=image_rel, messages=make_messages(answer), labels=labels,
                       evidence={step: phrases for step, phrases in reading.evidence.items() if phrases},
                       label_origin=item.label_origin, meta=meta)


def _measured_summary(features: GroundingFeatures) -> dict[str, float | None]:
    """The global measurements the reasoning cites, kept for analysis (e.g. HR error)."""
    g = features.global_
    return {"hr_bpm": g.hr_bpm, "pr_ms": g.pr_ms, "qrs_ms": g.qrs_ms, "qt_ms": g.qt_ms, "qtc_ms": g.qtc_ms,
            "qrs_axis_deg": g.qrs_axis_deg}


# --- the corpus summary -------------------------------------------------------------------------

class LabelAgreement(BaseModel):
    """How often the protocol reader wrote a reference label, and wrote it without reference."""

    reference: int  # rows whose reference has the label
    reader_found: int  # of those, rows where the reader wrote it too
    reader_extra: int  # rows where the reader wrote it and the reference did not

    @property
    def recall(self) -> float | None:
        return self.reader_found / self.reference if self.reference else None


class CorpusSummary(BaseModel):
    rows: int
    by_split: dict[str, int]
    label_counts: dict[str, int]
    rejected: int
    reader_agrees: int  # rows whose reader label set equals the reference set
    agreement: dict[str, LabelAgreement]
    seconds: float | None = None
    extra: dict[str, object] = {}

    def lines(self) -> list[str]:
        """The printed summary: rows per split, label counts with reader agreement, rejections."""
        out = [f"rows: {self.rows} ({', '.join(f'{k} {v}' for k, v in sorted(self.by_split.items()))}); "
               f"rejected: {self.rejected}"]
        if self.rows:
            out.append(f"protocol reader agrees with the reference on all labels: {self.reader_agrees}/{self.rows} "
                       f"({100.0 * self.reader_agrees / self.rows:.0f}%)")
        out.append(f"{'label':45s} {'rows':>5s} {'reader found':>12s} {'reader extra':>12s}")
        names = sorted(set(self.label_counts) | set(self.agreement),
                       key=lambda name: (-self.label_counts.get(name, 0), name))
        for name in names:
            agreement = self.agreement.get(name)
            found = "" if agreement is None or agreement.recall is None else f"{100 * agreement.recall:.0f}%"
            extra = "" if agreement is None else str(agreement.reader_extra)
            out.append(f"{name[:45]:45s} {self.label_counts.get(name, 0):5d} {found:>12s} {extra:>12s}")
        if self.seconds is not None:
            out.append(f"time: {self.seconds:.1f} s ({1000 * self.seconds / max(1, self.rows):.0f} ms per row)")
        return out


def summarise(rows: list[TrainingRow], rejected: int, seconds: float | None = None,
              extra: dict[str, object] | None = None) -> CorpusSummary:
    label_counts: Counter[str] = Counter()
    found: Counter[str] = Counter()
    extras: Counter[str] = Counter()
    agrees = 0
    for row in rows:
        reader = set(row.meta.get("reader_labels", []))  # type: ignore[arg-type]
        label_counts.update(row.labels)
        found.update(label for label in row.labels if label in reader)
        extras.update(label for label in reader if label not in row.labels)
        agrees += bool(row.meta.get("reader_agrees"))
    names = set(label_counts) | set(extras)
    return CorpusSummary(
        rows=len(rows), by_split=dict(Counter(row.split for row in rows)), label_counts=dict(label_counts),
        rejected=rejected, reader_agrees=agrees,
        agreement={name: LabelAgreement(reference=label_counts[name], reader_found=found[name],
                                        reader_extra=extras[name]) for name in sorted(names)},
        seconds=seconds, extra=extra or {})


def write_summary(out_dir: Path, summary: CorpusSummary) -> Path:
    path = out_dir / SUMMARY_FILE
    path.write_text(json.dumps(summary.model_dump(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


__all__ = ["CORPUS_FILE", "CorpusSummary", "LabelAgreement", "REJECTED_FILE", "RowInput", "SUMMARY_FILE",
           "build_row", "split_for", "summarise", "write_summary"]
