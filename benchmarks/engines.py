"""ECG-R1 throughput of the two engines, transformers (the baseline) and vLLM, on the same inputs.

For each batch size it generates greedily for that many distinct ECGs (signal + rendered
12-lead image, the worklist's usual case) with each engine and prints ECGs per second, output
tokens per second and the vllm/hf ratio. Both engines produce the same tokens (the parity
tests check it), so the output token counts agree and the ratio is a pure speed ratio.

Default: the tiny random-weight model (model.tiny) on the CPU in float32, 128 new tokens.
`--model PATH` benchmarks a real checkpoint instead (e.g. on a GPU host, bf16 there).

Run in the vLLM environment (it has both engines):
    .venv-vllm/bin/python benchmarks/engines.py [--batch-sizes 1 8 32] [--max-new-tokens 128] [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Measurement:
    engine: str
    batch_size: int
    seconds: float
    output_tokens: int

    @property
    def ecgs_per_s(self) -> float:
        return self.batch_size / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds


def make_requests(count: int, seed: int = 0) -> list:
    """`count` distinct ECGs: a 12 x 5000 signal (per-lead sines, seeded) and its rendered page."""
    from ingest.prepare.render import render_12lead
    from model.engines import GenerationRequest

    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500.0
    requests = []
    for _ in range(count):
        rates, amplitudes = rng.uniform(0.8, 3.0, size=(12, 1)), rng.uniform(0.2, 2.0, size=(12, 1))
        signal = (amplitudes * np.sin(2 * np.pi * rates * t)).astype(np.float32)
        requests.append(GenerationRequest(signal=signal, image=render_12lead(signal, 500.0)))
    return requests


def time_generate(generate: Callable[[Sequence], list], requests: Sequence, repeat: int) -> tuple[float, int]:
    """Median seconds over `repeat` runs, and the output tokens of one run."""
    times, tokens = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        results = generate(requests)
        times.append(time.perf_counter() - start)
        tokens = sum(len(r.token_ids) for r in results)
    return statistics.median(times), tokens


def benchmark(model_path: Path, batch_sizes: Sequence[int], max_new_tokens: int, repeat: int) -> list[Measurement]:
    from model.engines import load_engine

    requests = make_requests(max(batch_sizes))
    measurements: list[Measurement] = []

    hf = load_engine("hf", model_path, max_new_tokens=max_new_tokens)
    width, height = requests[0].image.size
    print(f"  image {width}x{height} px -> {hf.processor.num_image_tokens(height, width)} visual tokens, "
          f"ECG -> {hf.processor.ecg_num_tokens} tokens", flush=True)
    hf.generate(requests[:1])  # warm-up: lazy imports, allocator
    for size in batch_sizes:
        hf.batch_size = size  # one generate() call per batch
        seconds, tokens = time_generate(hf.generate, requests[:size], repeat)
        measurements.append(Measurement("hf", size, seconds, tokens))
        print(f"  hf   batch {size:>3}: {seconds:7.2f} s", flush=True)
    del hf

    vllm = load_engine("vllm", model_path, max_new_tokens=max_new_tokens)
    vllm.generate(requests[:1])
    for size in batch_sizes:
        seconds, tokens = time_generate(vllm.generate, requests[:size], repeat)
        measurements.append(Measurement("vllm", size, seconds, tokens))
        print(f"  vllm batch {size:>3}: {seconds:7.2f} s", flush=True)
    vllm.close()
    return measurements


def print_table(measurements: list[Measurement]) -> None:
    by_key = {(m.engine, m.batch_size): m for m in measurements}
    print()
    print(f"{'batch':>5} | {'hf ECG/s':>9} {'hf tok/s':>9} | {'vllm ECG/s':>10} {'vllm tok/s':>10} | "
          f"{'vllm/hf':>7} | {'tokens hf/vllm':>14}")
    print("-" * 82)
    for size in sorted({m.batch_size for m in measurements}):
        hf, vllm = by_key[("hf", size)], by_key[("vllm", size)]
        print(f"{size:>5} | {hf.ecgs_per_s:9.2f} {hf.tokens_per_s:9.1f} | {vllm.ecgs_per_s:10.2f} "
              f"{vllm.tokens_per_s:10.1f} | {vllm.ecgs_per_s / hf.ecgs_per_s:6.2f}x | "
              f"{hf.output_tokens:>6}/{vllm.output_tokens:<7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the tiny model)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model
        if model_path is None:
            from model.tiny import save_tiny_model

            model_path = save_tiny_model(Path(tmp) / "tiny-ecg-r1", seed=0)
        print(f"ECG-R1 engines on {device}: {model_path.name}, signal + rendered 12-lead image per ECG, "
              f"greedy, {args.max_new_tokens} new tokens at most, median of {args.repeat}")
        print_table(benchmark(model_path, args.batch_sizes, args.max_new_tokens, args.repeat))


if __name__ == "__main__":  # vLLM starts its workers with spawn: the engine must not start on import
    main()
