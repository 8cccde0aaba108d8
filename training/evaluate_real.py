"""A model beside the protocol reader on REAL recordings (data/real), for what a demo must get right.

    ecg-worklist train eval-real --model PATH [--data data/real] [--split test] [--limit N] [--out FILE]
    evaluate_real(model_dir, data_dir, split="test") -> RealEvalReport

The simulated evaluation (`training.evaluate`) scores label sets against simulated truth. On
real recordings the references are cardiologists' or devices' statements (SNOMED codes mapped
by `ingest.validation.labels`), so three plain figures are measured per interpreter and input
(signal+image, signal only, image only), each over the records of the split:

- rhythm right: the rhythm class of the written labels (`labels.reader_rhythm`) against the
  reference's rhythm class (`labels.rhythm_correct`), over records whose reference states one;
- heart rate within 10 bpm: the heart rate the reading states ("Heart rate 72 bpm", first
  occurrence) against the heart rate measured on the same signal by the worklist
  (`ingest.measure`, the value every draft cites); a reading without a heart rate is a miss;
- distinct label sets: how many different label sets the readings of the first 30 records
  (or all, when fewer) contain: a reader that ignores its input writes one.

The split is data/real's own (`dev` is for tuning and training, `test` is held out); the
report names it and the sources. Nothing here trains or tunes on the records it scores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from training.rewards import label_set

HR_STATED = re.compile(r"heart rate[^0-9\n]{0,24}?(\d{2,3})\s*(?:bpm|/min|beats)", re.IGNORECASE)
DISTINCT_OVER = 30
HR_TOLERANCE_BPM = 10.0
INPUT_KINDS = ("signal+image", "signal only", "image only")


def stated_heart_rate(text: str) -> float | None:
    """The first heart rate a reading states, in bpm (None when it states none)."""
    match = HR_STATED.search(text or "")
    return float(match.group(1)) if match else None


class RealFigures(BaseModel):
    interpreter: str
    input: str
    records: int
    rhythm_records: int  # records whose reference states a rhythm class
    rhythm_right: float | None
    hr_records: int  # records with a measured heart rate
    hr_within_10: float | None
    hr_mean_abs_error: float | None  # over readings that state a heart rate
    distinct_label_sets: int  # over the first DISTINCT_OVER records
    distinct_over: int


class RealRecordRow(BaseModel):
    key: str
    reference_rhythm: str | None
    measured_hr: float | None
    readings: dict[str, dict[str, Any]] = Field(default_factory=dict)  # "interpreter/input" -> labels, rhythm, hr


class RealEvalReport(BaseModel):
    data_dir: str
    split: str
    sources: dict[str, int]
    unreadable: list[str] = Field(default_factory=list)
    figures: list[RealFigures]
    records: list[RealRecordRow]

    def figure(self, interpreter: str, kind: str) -> RealFigures:
        return next(f for f in self.figures if f.interpreter == interpreter and f.input == kind)

    def table(self) -> str:
        lines = [f"Real recordings: data/real split `{self.split}`, {sum(self.sources.values())} records "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(self.sources.items()))})"
                 + (f"; {len(self.unreadable)} unreadable" if self.unreadable else ""), "",
                 "| interpreter | input | rhythm right | HR within 10 bpm | HR mean abs error | distinct label sets |",
                 "|---|---|---:|---:|---:|---:|"]
        for f in self.figures:
            rhythm = "n/a" if f.rhythm_right is None else f"{f.rhythm_right:.3f} ({f.rhythm_records})"
            hr = "n/a" if f.hr_within_10 is None else f"{f.hr_within_10:.3f} ({f.hr_records})"
            mae = "n/a" if f.hr_mean_abs_error is None else f"{f.hr_mean_abs_error:.1f} bpm"
            lines.append(f"| {f.interpreter} | {f.input} | {rhythm} | {hr} | {mae} | "
                         f"{f.distinct_label_sets} of {f.distinct_over} |")
        return "\n".join(lines) + "\n"


def _figures(interpreter: str, kind: str, rows: Sequence[RealRecordRow]) -> RealFigures:
    from ingest.validation import labels as lb

    key = f"{interpreter}/{kind}"
    scored = [r for r in rows if key in r.readings]
    with_rhythm = [r for r in scored if r.reference_rhythm is not None]
    right = [lb.rhythm_correct(r.reference_rhythm, r.readings[key]["rhythm"]) for r in with_rhythm]  # type: ignore[arg-type]
    with_hr = [r for r in scored if r.measured_hr is not None]
    errors = [abs(r.readings[key]["hr"] - r.measured_hr) for r in with_hr if r.readings[key]["hr"] is not None]
    within = [r.readings[key]["hr"] is not None and abs(r.readings[key]["hr"] - r.measured_hr) <= HR_TOLERANCE_BPM
              for r in with_hr]
    first = scored[:DISTINCT_OVER]
    return RealFigures(
        interpreter=interpreter, input=kind, records=len(scored), rhythm_records=len(with_rhythm),
        rhythm_right=round(sum(right) / len(right), 4) if right else None, hr_records=len(with_hr),
        hr_within_10=round(sum(within) / len(within), 4) if within else None,
        hr_mean_abs_error=round(sum(errors) / len(errors), 2) if errors else None,
        distinct_label_sets=len({tuple(sorted(r.readings[key]["labels"])) for r in first}), distinct_over=len(first))


def _reading(text: str) -> dict[str, Any]:
    from ingest.report_format import parse_output
    from ingest.validation import labels as lb

    labels = sorted(label_set(parse_output(text).labels))
    return {"labels": labels, "rhythm": lb.reader_rhythm(labels), "hr": stated_heart_rate(text)}


def evaluate_real(model_dir: Path | str, data_dir: Path | str = Path("data/real"), split: str = "test",
                  limit: int | None = None, *, batch_size: int = 8, max_new_tokens: int = 1024,
                  inputs: Sequence[str] = INPUT_KINDS, progress: bool = True) -> RealEvalReport:
    """The model (hf engine, greedy) and the protocol reader on data/real's `split`."""
    from tqdm import tqdm

    from ingest.prepare import prepare
    from ingest.protocol import ProtocolReader
    from ingest.readers.read import read_ecg
    from ingest.validation.references import load_references
    from model.engines import load_engine
    from model.engines.base import GenerationRequest

    data_dir = Path(data_dir)
    references = load_references(data_dir, split=split)[:limit]
    engine = load_engine("hf", model_dir, max_new_tokens=max_new_tokens, batch_size=batch_size, device="cpu")
    reader = ProtocolReader()
    rows: list[RealRecordRow] = []
    unreadable: list[str] = []
    sources: dict[str, int] = {}
    for start in tqdm(range(0, len(references), batch_size), desc="real recordings", disable=not progress):
        chunk = []
        for reference in references[start:start + batch_size]:
            try:
                prepared = prepare(read_ecg(reference.file(data_dir)))
            except Exception as error:  # listed, never silently skipped
                unreadable.append(f"{reference.key}: {type(error).__name__}: {error}")
                continue
            if prepared.model_signal is None:
                unreadable.append(f"{reference.key}: no signal")
                continue
            chunk.append((reference, prepared))
        if not chunk:
            continue
        requests = {"signal+image": [GenerationRequest(signal=p.model_signal, image=p.page()) for _, p in chunk],
                    "signal only": [GenerationRequest(signal=p.model_signal) for _, p in chunk],
                    "image only": [GenerationRequest(image=p.page()) for _, p in chunk]}
        requests = {kind: batch for kind, batch in requests.items() if kind in inputs}
        texts = {kind: [r.text for r in engine.generate(batch)] for kind, batch in requests.items()}
        reader_texts = [i.raw_text for i in reader.interpret([p for _, p in chunk])]
        for i, (reference, prepared) in enumerate(chunk):
            sources[reference.source] = sources.get(reference.source, 0) + 1
            hr = prepared.features.global_.hr_bpm if prepared.features is not None else None
            row = RealRecordRow(key=reference.key, reference_rhythm=reference.labels.rhythm,
                                measured_hr=float(hr) if hr is not None else None)
            for kind in inputs:
                row.readings[f"model/{kind}"] = _reading(texts[kind][i])
            row.readings["protocol reader/signal+image"] = _reading(reader_texts[i])
            rows.append(row)
    figures = [_figures("model", kind, rows) for kind in inputs]
    figures.append(_figures("protocol reader", "signal+image", rows))
    return RealEvalReport(data_dir=str(data_dir), split=split, sources=sources, unreadable=unreadable,
                          figures=figures, records=rows)


__all__ = ["RealEvalReport", "RealFigures", "evaluate_real", "stated_heart_rate"]
