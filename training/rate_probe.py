"""How much heart rate a checkpoint's language model holds where it writes the rate: a linear probe.

    python -m training.rate_probe --model model/demo [--data data/real] [--limit N]
    probe_written_rate(model_dir, data_dir) -> RateProbeReport

`training.tower_probe` measures what the frozen ECG tower's tokens carry, the ceiling of what the
language model could read. This measures what the language model itself made of it, at the one
place that matters: the position whose final hidden state writes the first digit of "Heart rate
NN bpm". Each real recording is read greedily (signal and page, as `train eval-real` reads them);
the reading up to the rate's first digit is fed back (teacher-forced) and the final hidden state
of its last token is taken. A ridge fit of those states to the measured rate on data/real's dev
split (the demo's training rows) is scored on the held-out test split, beside the rate the model
wrote there. If the probe reads the rate much better than the model writes it, the output head
(how a state becomes digits) is what fails; if no better, the state itself never gathered it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from model.engines.base import GenerationRequest
from model.engines.hf_engine import HfEngine
from training.evaluate_real import HR_STATED, HR_TOLERANCE_BPM
from training.tower_probe import ridge_fit, ridge_predict


class RateProbeReport(BaseModel):
    model: str
    train_records: int  # dev split: the records the fit is made on
    test_records: int  # test split: where it is scored
    probe_mae_bpm: float
    probe_within_10_bpm: float
    written_mae_bpm: float  # the rate the model wrote, on the same test records
    written_within_10_bpm: float
    written_distinct: int
    mean_only_mae_bpm: float  # saying the dev records' mean rate

    def lines(self) -> list[str]:
        return [f"language model's hidden state where it writes the heart rate ({self.model}; ridge fitted on "
                f"{self.train_records} dev records, scored on {self.test_records} held-out real records):",
                f"  probe:   mean |error| {self.probe_mae_bpm:.1f} bpm, within {HR_TOLERANCE_BPM:g} bpm on "
                f"{self.probe_within_10_bpm:.2f}",
                f"  written: mean |error| {self.written_mae_bpm:.1f} bpm, within {HR_TOLERANCE_BPM:g} bpm on "
                f"{self.written_within_10_bpm:.2f} ({self.written_distinct} distinct rates)",
                f"  saying the mean rate: {self.mean_only_mae_bpm:.1f} bpm"]


@dataclass
class RateState:
    """One reading's final hidden state where it writes the rate, the rate it wrote, and the token that
    state's logits put first (greedy decoding wrote it: the first digit of the rate)."""

    state: np.ndarray
    written_bpm: float
    first_token: int


def rate_state(engine: HfEngine, request: GenerationRequest) -> RateState | None:
    """The greedy reading of `request`, then its state at the rate's first digit; None if it states no rate."""
    text = engine.generate([request])[0].text
    stated = HR_STATED.search(text)
    if stated is None:
        return None
    # The reading up to the first digit is given as the target; the processor appends <|im_end|>, so the
    # state before that last token is the one that wrote the first digit.
    inputs = engine.processor([request.to_sample()], targets=[text[:stated.start(1)]])
    with torch.no_grad():
        output = engine.model(**inputs, output_hidden_states=True)
    return RateState(state=output.hidden_states[-1][0, -2].float().numpy(), written_bpm=float(stated.group(1)),
                     first_token=int(output.logits[0, -2].argmax()))


def _states(engine: HfEngine, data_dir: Path, split: str,
            limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hidden states [n, width], measured rates [n], written rates [n]) of the split's readable records
    whose reading states a rate."""
    from ingest.prepare import prepare
    from ingest.readers.read import read_ecg
    from ingest.validation.references import load_references

    states, measured, written = [], [], []
    for reference in load_references(data_dir, split=split)[:limit]:
        prepared = prepare(read_ecg(reference.file(data_dir)))
        rate = prepared.features.global_.hr_bpm if prepared.features is not None else None
        if rate is None or prepared.model_signal is None:
            continue
        found = rate_state(engine, GenerationRequest(signal=prepared.model_signal, image=prepared.page()))
        if found is None:
            continue
        states.append(found.state)
        measured.append(float(rate))
        written.append(found.written_bpm)
    return np.array(states), np.array(measured), np.array(written)


def probe_written_rate(model_dir: Path | str, data_dir: Path | str = Path("data/real"),
                       limit: int | None = None) -> RateProbeReport:
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    engine = HfEngine.from_pretrained(model_dir, device="cpu", max_new_tokens=256)
    train_states, train_rate, _ = _states(engine, data_dir, "dev", limit)
    test_states, test_rate, test_written = _states(engine, data_dir, "test", limit)
    fit = ridge_fit(train_states, train_rate)
    probe_error = np.abs(ridge_predict(fit, test_states) - test_rate)
    written_error = np.abs(test_written - test_rate)
    return RateProbeReport(
        model=str(model_dir), train_records=len(train_rate), test_records=len(test_rate),
        probe_mae_bpm=round(float(probe_error.mean()), 1),
        probe_within_10_bpm=round(float((probe_error <= HR_TOLERANCE_BPM).mean()), 2),
        written_mae_bpm=round(float(written_error.mean()), 1),
        written_within_10_bpm=round(float((written_error <= HR_TOLERANCE_BPM).mean()), 2),
        written_distinct=len(set(test_written.tolist())),
        mean_only_mae_bpm=round(float(np.abs(test_rate - train_rate.mean()).mean()), 1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/real"), help="real recordings with dev and test splits")
    parser.add_argument("--limit", type=int, default=None, help="the first N records of each split")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print("\n".join(probe_written_rate(args.model, args.data, args.limit).lines()))


if __name__ == "__main__":
    main()
