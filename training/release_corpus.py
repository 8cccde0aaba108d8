"""Importer for the ECG-R1 release's corpus format (ms-swift JSONL) into our training rows.

    ecg-worklist train import-release FILE.jsonl OUT [--ecg-root DIR] [--image-root DIR] [--limit N]
    import_release_corpus(jsonl, out_dir, ecg_root=..., image_root=...) -> ReleaseImport

A release row (ECG-Protocol-Guided-Grounding-CoT, its RL set "with solution") is one JSON object:

    {"messages": [{"role": "system", ...}, {"role": "user", "content": "<ecg><image>\\n..."},
                  {"role": "assistant", "content": "<think>...</think>...<answer>...</answer>"}],
     "images": ["path/to/page.png"],
     "objects": {"ecg": ["path/to/wfdb_record"]}      (also accepted: "ecgs": [...] or "ecg": "...")
     "solution": "<|answer|>label; label<|/answer|>
                  <|key_diagnostic_evidence|>step_1_technical_rate_rhythm: a; b
                  step_2_conduction_axis_intervals: c ...<|/key_diagnostic_evidence|>"}

What becomes of it (`training.rows.TrainingRow`):
- `labels`: the `<|answer|>` text split on ';' (the release's diagnosis reward reads the same
  span; a closing tag written `<|/answer|>` or `<|\\answer|>` is accepted, as the release does);
  without an `<|answer|>` span the assistant's `<answer>` is used and the row says so in `meta`.
- `evidence`: each `step_N_<name>: phrase; phrase` of the `<|key_diagnostic_evidence|>` span
  (the whole solution when that span is missing, as the release's evidence reward falls back),
  step N -> its phrases; more than 3 phrases keep the first 3 and `meta.evidence_cut` says so.
- the ECG: the WFDB record read by the worklist's own reader (`ingest.readers.read.read_ecg`,
  leads by name into the standard order, resampled to 500 Hz) and prepared as the model window
  (`signals/<id>.npy`); the image path is kept as given (resolved against `--image-root`,
  stored relative to the output folder when possible).
- `split`: by the same hash of the id as our corpora (80/10/10); `label_origin` "reference report".
A row that cannot be used (no assistant turn, unreadable ECG, neither ECG nor image) is listed
in `rejected.csv` with its line and reason, never silently dropped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from model.prompts import SYSTEM_PROMPT
from training.build import split_for
from training.rows import MAX_EVIDENCE_PER_STEP, Message, TrainingRow, write_rows

_ANSWER = re.compile(r"<\|answer\|>(.*?)<\|[/\\]answer\|>", re.DOTALL)
_EVIDENCE = re.compile(r"<\|key_diagnostic_evidence\|>(.*?)<\|[/\\]key_diagnostic_evidence\|>", re.DOTALL | re.IGNORECASE)
_STEP_ITEM = re.compile(r"(step_(\d+)_[a-z_]+):\s*(.*?)(?=\s*step_\d+|$)", re.DOTALL | re.IGNORECASE)
_MODEL_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class ParsedSolution(BaseModel):
    labels: list[str] | None  # None: no <|answer|> span
    evidence: dict[int, list[str]]
    evidence_cut: dict[int, int] = {}  # step -> phrases dropped past the third


class ReleaseImport(BaseModel):
    path: str
    rows: int
    rejected: int
    splits: dict[str, int]


def parse_solution(solution: str) -> ParsedSolution:
    """Labels and per-step evidence of a release `solution` string."""
    answer = _ANSWER.search(solution)
    labels = None
    if answer is not None:
        labels = [part.strip().lower() for part in answer.group(1).split(";") if part.strip()]
    block = _EVIDENCE.search(solution)
    text = block.group(1).strip() if block else solution.strip()
    evidence: dict[int, list[str]] = {}
    cut: dict[int, int] = {}
    for _key, number, content in _STEP_ITEM.findall(text):
        step = int(number)
        if not 1 <= step <= 6:
            continue
        phrases = [p.strip() for p in content.split(";") if p.strip()]
        if len(phrases) > MAX_EVIDENCE_PER_STEP:
            cut[step] = len(phrases) - MAX_EVIDENCE_PER_STEP
            phrases = phrases[:MAX_EVIDENCE_PER_STEP]
        if phrases:
            evidence[step] = phrases
    return ParsedSolution(labels=labels, evidence=evidence, evidence_cut=cut)


def _ecg_path(record: dict[str, Any]) -> str | None:
    objects = record.get("objects")
    candidates: Any = None
    if isinstance(objects, dict):
        candidates = objects.get("ecg")
    if candidates is None:
        candidates = record.get("ecgs", record.get("ecg"))
    if isinstance(candidates, str):
        return candidates
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], str):
        return candidates[0]
    return None


def _resolve(path: str, root: Path | None) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() or root is None else root / candidate


def _relative(path: Path, out_dir: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), out_dir.resolve())
    except ValueError:  # another drive
        return str(path.resolve())


def _read_signal(path: Path) -> np.ndarray:
    from ingest.prepare import prepare
    from ingest.readers.read import read_ecg

    prepared = prepare(read_ecg(path if path.suffix else path.with_suffix(".hea")))
    if prepared.model_signal is None:
        raise ValueError(f"{path}: no signal")
    return np.asarray(prepared.model_signal, dtype=np.float32)


def release_row(record: dict[str, Any], index: int, out_dir: Path, *, ecg_root: Path | None,
                image_root: Path | None) -> TrainingRow:
    """One release JSON object as a training row (signal written under out_dir/signals)."""
    messages = [Message(role=m["role"], content=m["content"]) for m in record.get("messages", [])
                if m.get("role") in ("system", "user", "assistant")]
    if not any(m.role == "assistant" for m in messages):
        raise ValueError("no assistant turn")
    if messages[0].role != "system":
        messages.insert(0, Message(role="system", content=SYSTEM_PROMPT))
    row_id = str(record.get("id") or f"release-{index:06d}")
    solution = parse_solution(str(record.get("solution", "")))
    meta: dict[str, object] = {"release_line": index + 1}
    labels = solution.labels
    if labels is None:
        answer = _MODEL_ANSWER.search(next(m.content for m in reversed(messages) if m.role == "assistant"))
        labels = [p.strip().lower() for p in answer.group(1).split(";") if p.strip()] if answer else []
        meta["labels_from"] = "assistant <answer> (no <|answer|> in solution)"
    if solution.evidence_cut:
        meta["evidence_cut"] = solution.evidence_cut

    signal_path = None
    ecg = _ecg_path(record)
    if ecg is not None:
        source = _resolve(ecg, ecg_root)
        signal = _read_signal(source)
        target = out_dir / "signals" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', row_id)}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, signal)
        signal_path = _relative(target, out_dir)
        meta["record"] = str(source)
    image_path = None
    images = record.get("images") or []
    if images:
        first = images[0] if isinstance(images[0], str) else images[0].get("path")
        if first:
            image_path = _relative(_resolve(first, image_root), out_dir)
    if signal_path is None and image_path is None:
        raise ValueError("neither an ECG nor an image")
    return TrainingRow(id=row_id, source="ecg-r1-release", split=split_for(row_id), signal_path=signal_path,
                       image_path=image_path, messages=messages, labels=labels, evidence=solution.evidence,
                       label_origin="reference report", meta=meta)


def import_release_corpus(jsonl: Path, out_dir: Path, *, ecg_root: Path | None = None,
                          image_root: Path | None = None, limit: int | None = None) -> ReleaseImport:
    """Convert a release JSONL to `out_dir/corpus.jsonl`; unusable lines go to `out_dir/rejected.csv`."""
    jsonl, out_dir = Path(jsonl), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[TrainingRow] = []
    rejected: list[tuple[int, str]] = []
    with jsonl.open(encoding="utf-8") as lines:
        for index, line in enumerate(lines):
            if limit is not None and index >= limit:
                break
            if not line.strip():
                continue
            try:
                rows.append(release_row(json.loads(line), index, out_dir, ecg_root=ecg_root, image_root=image_root))
            except Exception as error:  # every unusable line is listed with its reason
                rejected.append((index + 1, f"{type(error).__name__}: {error}"))
    path = out_dir / "corpus.jsonl"
    write_rows(path, rows)
    with (out_dir / "rejected.csv").open("w", encoding="utf-8") as out:
        out.write("line,reason\n")
        for number, reason in rejected:
            out.write(f"{number},\"{reason.replace(chr(34), chr(39))}\"\n")
    splits: dict[str, int] = {}
    for row in rows:
        splits[row.split] = splits.get(row.split, 0) + 1
    return ReleaseImport(path=str(path), rows=len(rows), rejected=len(rejected), splits=splits)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--ecg-root", type=Path, default=None)
    parser.add_argument("--image-root", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    result = import_release_corpus(args.jsonl, args.out, ecg_root=args.ecg_root, image_root=args.image_root,
                                   limit=args.limit)
    print(result.model_dump_json(indent=1))


if __name__ == "__main__":
    main()


__all__ = ["ParsedSolution", "ReleaseImport", "import_release_corpus", "parse_solution", "release_row"]
