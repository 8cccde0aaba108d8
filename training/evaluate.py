"""Held-out evaluation: ECG-R1 and the protocol reader on the same rows, side by side.

    report = evaluate(Path("corpus/rows.jsonl"), "/models/ecg-r1", split="test", limit=200)
    print(render_markdown(report))                          # the table the README shows
    ecg-worklist train eval --model PATH --corpus FILE [--split test] [--limit N] [--out eval.json]

Each row is read three ways by each interpreter:
- "signal+image": whatever the row has (the figures in the headline come from this input);
- "signal" only and "image" only, for rows that have both (the modality-missing consistency:
  BLEU-4 and ROUGE-L of the image-only output against the signal-only output).

The model goes through `model.engines.load_engine("hf", path)` (greedy, batched). The protocol
reader measures the row's signal again (`ingest.measure.features.measure`) and reads the features;
given only the image it has nothing to measure and writes its "image only" output, so its
image-only figures and its consistency are what that gives: low by construction, reported
as they are. A row missing its image gets one rendered from its signal, as the worker does.

For each interpreter the report holds, on the signal+image input: the exact-match label
accuracy, the per-label-space figures of `training.metrics` (protocol vocabulary, PTB-XL
super classes, CPSC 2018, CODE-15%), the format validity, and the mean EDER rewards; per
input, the format validity and the mean rewards; and the consistency. Definitions are in
`training.metrics`, `training.rewards` and training/README.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from tqdm import tqdm

from ingest.protocol import PROTOCOL_READER_NAME, PROTOCOL_READER_VERSION
from ingest.report_format import parse_output
from training.metrics import (ECGBENCH_SPACES, Consistency, SpaceMetrics, consistency, exact_match, mean,
                              protocol_space, space_metrics)
from training.rewards import eder_rewards, label_set
from training.rows import TrainingRow, read_rows, resolve

if TYPE_CHECKING:
    from ingest.prepare import PreparedEcg
    from model.engines.base import Engine

Input = Literal["signal+image", "signal", "image"]
INPUTS: tuple[Input, ...] = ("signal+image", "signal", "image")
FULL: Input = "signal+image"
SAMPLING_RATE_HZ = 500  # corpus signals are (12, 5000) mV at 500 Hz (training.rows)
MODEL = "model"
READER = "protocol reader"


class RewardMeans(BaseModel):
    """Mean EDER rewards over the outputs of one input (None for no outputs)."""

    diagnosis: float | None = None
    evidence: float | None = None
    format: float | None = None
    total: float | None = None


class InputFigures(BaseModel):
    """What one interpreter did with one kind of input."""

    input: Input
    samples: int
    format_valid: float | None  # fraction of outputs with <think>, all six steps and <answer>
    rewards: RewardMeans


class InterpreterReport(BaseModel):
    """Every figure for one interpreter."""

    role: str  # "model" or "protocol reader"
    name: str
    version: str
    is_demonstration: bool = False
    samples: int
    exact_match: float | None  # label accuracy: predicted label set == reference set (signal+image)
    format_valid: float | None  # on signal+image
    rewards: RewardMeans  # on signal+image
    spaces: list[SpaceMetrics]
    inputs: list[InputFigures]
    consistency: Consistency  # image-only output vs signal-only output

    def space(self, name: str) -> SpaceMetrics:
        return next(s for s in self.spaces if s.space == name)


class EvalReport(BaseModel):
    corpus: str
    split: str
    rows: int
    created_at: str
    interpreters: list[InterpreterReport]
    notes: list[str] = Field(default_factory=list)

    def interpreter(self, role: str) -> InterpreterReport:
        return next(i for i in self.interpreters if i.role == role)


# -- inputs -------------------------------------------------------------------------------------

@dataclass
class RowInputs:
    """A row's signal and image, loaded (the image rendered from the signal when the row has none)."""

    signal: np.ndarray | None
    image: Any  # PIL image or None

    @property
    def paired(self) -> bool:
        """Both modalities: the row takes part in the signal-only vs image-only comparison."""
        return self.signal is not None and self.image is not None


def load_inputs(corpus_file: Path, row: TrainingRow) -> RowInputs:
    from PIL import Image

    signal_path, image_path = resolve(corpus_file, row.signal_path), resolve(corpus_file, row.image_path)
    signal = None
    if signal_path is not None:
        signal = np.asarray(np.load(signal_path), dtype=np.float32)
        if signal.shape != (12, 5000):
            raise ValueError(f"row {row.id}: signal {signal_path} has shape {signal.shape}, expected (12, 5000)")
    image = None
    if image_path is not None:
        with Image.open(image_path) as opened:
            image = opened.convert("RGB")
    elif signal is not None:
        from ingest.prepare.render import render_12lead

        image = render_12lead(signal, SAMPLING_RATE_HZ)
    if signal is None and image is None:
        raise ValueError(f"row {row.id} has neither a signal nor an image")
    return RowInputs(signal=signal, image=image)


def _modalities(inputs: RowInputs, kind: Input) -> tuple[np.ndarray | None, Any] | None:
    """(signal, image) for one kind of input, or None when the row cannot give that input."""
    if kind == FULL:
        return inputs.signal, inputs.image
    if not inputs.paired:
        return None
    return (inputs.signal, None) if kind == "signal" else (None, inputs.image)


# -- the two interpreters -------------------------------------------------------------------------

Outputs = dict[Input, list[str | None]]  # input kind -> one text per row (None: input not available)


def model_outputs(engine: Engine, inputs: Sequence[RowInputs]) -> Outputs:
    """The engine's text for every row and input kind, generated in the engine's batch size."""
    from model.engines.base import GenerationRequest

    jobs: list[tuple[Input, int, GenerationRequest]] = []
    for kind in INPUTS:
        for i, row_inputs in enumerate(inputs):
            modalities = _modalities(row_inputs, kind)
            if modalities is not None:
                jobs.append((kind, i, GenerationRequest(signal=modalities[0], image=modalities[1])))
    outputs: Outputs = {kind: [None] * len(inputs) for kind in INPUTS}
    batch = _batch_size(engine)
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        results = engine.generate([request for _, _, request in chunk])
        for (kind, i, _), result in zip(chunk, results, strict=True):
            outputs[kind][i] = result.text
    return outputs


def _batch_size(engine: Engine) -> int:
    return max(1, int(getattr(engine, "batch_size", 8)))


def _prepared(signal: np.ndarray | None, image: Any, features: Any) -> PreparedEcg:
    from ingest.ecg import STANDARD_LEADS, Ecg, SourceFormat
    from ingest.prepare import PreparedEcg

    ecg = Ecg(source_format=SourceFormat.WFDB if signal is not None else SourceFormat.PDF, source_path="corpus",
              signal=signal, sampling_rate_hz=SAMPLING_RATE_HZ if signal is not None else None,
              lead_names=list(STANDARD_LEADS) if signal is not None else [])
    return PreparedEcg(ecg=ecg, model_signal=signal, image=image, features=features)


def reader_outputs(inputs: Sequence[RowInputs]) -> Outputs:
    """The protocol reader's text for every row and input kind (features measured from the signal)."""
    from ingest.measure.features import measure
    from ingest.protocol import ProtocolReader

    reader = ProtocolReader()
    outputs: Outputs = {kind: [None] * len(inputs) for kind in INPUTS}
    for i, row_inputs in enumerate(inputs):
        features = measure(row_inputs.signal, SAMPLING_RATE_HZ) if row_inputs.signal is not None else None
        for kind in INPUTS:
            modalities = _modalities(row_inputs, kind)
            if modalities is None:
                continue
            signal, image = modalities
            prepared = _prepared(signal, image, features if signal is not None else None)
            outputs[kind][i] = reader.interpret([prepared])[0].raw_text
    return outputs


# -- scoring --------------------------------------------------------------------------------------

def _input_figures(kind: Input, texts: Sequence[str | None], rows: Sequence[TrainingRow]) -> InputFigures:
    scored = [(text, row) for text, row in zip(texts, rows, strict=True) if text is not None]
    rewards = [eder_rewards(text, row.labels, row.evidence) for text, row in scored]
    return InputFigures(
        input=kind, samples=len(scored),
        format_valid=mean(float(parse_output(text).well_formed) for text, _ in scored),
        rewards=RewardMeans(diagnosis=mean(r.diagnosis for r in rewards), evidence=mean(r.evidence for r in rewards),
                            format=mean(r.format for r in rewards), total=mean(r.total for r in rewards)))


def score_outputs(role: str, name: str, version: str, outputs: Outputs, rows: Sequence[TrainingRow], *,
                  is_demonstration: bool = False) -> InterpreterReport:
    """Every figure of one interpreter from its texts (pure: no model, no files)."""
    full = outputs[FULL]
    if any(text is None for text in full):
        raise ValueError("every row needs a signal+image output")
    texts = [text for text in full if text is not None]
    predicted = [sorted(label_set(parse_output(text).labels)) for text in texts]
    reference = [row.labels for row in rows]
    spaces = [protocol_space(reference), *ECGBENCH_SPACES]
    pairs = [(image, signal) for image, signal in zip(outputs["image"], outputs["signal"], strict=True)
             if image is not None and signal is not None]
    by_input = [_input_figures(kind, outputs[kind], rows) for kind in INPUTS]
    return InterpreterReport(
        role=role, name=name, version=version, is_demonstration=is_demonstration, samples=len(texts),
        exact_match=exact_match([frozenset(p) for p in predicted], [label_set(r) for r in reference]),
        format_valid=by_input[0].format_valid, rewards=by_input[0].rewards,
        spaces=[space_metrics(space, predicted, reference) for space in spaces],
        inputs=by_input,
        consistency=consistency([image for image, _ in pairs], [signal for _, signal in pairs]))


def evaluate(corpus_file: Path | str, model: Engine | Path | str, split: str = "test", limit: int | None = None, *,
             max_new_tokens: int | None = None, batch_size: int = 8, device: str | None = None,
             progress: bool = True) -> EvalReport:
    """The model (a checkpoint path, or an already loaded engine) and the protocol reader on held-out rows."""
    corpus_file = Path(corpus_file)
    rows = list(read_rows(corpus_file, split=split))
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise ValueError(f"{corpus_file} has no rows in split {split!r}")

    engine = _engine(model, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
    model_texts: Outputs = {kind: [] for kind in INPUTS}
    reader_texts: Outputs = {kind: [] for kind in INPUTS}
    # Rows are loaded a chunk at a time (images are megabytes each); a chunk of `batch` rows
    # gives the engine up to three full batches (signal+image, signal only, image only).
    chunk = _batch_size(engine)
    with tqdm(total=len(rows), desc="evaluate", unit="ecg", disable=not progress) as bar:
        for start in range(0, len(rows), chunk):
            inputs = [load_inputs(corpus_file, row) for row in rows[start:start + chunk]]
            for texts, new in ((model_texts, model_outputs(engine, inputs)), (reader_texts, reader_outputs(inputs))):
                for kind in INPUTS:
                    texts[kind].extend(new[kind])
            bar.update(len(inputs))

    reports = [score_outputs(MODEL, engine.name, engine.version, model_texts, rows,
                             is_demonstration=engine.is_demonstration),
               score_outputs(READER, PROTOCOL_READER_NAME, PROTOCOL_READER_VERSION, reader_texts, rows)]
    notes = ["AUC uses the binary prediction as the score (generated text has no probabilities): "
             "it equals (sensitivity + specificity) / 2.",
             "The protocol reader given only the image has nothing to measure: its image-only output "
             "and its consistency figures reflect that."]
    origins = sorted({row.label_origin for row in rows})
    notes.append("Reference labels come from: " + ", ".join(origins) + ".")
    if "protocol reader" in origins:
        notes.append("Rows labelled by the protocol reader favour it: its agreement with itself is not accuracy.")
    if engine.is_demonstration:
        notes.append("The model is a demonstration model: not for clinical use.")
    return EvalReport(corpus=str(corpus_file), split=split, rows=len(rows),
                      created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                      interpreters=reports, notes=notes)


def _engine(model: Engine | Path | str, *, max_new_tokens: int | None, batch_size: int,
            device: str | None) -> Engine:
    if not isinstance(model, (str, Path)):
        return model
    from model.engines import load_engine
    from model.engines.base import DEFAULT_MAX_NEW_TOKENS

    return load_engine("hf", model, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                       batch_size=batch_size, device=device)


# -- rendering ------------------------------------------------------------------------------------

def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table_rows(report: EvalReport) -> list[tuple[str, list[str]]]:
    """(figure, one cell per interpreter) in the report's interpreter order."""
    interpreters = report.interpreters

    def row(label: str, get: Callable[[InterpreterReport], float | None]) -> tuple[str, list[str]]:
        return label, [_number(get(i)) for i in interpreters]

    rows = [row("label accuracy (exact set match)", lambda i: i.exact_match),
            row("format validity (think, 6 steps, answer)", lambda i: i.format_valid),
            row("EDER diagnosis (Jaccard)", lambda i: i.rewards.diagnosis),
            row("EDER evidence", lambda i: i.rewards.evidence),
            row("EDER format", lambda i: i.rewards.format),
            row("EDER total (0-3)", lambda i: i.rewards.total)]
    for space in interpreters[0].spaces:
        name = space.space
        rows += [row(f"{name}: macro F1", lambda i, n=name: i.space(n).macro_f1),
                 row(f"{name}: macro AUC (binary score)", lambda i, n=name: i.space(n).macro_auc),
                 row(f"{name}: Hamming loss", lambda i, n=name: i.space(n).hamming_loss),
                 row(f"{name}: exact match", lambda i, n=name: i.space(n).exact_match)]
    for kind in ("signal", "image"):
        rows += [row(f"{kind} only: EDER total", lambda i, k=kind: _input(i, k).rewards.total),
                 row(f"{kind} only: format validity", lambda i, k=kind: _input(i, k).format_valid)]
    rows += [row("signal-only vs image-only BLEU-4", lambda i: i.consistency.bleu4),
             row("signal-only vs image-only ROUGE-L", lambda i: i.consistency.rouge_l)]
    return rows


def _input(report: InterpreterReport, kind: str) -> InputFigures:
    return next(figures for figures in report.inputs if figures.input == kind)


def render_markdown(report: EvalReport) -> str:
    """The report as a Markdown table (figure | model | protocol reader), with its notes below."""
    headers = [f"{i.role} ({i.name}{', demonstration' if i.is_demonstration else ''})" for i in report.interpreters]
    lines = [f"Held-out evaluation: {report.rows} rows of split `{report.split}` of `{Path(report.corpus).name}`.",
             "",
             "| figure | " + " | ".join(headers) + " |",
             "|---|" + "---:|" * len(headers)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in table_rows(report)]
    lines.append("")
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")


__all__ = ["EvalReport", "INPUTS", "InputFigures", "InterpreterReport", "RewardMeans", "evaluate", "load_inputs",
           "model_outputs", "reader_outputs", "render_markdown", "score_outputs", "table_rows", "write_report"]
