"""The shipped demonstration model reads its ECG: two clearly different ECGs, two different readings.

A model that ignores its input writes the same labels and the same heart rate for every ECG
(issue 17: the first demo model did). Here a slow sinus rhythm and a fast one, simulated, must
get different label sets and different stated heart rates, the slower one the lower rate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.report_format import parse_output
from model.engines import load_engine
from model.engines.base import GenerationRequest
from training.evaluate_real import stated_heart_rate
from training.rewards import label_set
from training.synthetic import simulate

DEMO = Path(__file__).resolve().parents[2] / "model" / "demo"


def _first(seed: int, wanted) -> tuple:
    for index in range(400):
        signal, truth = simulate(f"reads-input-{index}", seed, index)
        if wanted(truth):
            return signal, truth
    raise AssertionError("no such simulated record in 400 draws")


@pytest.mark.skipif(not (DEMO / "model.safetensors").is_file(), reason="no shipped demonstration model")
def test_two_different_ecgs_get_different_labels_and_heart_rates() -> None:
    slow, slow_truth = _first(11, lambda t: t.rhythm == "sinus" and t.hr_bpm < 55 and t.conduction == "normal")
    fast, fast_truth = _first(11, lambda t: t.rhythm == "sinus" and t.hr_bpm > 110 and t.conduction == "normal")
    # Signal only keeps the prompt short (the worklist's drafts use signal + image; the ECG is
    # what the model must read either way); one batch of two readings.
    engine = load_engine("hf", DEMO, max_new_tokens=900, batch_size=2, device="cpu")
    texts = [r.text for r in engine.generate([GenerationRequest(signal=s) for s in (slow, fast)])]
    labels = [label_set(parse_output(text).labels) for text in texts]
    rates = [stated_heart_rate(text) for text in texts]
    assert labels[0] != labels[1], f"same labels for {slow_truth.hr_bpm} and {fast_truth.hr_bpm} bpm: {labels[0]}"
    assert None not in rates and rates[0] < rates[1], (
        f"stated {rates} bpm for simulated {slow_truth.hr_bpm} and {fast_truth.hr_bpm} bpm")
