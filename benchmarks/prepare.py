"""CPU time of preparation per ECG, ours against the naive pipeline, on real recordings, interleaved.

Inputs: `--count` real recordings in the formats and rates hospitals send (`benchmarks/mix.py`:
40 % DICOM at 1000 Hz, WFDB at 250, 500 and 1000 Hz, 20 % PDF pages; every input a
different real record). Per ECG, what the prepare stage does, and the naive way:

    ours    read_ecg (DICOM/WFDB/PDF reader; a PDF page not drawn, as in the stage) -> ingest.prepare.prepare (the 10 s, 500 Hz window
            with resampling, our measurement) -> worker.artifacts.save_prepared (what the stage
            stores for the later stages: the model window and the ECG's metadata, and the
            review page's display copy; no image for the model: it draws its page from the
            window when it asks; a scan without a signal would have its page kept for people)
    naive   the same read and window -> neurokit2 ecg_clean + ecg_peaks + ecg_delineate(dwt)
            on each of the 12 leads -> a matplotlib 12-lead figure of the same layout saved as
            the PNG a naive stage would store (a PDF's page saved as PNG)

Both run in this process, one thread (OMP/MKL/OpenBLAS set to 1 before numpy loads), ECG by
ECG, ours and naive interleaved (which goes first alternates by round), so load from other
jobs falls on both alike; garbage left by one is collected before the other starts. Times are CPU seconds of this process (`time.process_time`), with
wall time beside them. Every round is printed, then min/median/max over the rounds, per
input kind, and ours per step. The machine's load average is printed before and after.

Run: .venv/bin/python benchmarks/prepare.py [--count 40] [--rounds 3]
"""

from __future__ import annotations

import os

# One core: set before numpy/scipy load their thread pools.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.mix import MixItem, mix_summary, write_mix  # noqa: E402
from ingest.ecg import MODEL_SAMPLING_RATE_HZ, STANDARD_LEADS  # noqa: E402
from ingest.prepare import prepare  # noqa: E402
from ingest.prepare.render import LAYOUT, image_size  # noqa: E402
from ingest.prepare.signal import to_model_window  # noqa: E402
from ingest.readers.limits import DEFAULT_LIMITS  # noqa: E402
from ingest.readers.read import read_ecg  # noqa: E402
from worker import artifacts  # noqa: E402

GOAL_MS = 25.0
GOAL_RATIO = 30.0
KINDS = ("dicom-1000", "wfdb-250", "wfdb-500", "wfdb-1000", "pdf")


class Clock:
    """CPU and wall milliseconds of the steps of one run, by step name."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    def step(self, name: str, action: Callable[[], Any]) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        result = action()
        self.cpu[name] = self.cpu.get(name, 0.0) + (time.process_time() - cpu) * 1000
        self.wall[name] = self.wall.get(name, 0.0) + (time.perf_counter() - wall) * 1000
        return result

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    @property
    def total_wall(self) -> float:
        return sum(self.wall.values())


# ---------------------------------------------------------------- ours and the naive pipeline


def ours(item: MixItem, data_dir: Path, key: str) -> Clock:
    gc.collect()  # the other pipeline's garbage (matplotlib's figures are large cycles) is not ours to free
    clock = Clock()
    # As the prepare stage reads (worker.stages._read_and_prepare): a PDF's page is not drawn.
    ecg = clock.step("read", lambda: read_ecg(item.path, page_images=False))
    prepared = clock.step("prepare", lambda: prepare(ecg))
    page_loader = artifacts.source_page_loader(item.path, ecg.source_format.value, DEFAULT_LIMITS)  # as the stage
    clock.step("store", lambda: artifacts.save_prepared(data_dir, key, prepared, page_loader))
    return clock


def _matplotlib_12lead(signal: np.ndarray, fs: float, size: tuple[int, int], out: Path) -> None:
    """The naive renderer: a fresh matplotlib figure per ECG, the same layout, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    width_px, height_px = size
    dpi = 100
    figure = plt.figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 0.94))
    axes.set_xlim(0, 264)
    axes.set_ylim(0, 150)
    axes.xaxis.set_minor_locator(MultipleLocator(1))
    axes.yaxis.set_minor_locator(MultipleLocator(1))
    axes.xaxis.set_major_locator(MultipleLocator(5))
    axes.yaxis.set_major_locator(MultipleLocator(5))
    axes.grid(which="minor", color=(0.99, 0.81, 0.81), linewidth=0.5)
    axes.grid(which="major", color=(0.91, 0.47, 0.47), linewidth=0.8)
    axes.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    t_mm = np.arange(signal.shape[1]) / fs * 25
    index = {lead: i for i, lead in enumerate(STANDARD_LEADS)}
    per_column = round(2.5 * fs)
    for row, leads in enumerate(LAYOUT):
        base = 125 - 35 * row
        for column, lead in enumerate(leads):
            part = slice(column * per_column, (column + 1) * per_column)
            axes.plot(10 + t_mm[part], base + 10 * signal[index[lead], part], color="black", linewidth=0.8)
            axes.text(11 + 62.5 * column, base + 12, lead)
    axes.plot(10 + t_mm, 20 + 10 * signal[index["II"]], color="black", linewidth=0.8)
    axes.text(11, 32, "II")
    for base in (125, 90, 55, 20):  # the 1 mV calibration pulse of each row
        axes.plot([1, 3, 3, 8, 8, 9.5], [base, base, base + 10, base + 10, base, base], color="black")
    figure.text(0.99, 0.97, f"25 mm/s  10 mm/mV  {fs:g} Hz", ha="right")
    figure.savefig(out, format="png", dpi=dpi)
    plt.close(figure)


def _neurokit_delineation(signal: np.ndarray, fs: float) -> int:
    """The naive measurement: neurokit2 R peaks and DWT delineation of each of the 12 leads."""
    import neurokit2 as nk

    delineated = 0
    for lead in signal:
        try:
            cleaned = nk.ecg_clean(lead, sampling_rate=fs)
            _, peaks = nk.ecg_peaks(cleaned, sampling_rate=fs)
            nk.ecg_delineate(cleaned, peaks, sampling_rate=fs, method="dwt")
            delineated += 1
        except Exception:  # a lead neurokit2 cannot delineate still cost its time
            pass
    return delineated


def naive(item: MixItem, out: Path) -> Clock:
    gc.collect()  # nor ours theirs
    clock = Clock()
    # Read as ours reads (a PDF's page not drawn): the comparison is of what comes after the reading.
    ecg = clock.step("read", lambda: read_ecg(item.path, page_images=False))
    if ecg.signal is None:  # a scan: its page is all there is, kept as a PNG
        page = clock.step("read", lambda: read_ecg(item.path).pages[0])
        clock.step("store", lambda: page.save(out, format="PNG"))
        return clock
    window = clock.step("window", lambda: to_model_window(ecg))
    clock.step("measure", lambda: _neurokit_delineation(window.signal, MODEL_SAMPLING_RATE_HZ))
    clock.step("store", lambda: _matplotlib_12lead(window.signal, MODEL_SAMPLING_RATE_HZ, image_size(4), out))
    return clock


# ---------------------------------------------------------------- the run


def _stats(values: list[float]) -> str:
    return f"{min(values):8.1f} {statistics.median(values):8.1f} {max(values):8.1f}"


def run(count: int, rounds: int) -> dict[str, Any]:
    warnings.simplefilter("ignore")  # neurokit2 warns on some leads; the timing is the point
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ecgwl-bench-prepare-") as folder:
        root = Path(folder)
        items = write_mix(root / "inputs", count)
        # Warm imports and caches once, outside the timings (one input of each kind).
        for item in {item.kind: item for item in items}.values():
            ours(item, root / "warm", "0" * 64)
            naive(item, root / "warm.png")
        per_round: list[dict[str, float]] = []
        by_kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        steps: dict[str, list[float]] = defaultdict(list)
        for number in range(rounds):
            totals = {"ours_cpu": 0.0, "ours_wall": 0.0, "naive_cpu": 0.0, "naive_wall": 0.0}
            for n, item in enumerate(items):
                key = f"{number:02d}{n:06d}".ljust(64, "0")
                if number % 2 == 0:
                    mine, theirs = ours(item, root / "data", key), naive(item, root / "naive.png")
                else:
                    theirs, mine = naive(item, root / "naive.png"), ours(item, root / "data", key)
                totals["ours_cpu"] += mine.total_cpu
                totals["ours_wall"] += mine.total_wall
                totals["naive_cpu"] += theirs.total_cpu
                totals["naive_wall"] += theirs.total_wall
                by_kind[item.kind]["ours"].append(mine.total_cpu)
                by_kind[item.kind]["naive"].append(theirs.total_cpu)
                for step, ms in mine.cpu.items():
                    steps[f"{item.kind}:{step}"].append(ms)
            per_round.append({key: value / len(items) for key, value in totals.items()})
    return {"items": items, "rounds": per_round, "by_kind": by_kind, "steps": steps,
            "load": (load_before, os.getloadavg())}


def report(result: dict[str, Any]) -> None:
    items, rounds = result["items"], result["rounds"]
    before, after = result["load"]
    print(f"{mix_summary(items)} (real recordings, benchmarks/mix.py); one thread; "
          f"ms per ECG; {os.cpu_count()} cores, load average {before[0]:.1f} before, {after[0]:.1f} after")
    print(f"{'round':<8}{'ours CPU':>10}{'ours wall':>11}{'naive CPU':>11}{'naive wall':>12}{'naive/ours CPU':>16}")
    for number, row in enumerate(rounds, 1):
        print(f"{number:<8}{row['ours_cpu']:10.1f}{row['ours_wall']:11.1f}{row['naive_cpu']:11.1f}"
              f"{row['naive_wall']:12.1f}{row['naive_cpu'] / row['ours_cpu']:16.1f}")
    print(f"{'':<24}{'min':>8} {'median':>8} {'max':>8}")
    for label, key in (("ours CPU", "ours_cpu"), ("ours wall", "ours_wall"), ("naive CPU", "naive_cpu"),
                       ("naive wall", "naive_wall")):
        print(f"{label:<24}{_stats([row[key] for row in rounds])}")
    ratios = [row["naive_cpu"] / row["ours_cpu"] for row in rounds]
    print(f"{'naive/ours CPU':<24}{_stats(ratios)}")
    print("per input kind (CPU ms per ECG, median over rounds and inputs)")
    print(f"  {'kind':<12}{'n':>4}{'ours':>9}{'naive':>10}{'naive/ours':>12}   ours by step")
    for kind in KINDS:
        if kind not in result["by_kind"]:
            continue
        data = result["by_kind"][kind]
        mine, theirs = statistics.median(data["ours"]), statistics.median(data["naive"])
        by_step = "  ".join(f"{step} {statistics.median(result['steps'][f'{kind}:{step}']):.1f}"
                            for step in ("read", "prepare", "store"))
        print(f"  {kind:<12}{sum(1 for i in items if i.kind == kind):4d}{mine:9.1f}{theirs:10.1f}"
              f"{theirs / mine:12.1f}   {by_step}")
    median_ours = statistics.median(row["ours_cpu"] for row in rounds)
    median_ratio = statistics.median(ratios)
    print(f"goal: <= {GOAL_MS:g} ms CPU per ECG on the mix: {median_ours:.1f} ms (median round) "
          f"{'met' if median_ours <= GOAL_MS else 'NOT met'}; >= {GOAL_RATIO:g}x the naive pipeline: "
          f"{median_ratio:.1f}x {'met' if median_ratio >= GOAL_RATIO else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="inputs in the mix")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all inputs, ours and naive interleaved")
    args = parser.parse_args()
    report(run(args.count, args.rounds))


if __name__ == "__main__":
    main()
