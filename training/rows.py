"""The training row: one line of a corpus JSONL file, the boundary between data and training.

Corpus generation (`training.corpus`, `training.synthetic`) writes rows; SFT, RL and
evaluation read them. One row per ECG:

    {"id": "synthetic-00012",
     "source": "synthetic" | "ptb-xl" | "mimic-iv-ecg" | "manifest",
     "split": "train" | "val" | "test",
     "signal_path": "signals/synthetic-00012.npy",     # (12, 5000) float32 mV, 500 Hz; null for image-only
     "image_path": "images/synthetic-00012.png",       # the rendered 12-lead (or a PDF page); null if none
     "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                  {"role": "user", "content": "<ecg><image>\\n" + INSTRUCTION},
                  {"role": "assistant", "content": "<think>...</think>...<answer>...</answer>"}],
     "labels": ["sinus rhythm", "first degree av block"],   # reference diagnoses (lower case)
     "evidence": {"1": ["sinus rhythm", "72 bpm"], ...},   # step -> <= 3 key phrases (RL reward)
     "label_origin": "simulated" | "reference report" | "protocol reader",
     "meta": {...}}                                        # free: generator parameters, record path

Paths are relative to the JSONL file's folder, so a corpus folder can be moved whole.
The user message carries both tags; Interleaved Modality Dropout (`model.dropout`) decides
per sample at training time which inputs a prompt keeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from model.prompts import INSTRUCTION, SYSTEM_PROMPT

USER_TAGS = "<ecg><image>"
MAX_EVIDENCE_PER_STEP = 3


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class TrainingRow(BaseModel):
    id: str
    source: str
    split: Literal["train", "val", "test"] = "train"
    signal_path: str | None = None
    image_path: str | None = None
    messages: list[Message]
    labels: list[str] = Field(default_factory=list)
    evidence: dict[int, list[str]] = Field(default_factory=dict)
    label_origin: Literal["simulated", "reference report", "protocol reader"] = "protocol reader"
    meta: dict[str, object] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _lower_case_labels(cls, labels: list[str]) -> list[str]:
        return [label.strip().lower() for label in labels if label.strip()]

    @field_validator("evidence")
    @classmethod
    def _short_evidence(cls, evidence: dict[int, list[str]]) -> dict[int, list[str]]:
        for step, phrases in evidence.items():
            if not 1 <= step <= 6:
                raise ValueError(f"evidence for step {step}: steps are 1-6")
            if len(phrases) > MAX_EVIDENCE_PER_STEP:
                raise ValueError(f"step {step} has {len(phrases)} evidence phrases (at most {MAX_EVIDENCE_PER_STEP})")
        return evidence

    @property
    def answer(self) -> str:
        """The reference assistant text (the SFT target)."""
        return next(m.content for m in reversed(self.messages) if m.role == "assistant")

    def prompt_messages(self) -> list[Message]:
        """The messages up to (not including) the assistant's answer."""
        return [m for m in self.messages if m.role != "assistant"]


def make_messages(answer: str) -> list[Message]:
    """The release's system prompt, the user turn with both modality tags, and the answer."""
    return [Message(role="system", content=SYSTEM_PROMPT),
            Message(role="user", content=f"{USER_TAGS}\n{INSTRUCTION}"),
            Message(role="assistant", content=answer)]


def write_rows(path: Path, rows: Iterable[TrainingRow]) -> int:
    """Write rows as JSONL (atomically: a temporary file renamed into place). Returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(row.model_dump_json() + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_rows(path: Path, split: str | None = None) -> Iterator[TrainingRow]:
    """Rows of a JSONL corpus (optionally one split); a bad line raises naming file and line."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = TrainingRow.model_validate(json.loads(line))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a training row: {error}") from error
            if split is None or row.split == split:
                yield row


def resolve(corpus_file: Path, relative: str | None) -> Path | None:
    """A row's signal/image path, taken relative to the corpus file's folder."""
    return None if relative is None else (corpus_file.parent / relative)


__all__ = ["MAX_EVIDENCE_PER_STEP", "Message", "SYSTEM_PROMPT", "TrainingRow", "USER_TAGS",
           "make_messages", "read_rows", "resolve", "write_rows"]
