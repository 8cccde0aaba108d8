"""Does a checkpoint read its ECG? Input ablations of one model on held-out rows.

    python -m training.ablation --model model/demo --corpus CORPUS.jsonl [--split test] [--limit 12]
    ablate(model_dir, corpus_file, split="test", limit=12) -> AblationReport

Three kinds of evidence, each printed as one figure:

1. Teacher-forced: the mean negative log-likelihood per answer token of each row's own
   reference text when the model is given (a) the row's own signal and image, (b) ANOTHER
   row's signal with its own image, (c) a zeroed signal with its own image, (d) its own
   signal and ANOTHER row's image. A model that reads its ECG pays for the wrong ECG: (b)
   and (c) cost more than (a). Equal figures mean the signal is ignored.
2. Gradient share: the norm of d(answer loss)/d(input embedding), summed over the ECG
   positions, the image positions and the text positions of the prompt, as shares of the
   total. Near-zero ECG share means the loss does not depend on what the ECG tokens carry.
3. Greedy readings of the same rows from signal+image, signal only, image only and zeroed
   signal: how many distinct label sets and heart rates they state, and how far the stated
   heart rate is from the one measured on the row's signal (`meta.measured.hr_bpm`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from model.processing_ecg_r1 import IGNORE_INDEX, EcgR1Sample
from training.rows import TrainingRow, read_rows
from training.sft import load_model, load_sample

HR_PATTERN = re.compile(r"heart rate (?:is )?(?:approximately )?(\d{2,3})\s*bpm", re.IGNORECASE)


class GreedyFigures(BaseModel):
    input: str
    distinct_label_sets: int
    distinct_heart_rates: int
    hr_within_10_bpm: float  # share of rows whose stated HR is within 10 bpm of the measured one
    hr_mean_abs_error: float | None


class AblationReport(BaseModel):
    model: str
    rows: int
    nll_own: float
    nll_other_signal: float
    nll_zero_signal: float
    nll_other_image: float
    gradient_share: dict[str, float]
    greedy: list[GreedyFigures]

    def lines(self) -> list[str]:
        out = [f"ablation of {self.model} on {self.rows} held-out rows",
               "teacher-forced NLL per answer token (lower = the reference is more likely):",
               f"  own signal + own image        {self.nll_own:.4f}",
               f"  other row's signal + own image {self.nll_other_signal:.4f}  "
               f"(+{self.nll_other_signal - self.nll_own:.4f})",
               f"  zeroed signal + own image      {self.nll_zero_signal:.4f}  "
               f"(+{self.nll_zero_signal - self.nll_own:.4f})",
               f"  own signal + other row's image {self.nll_other_image:.4f}  "
               f"(+{self.nll_other_image - self.nll_own:.4f})",
               "gradient share of the answer loss on the prompt's input embeddings: "
               + ", ".join(f"{k} {v:.3f}" for k, v in self.gradient_share.items()),
               "greedy readings: input | distinct label sets | distinct HRs | HR within 10 bpm | HR MAE"]
        for g in self.greedy:
            mae = "n/a" if g.hr_mean_abs_error is None else f"{g.hr_mean_abs_error:.1f}"
            out.append(f"  {g.input:14s} | {g.distinct_label_sets} | {g.distinct_heart_rates} | "
                       f"{g.hr_within_10_bpm:.2f} | {mae}")
        return out


def _nll(model: Any, processor: Any, samples: Sequence[EcgR1Sample], targets: Sequence[str]) -> float:
    """Mean NLL per answer token over the rows (one batch per row keeps memory flat)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for sample, target in zip(samples, targets, strict=True):
            batch = processor([sample], targets=[target], padding_side="right")
            out = model(**batch)
            labels = batch["labels"]
            logits = out.logits[:, :-1]
            shifted = labels[:, 1:]
            mask = shifted != IGNORE_INDEX
            losses = torch.nn.functional.cross_entropy(logits[mask], shifted[mask], reduction="sum")
            total += float(losses)
            count += int(mask.sum())
    return total / max(count, 1)


def _gradient_share(model: Any, processor: Any, samples: Sequence[EcgR1Sample],
                    targets: Sequence[str]) -> dict[str, float]:
    """Share of |d loss / d embedding| on ECG, image and text prompt positions (summed over rows)."""
    config = model.config
    sums = {"ecg": 0.0, "image": 0.0, "text": 0.0}
    captured: dict[str, torch.Tensor] = {}
    embed = model.get_input_embeddings()

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output.retain_grad()
        captured["embeds"] = output
        return output

    # The ECG and image embeddings replace the text embeddings at their positions after the
    # embedding layer, so the gradient w.r.t. the merged sequence is what the LM sees. The
    # language model's first layer input is that merged sequence.
    layer = model.model.language_model.layers[0]

    def pre_hook(_module: Any, args: Any, kwargs: Any) -> Any:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        hidden.retain_grad()
        captured["hidden"] = hidden
        return None

    handle = layer.register_forward_pre_hook(pre_hook, with_kwargs=True)
    handle_embed = embed.register_forward_hook(hook)
    try:
        for sample, target in zip(samples, targets, strict=True):
            batch = processor([sample], targets=[target], padding_side="right")
            model.zero_grad(set_to_none=True)
            out = model(**batch)
            out.loss.backward()
            grad = captured["hidden"].grad[0].norm(dim=-1)
            ids = batch["input_ids"][0]
            prompt = batch["labels"][0] == IGNORE_INDEX
            is_ecg = ids == config.ecg_token_id
            is_image = ids == config.image_token_id
            sums["ecg"] += float(grad[is_ecg & prompt].sum())
            sums["image"] += float(grad[is_image & prompt].sum())
            sums["text"] += float(grad[~is_ecg & ~is_image & prompt].sum())
    finally:
        handle.remove()
        handle_embed.remove()
        model.zero_grad(set_to_none=True)
    total = sum(sums.values()) or 1.0
    return {k: round(v / total, 4) for k, v in sums.items()}


def stated_hr(text: str) -> int | None:
    match = HR_PATTERN.search(text)
    return int(match.group(1)) if match else None


def _greedy(engine: Any, name: str, requests: list[Any], rows: Sequence[TrainingRow]) -> GreedyFigures:
    from ingest.report_format import parse_output
    from training.rewards import label_set

    texts = [result.text for result in engine.generate(requests)]
    label_sets = {frozenset(label_set(parse_output(t).labels)) for t in texts}
    rates = [stated_hr(t) for t in texts]
    errors = []
    for rate, row in zip(rates, rows, strict=True):
        measured = (row.meta.get("measured") or {}).get("hr_bpm")
        if rate is not None and isinstance(measured, (int, float)):
            errors.append(abs(rate - float(measured)))
    within = sum(1 for e in errors if e <= 10) / max(len(rows), 1)
    return GreedyFigures(input=name, distinct_label_sets=len(label_sets),
                         distinct_heart_rates=len({r for r in rates if r is not None}),
                         hr_within_10_bpm=round(within, 3),
                         hr_mean_abs_error=round(float(np.mean(errors)), 2) if errors else None)


def ablate(model_dir: Path, corpus_file: Path, split: str = "test", limit: int = 12,
           generate: bool = True) -> AblationReport:
    from model.engines import load_engine
    from model.engines.base import GenerationRequest

    torch.manual_seed(0)
    rows = list(read_rows(corpus_file, split=split))[:limit]
    if len(rows) < 2:
        raise ValueError(f"{corpus_file}: need at least 2 rows of split {split!r}")
    model, processor = load_model(model_dir)
    model.eval()
    samples = [load_sample(row, corpus_file) for row in rows]
    targets = [row.answer for row in rows]
    shift = len(rows) // 2  # pair each row with one far away in the list (a different ECG)
    other = [samples[(i + shift) % len(rows)] for i in range(len(rows))]
    zero = np.zeros_like(samples[0].signal)
    report: dict[str, Any] = {
        "model": str(model_dir), "rows": len(rows),
        "nll_own": _nll(model, processor, samples, targets),
        "nll_other_signal": _nll(model, processor, [EcgR1Sample(signal=o.signal, image=s.image)
                                                    for s, o in zip(samples, other, strict=True)], targets),
        "nll_zero_signal": _nll(model, processor, [EcgR1Sample(signal=zero, image=s.image) for s in samples],
                                targets),
        "nll_other_image": _nll(model, processor, [EcgR1Sample(signal=s.signal, image=o.image)
                                                   for s, o in zip(samples, other, strict=True)], targets),
        "gradient_share": _gradient_share(model, processor, samples, targets),
        "greedy": [],
    }
    if generate:
        engine = load_engine("hf", model_dir, max_new_tokens=1024, batch_size=len(rows), device="cpu")
        kinds = {"signal+image": [GenerationRequest(signal=s.signal, image=s.image) for s in samples],
                 "signal only": [GenerationRequest(signal=s.signal) for s in samples],
                 "image only": [GenerationRequest(image=s.image) for s in samples],
                 "zeroed signal": [GenerationRequest(signal=zero, image=s.image) for s in samples]}
        report["greedy"] = [_greedy(engine, name, requests, rows) for name, requests in kinds.items()]
    return AblationReport(**report)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--no-generate", action="store_true", help="teacher-forced and gradient figures only")
    args = parser.parse_args(argv)
    report = ablate(args.model, args.corpus, args.split, args.limit, generate=not args.no_generate)
    print("\n".join(report.lines()))


if __name__ == "__main__":
    main()
