"""The GPU check: ECG-R1-8B (random weights, the release's shapes) under vLLM and transformers.

Nothing is downloaded: the 8B architecture (Qwen3-VL-8B text and vision towers, ECG-CoCa's
signal tower, the 2-layer projector; `model.tiny.real_8b_config`) is built from its config
with random weights (transformers: initialised on the GPU; vLLM: `load_format="dummy"`), with
the small BPE tokenizer of `model.tiny` (the prompt then has fewer text tokens than Qwen's,
~40 against ~60, beside 101 ECG and 744 image tokens). Its input contract is the release's
(`model.input_contract.RELEASE_CONTRACT`: MIMIC lead order, ECG-image-kit-like 2200 x 1700
page, at most 768 visual tokens). Random weights never stop, so every report is exactly
`--report-tokens` long (the released model writes ~750 tokens per report).

Measured, each in its own process (so one engine's memory never limits the other's):
- vLLM: reports/s and output tokens/s at batch 1, 32, 128 for signal + image, signal only
  and image only, plus the GPU memory in use at the peak (device-wide, sampled every 50 ms);
- transformers (`generate`, left-padded batches): the same grid with `--hf-tokens` new tokens
  (64: a full 750-token report at batch 128 would take minutes), reports/s extrapolated to
  `--report-tokens` from the measured prefill and per-token times, and torch's peak allocation;
- CPU preparation overlapped with GPU decode: batches of `--batch-sizes`' largest size are read
  from data/real, measured, drawn and image-processed by a process pool while vLLM decodes the
  previous batch; reports/s of the whole pipeline against vLLM alone and the pool alone.
It prints one table. A deadline (`--budget-s`, 450 s) skips what would not fit in 8 minutes.

    python benchmarks/gpu_check.py                                  # on a GPU host (vLLM and torch CUDA)
    .venv/bin/python benchmarks/gpu_check.py --tiny --engines hf    # the tiny model on CPU (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODALITIES = {"signal+image": ("ecg", "image"), "signal": ("ecg",), "image": ("image",)}
PHASE_WEIGHT = {"vllm": 2.0, "hf": 1.0}


@dataclass
class Row:
    engine: str
    modality: str
    batch: int
    reports_per_s: float
    tokens_per_s: float
    seconds: float
    peak_gib: float | None
    note: str = ""


# -- the checkpoint ---------------------------------------------------------------------------


def write_checkpoint(folder: Path, tiny: bool) -> Path:
    """A checkpoint folder without weights (vLLM fills them in: load_format="dummy"), release contract."""
    from model.input_contract import RELEASE_CONTRACT
    from model.tiny import make_tiny_processor, real_8b_config, tiny_config

    processor = make_tiny_processor()
    config = tiny_config(processor.tokenizer) if tiny else real_8b_config(processor.tokenizer)
    config.ecg_input = RELEASE_CONTRACT.to_config()
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def synthetic_windows(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` distinct (12, 5000) mV windows in STANDARD_LEADS order (sines at seeded rates)."""
    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500.0
    rates, amplitudes = rng.uniform(0.8, 3.0, size=(count, 12, 1)), rng.uniform(0.2, 2.0, size=(count, 12, 1))
    return list((amplitudes * np.sin(2 * np.pi * rates * t)).astype(np.float32))


def make_requests(windows: Sequence[np.ndarray], modality: str) -> list[Any]:
    """Generation requests as the release's contract feeds them: MIMIC order, the kit-style page."""
    from ingest.prepare.render import render_page
    from model.engines.base import GenerationRequest
    from model.input_contract import RELEASE_CONTRACT

    order = MODALITIES[modality]
    requests = []
    for window in windows:
        signal = RELEASE_CONTRACT.model_signal(window) if "ecg" in order else None
        image = render_page(window, 500, style=RELEASE_CONTRACT.image_style) if "image" in order else None
        requests.append(GenerationRequest(signal=signal, image=image, order=order))
    return requests


# -- memory -----------------------------------------------------------------------------------


class PeakMemory:
    """Peak GPU memory in use on the device (all processes: vLLM's engine runs in another), sampled."""

    def __init__(self, interval_s: float = 0.05) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _used(self) -> int:
        import torch

        free, total = torch.cuda.mem_get_info()
        return total - free

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.cuda:
            self._thread.join()
            self.peak = max(self.peak, self._used())

    @property
    def gib(self) -> float | None:
        return self.peak / 2**30 if self.cuda else None


# -- transformers -------------------------------------------------------------------------------


def build_hf(folder: Path, tiny: bool) -> tuple[Any, Any]:
    """The model with random weights, made on the GPU in bf16 (on CPU in float32 for the tiny one)."""
    import torch

    from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration, EcgR1Config
    from model.processing_ecg_r1 import EcgR1Processor

    config = EcgR1Config.from_pretrained(folder)
    cuda = torch.cuda.is_available()
    # Initialised in float32 directly on the device (8B: ~35 GB for a moment, seconds on a GPU where
    # a CPU would take minutes), then cast as from_pretrained(dtype=bfloat16) would.
    with torch.device("cuda" if cuda else "cpu"):
        torch.manual_seed(0)
        model = ECGR1ForConditionalGeneration(config).eval()
    model.to(torch.bfloat16 if cuda else torch.float32)
    if cuda:
        torch.cuda.empty_cache()
    contract_tokens = config.ecg_input["max_image_tokens"]
    processor = EcgR1Processor.from_pretrained(folder, max_image_tokens=contract_tokens,
                                               ecg_num_tokens=config.ecg_num_tokens)
    return model, processor


def hf_generate(model: Any, processor: Any, requests: Sequence[Any], new_tokens: int) -> tuple[float, float, int]:
    """One left-padded batch: (prefill seconds, total seconds, generated tokens); never stops early."""
    import torch
    from transformers import GenerationConfig

    def config(tokens: int) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, num_beams=1,
                                eos_token_id=processor.stop_token_ids, pad_token_id=processor.tokenizer.pad_token_id)

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    with torch.inference_mode():
        inputs = processor([r.to_sample() for r in requests], padding_side="left").to(model.device)
        sync()
        start = time.perf_counter()
        model.generate(**inputs, generation_config=config(1))  # the prefill alone
        sync()
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        output = model.generate(**inputs, generation_config=config(new_tokens))
        sync()
        total = time.perf_counter() - start
    return prefill, total, int(output.shape[0] * (output.shape[1] - inputs["input_ids"].shape[1]))


def run_hf(args: argparse.Namespace, folder: Path, deadline: float) -> list[Row]:
    import torch

    model, processor = build_hf(folder, args.tiny)
    windows = synthetic_windows(max(args.batch_sizes))
    rows: list[Row] = []
    hf_generate(model, processor, make_requests(windows[:1], "signal+image"), 2)  # warm-up
    for modality in MODALITIES:
        requests = make_requests(windows, modality)
        for batch in args.batch_sizes:
            if time.monotonic() > deadline:
                rows.append(Row("hf", modality, batch, float("nan"), float("nan"), 0.0, None, "skipped: budget"))
                continue
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            prefill, total, tokens = hf_generate(model, processor, requests[:batch], args.hf_tokens)
            per_token = max(total - prefill, 1e-9) / max(args.hf_tokens - 1, 1)
            report_s = prefill + per_token * (args.report_tokens - 1)  # one report of report_tokens tokens
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
            rows.append(Row("hf", modality, batch, batch / report_s, tokens / total, total, peak,
                            f"{args.hf_tokens} tokens measured, extrapolated to {args.report_tokens}"))
            print(f"  hf   {modality:<12} batch {batch:>3}: {total:6.2f} s ({tokens} tokens)", flush=True)
    return rows


# -- vLLM -------------------------------------------------------------------------------------


def start_vllm(folder: Path, args: argparse.Namespace) -> Any:
    from model.engines.vllm_engine import VllmEngine

    import torch

    options: dict[str, Any] = {"load_format": "dummy", "max_num_seqs": max(args.batch_sizes)}
    if not torch.cuda.is_available():  # CPU (the tests): a small KV cache, not a share of the host's RAM
        options["kv_cache_memory_bytes"] = 256 << 20
    return VllmEngine.from_pretrained(folder, max_new_tokens=args.report_tokens, **options)


def vllm_generate(engine: Any, requests: Sequence[Any], new_tokens: int) -> tuple[float, int]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True, detokenize=False)
    start = time.perf_counter()
    outputs = engine.llm.generate([engine.prompt_for(r) for r in requests], params, use_tqdm=False)
    return time.perf_counter() - start, sum(len(o.outputs[0].token_ids) for o in outputs)


def run_vllm(args: argparse.Namespace, folder: Path, deadline: float) -> list[Row]:
    rows: list[Row] = []
    with PeakMemory() as memory:
        engine = start_vllm(folder, args)
        windows = synthetic_windows(max(args.batch_sizes))
        vllm_generate(engine, make_requests(windows[:2], "signal+image"), 4)  # warm-up
        for modality in MODALITIES:
            requests = make_requests(windows, modality)
            for batch in args.batch_sizes:
                if time.monotonic() > deadline:
                    rows.append(Row("vllm", modality, batch, float("nan"), float("nan"), 0.0, None, "skipped: budget"))
                    continue
                seconds, tokens = vllm_generate(engine, requests[:batch], args.report_tokens)
                rows.append(Row("vllm", modality, batch, batch / seconds, tokens / seconds, seconds, None))
                print(f"  vllm {modality:<12} batch {batch:>3}: {seconds:6.2f} s ({tokens} tokens)", flush=True)
        if args.overlap_batches and time.monotonic() < deadline:
            rows += overlap(lambda requests, tokens: vllm_generate(engine, requests, tokens), args, deadline)
        engine.close()
    for row in rows:
        row.peak_gib = memory.gib
    return rows


# -- CPU preparation overlapped with GPU decode -----------------------------------------------


def real_files(count: int) -> list[Path]:
    """`count` paths from data/real (WFDB records), cycled."""
    from ingest.validation.references import load_references

    paths = [r.file(REPO / "data" / "real") for r in load_references() if not r.path.startswith("pydicom:")]
    return [paths[i % len(paths)] for i in range(count)]


def prepare_file(path: Path) -> tuple[np.ndarray, Any]:
    """What the CPU does per ECG before the GPU: read, window, measure, draw the page, resize it."""
    from ingest.prepare import prepare
    from ingest.readers.read import read_ecg
    from model.input_contract import RELEASE_CONTRACT
    from model.processing_ecg_r1 import make_image_processor

    prepared = prepare(read_ecg(path))
    page = prepared.page(style=RELEASE_CONTRACT.image_style)
    processor = make_image_processor(max_image_tokens=RELEASE_CONTRACT.max_image_tokens)
    height, width = _resized(processor, page.height, page.width)
    return RELEASE_CONTRACT.model_signal(prepared.model_signal), page.resize((width, height))


def _resized(processor: Any, height: int, width: int) -> tuple[int, int]:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # no torchvision

    factor = processor.patch_size * processor.merge_size
    return smart_resize(height, width, factor=factor, min_pixels=processor.size["shortest_edge"],
                        max_pixels=processor.size["longest_edge"])


Generate = Callable[[Sequence[Any], int], tuple[float, int]]  # (requests, new tokens) -> (seconds, tokens)


def overlap(generate: Generate, args: argparse.Namespace, deadline: float) -> list[Row]:
    """Batches of the largest size: the pool prepares batch k+1 while the GPU decodes batch k."""
    from model.engines.base import GenerationRequest

    batch = max(args.batch_sizes)
    files = real_files(batch * args.overlap_batches)
    chunks = [files[i:i + batch] for i in range(0, len(files), batch)]
    workers = args.workers or max(1, (os.cpu_count() or 2) - 2)
    rows: list[Row] = []
    with ProcessPoolExecutor(workers) as pool:
        start = time.perf_counter()
        prepared = list(pool.map(prepare_file, chunks[0]))
        cpu_alone = (time.perf_counter() - start) / len(chunks[0])
        start = time.perf_counter()
        gpu_seconds, tokens = 0.0, 0
        pending = None
        for index in range(len(chunks)):
            if index + 1 < len(chunks):
                pending = pool.map(prepare_file, chunks[index + 1])  # runs while the GPU decodes
            requests = [GenerationRequest(signal=s, image=img) for s, img in prepared]
            seconds, made = generate(requests, args.report_tokens)
            gpu_seconds, tokens = gpu_seconds + seconds, tokens + made
            if index + 1 < len(chunks):
                prepared = list(pending)
            if time.monotonic() > deadline:
                break
        wall = time.perf_counter() - start
    done = batch * (index + 1)
    rows.append(Row("vllm+cpu", "signal+image", batch, done / wall, tokens / wall, wall, None,
                    f"pipeline over {index + 1} batches of real files, {workers} CPU workers; GPU busy "
                    f"{gpu_seconds / wall:.0%}; CPU alone {1 / cpu_alone:.1f} ECG/s"))
    print(f"  overlap: {done} reports in {wall:.1f} s, GPU busy {gpu_seconds / wall:.0%}", flush=True)
    return rows


# -- orchestration ------------------------------------------------------------------------------


def run_phase(args: argparse.Namespace) -> None:
    """One engine, in this process; rows as JSON on the last line of stdout."""
    deadline = time.monotonic() + args.phase_budget_s
    folder = Path(args.checkpoint)
    rows = run_hf(args, folder, deadline) if args.phase == "hf" else run_vllm(args, folder, deadline)
    print("ROWS " + json.dumps([asdict(r) for r in rows]), flush=True)


def print_table(rows: Sequence[Row], header: str) -> None:
    print()
    print(header)
    print(f"{'engine':<9} {'input':<13} {'batch':>5} {'reports/s':>10} {'tokens/s':>10} {'seconds':>8} "
          f"{'peak GiB':>8}  note")
    print("-" * 100)
    for r in rows:
        peak = f"{r.peak_gib:8.1f}" if r.peak_gib is not None else f"{'-':>8}"
        print(f"{r.engine:<9} {r.modality:<13} {r.batch:>5} {r.reports_per_s:10.2f} {r.tokens_per_s:10.0f} "
              f"{r.seconds:8.1f} {peak}  {r.note}")


def main(argv: list[str] | None = None, run: Callable[..., Any] = subprocess.run) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model (CPU tests) instead of the 8B shapes")
    parser.add_argument("--engines", default="vllm,hf")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--report-tokens", type=int, default=750)
    parser.add_argument("--hf-tokens", type=int, default=64)
    parser.add_argument("--overlap-batches", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="CPU preparation processes (default: cores - 2)")
    parser.add_argument("--budget-s", type=float, default=450.0)
    parser.add_argument("--phase", choices=["hf", "vllm"], help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--phase-budget-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        run_phase(args)
        return []

    import torch

    started = time.monotonic()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_checkpoint(Path(tmp) / "ecg-r1-random", args.tiny)
        for index, engine in enumerate(engines):
            left = args.budget_s - (time.monotonic() - started)
            # What is left, split over the engines still to run: vLLM (start-up, compile, 750-token
            # reports, the overlap) needs about twice what transformers' 64-token runs need.
            weights = [PHASE_WEIGHT.get(name, 1.0) for name in engines[index:]]
            share = left * weights[0] / sum(weights)
            command = [sys.executable, str(Path(__file__).resolve()), "--phase", engine, "--checkpoint", str(folder),
                       "--phase-budget-s", f"{share:.0f}", "--batch-sizes", *map(str, args.batch_sizes),
                       "--report-tokens", str(args.report_tokens), "--hf-tokens", str(args.hf_tokens),
                       "--overlap-batches", str(args.overlap_batches), "--workers", str(args.workers)]
            if args.tiny:
                command.append("--tiny")
            print(f"== {engine} ({share:.0f} s of budget left for it)", flush=True)
            done = run(command, capture_output=True, text=True, cwd=REPO)
            found = [line for line in done.stdout.splitlines() if line.startswith("ROWS ")]
            sys.stdout.write("".join(line + "\n" for line in done.stdout.splitlines() if not line.startswith("ROWS ")))
            if done.returncode != 0 or not found:
                print(f"{engine} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", flush=True)
                rows.append(Row(engine, "-", 0, float("nan"), float("nan"), 0.0, None, f"FAILED (exit {done.returncode})"))
                continue
            rows += [Row(**row) for row in json.loads(found[-1][5:])]
    total = time.monotonic() - started
    shape = "tiny model" if args.tiny else "ECG-R1-8B architecture, random weights"
    print_table(rows, f"GPU check on {device}: {shape}, release input contract, {args.report_tokens}-token reports, "
                      f"greedy; {total:.0f} s in all")
    vllm_best = [r.reports_per_s for r in rows if r.engine == "vllm" and r.batch == max(args.batch_sizes)
                 and r.modality == "signal+image"]
    if vllm_best and not np.isnan(vllm_best[0]):
        print(f"vLLM signal+image at batch {max(args.batch_sizes)}: {vllm_best[0]:.2f} reports/s "
              f"(goal >= 7 per H100-class GPU)")
    return rows


if __name__ == "__main__":  # vLLM starts its workers with spawn: nothing may start on import
    main()

__all__ = ["Row", "main"]
