"""CPU preparation per ECG: our read + window + render + measure against the naive pipeline.

Same run, same ECGs, one thread. Inputs: N simulated 10 s 12-lead ECGs (neurokit2
`ecg_simulate(method="multileads")`, 500 Hz) written as WFDB records, plus the real Mortara
DICOM shipped with pydicom (1000 Hz). Stages, per ECG:

    stage    ours                                    naive baseline
    read     ingest.readers.read.read_ecg                    (the same)
    window   ingest.prepare.signal.to_model_window           (the same)
    render   ingest.prepare.render.render_12lead (PIL)       matplotlib 12-lead layout, same pixel size
    measure  ingest.measure.features.measure                 neurokit2 ecg_clean + ecg_peaks +
                                                     ecg_delineate(method="dwt") on every lead

Both renders stay in memory (an RGB image), as preparation keeps them; neither encodes a PNG.
The design budget is < 50 ms per ECG per core; the naive pipeline costs ~0.6 s.

Run: .venv/bin/python benchmarks/prepare.py [--count 20] [--repeat 3]
"""

from __future__ import annotations

import os

# One core: set before numpy/scipy load their thread pools.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ingest.ecg import STANDARD_LEADS  # noqa: E402
from ingest.prepare.render import LAYOUT, image_size, render_12lead  # noqa: E402

STAGES = ("read", "window", "render", "measure")


def _write_inputs(folder: Path, count: int) -> list[Path]:
    """`count` simulated ECGs as WFDB records, and the Mortara DICOM."""
    import neurokit2 as nk
    import wfdb
    from pydicom.data import get_testdata_file

    paths = []
    for seed in range(count):
        frame = nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads",
                                random_state=seed, heart_rate=55 + 3 * seed)
        name = f"sim{seed:02d}"
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=list(frame.columns),
                    p_signal=frame.to_numpy(), fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(folder))
        paths.append(folder / f"{name}.hea")
    paths.append(Path(get_testdata_file("waveform_ecg.dcm")))
    return paths


def _matplotlib_12lead(signal: np.ndarray, fs: float, size: tuple[int, int]) -> np.ndarray:
    """The naive renderer: a fresh matplotlib figure per ECG, the same layout, to an RGB array."""
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
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return pixels


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


def _features() -> Callable | None:
    try:
        from ingest.measure.features import measure
    except ModuleNotFoundError as exc:
        if exc.name != "ingest.measure.features":
            raise
        return None
    return measure


def _time(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return (time.perf_counter() - start) * 1000, result


def _best_of(function: Callable[[], object], repeat: int) -> float:
    return min(_time(function)[0] for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="simulated ECGs (plus the Mortara DICOM)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each of our stages (best kept)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # neurokit2 warns on some simulated leads; the timing is the point

    from ingest.readers.read import read_ecg
    from ingest.prepare.signal import to_model_window

    measure = _features()
    model_size, people_size = image_size(4), image_size(8)
    rows: dict[str, list[float]] = {f"{who}:{stage}": [] for who in ("ours", "naive") for stage in STAGES}
    extra: dict[str, list[float]] = {"ours:render 8 px/mm": [], "naive:render 8 px/mm": [], "prepare()": []}
    with tempfile.TemporaryDirectory() as folder:
        paths = _write_inputs(Path(folder), args.count)
        # Warm imports and caches once, outside the timings.
        warm = to_model_window(read_ecg(paths[0]))
        render_12lead(warm.signal, 500)
        render_12lead(warm.signal, 500, pixels_per_mm=8)
        _matplotlib_12lead(warm.signal, 500, model_size)
        _neurokit_delineation(warm.signal[:1], 500)
        if measure is not None:
            measure(warm.signal, 500)

        for path in paths:
            read_ms = _best_of(lambda path=path: read_ecg(path), args.repeat)
            ecg = read_ecg(path)
            window_ms = _best_of(lambda ecg=ecg: to_model_window(ecg), args.repeat)
            signal = to_model_window(ecg).signal
            for who in ("ours", "naive"):  # the shared stages count in both totals
                rows[f"{who}:read"].append(read_ms)
                rows[f"{who}:window"].append(window_ms)
            rows["ours:render"].append(_best_of(lambda s=signal: render_12lead(s, 500), args.repeat))
            extra["ours:render 8 px/mm"].append(
                _best_of(lambda s=signal: render_12lead(s, 500, pixels_per_mm=8), args.repeat))
            if measure is not None:
                rows["ours:measure"].append(_best_of(lambda s=signal: measure(s, 500), args.repeat))
                from ingest.prepare import prepare
                extra["prepare()"].append(_best_of(lambda ecg=ecg: prepare(ecg), args.repeat))
            # The baseline once per ECG: it is slow, and its spread is small next to the ratio.
            rows["naive:render"].append(_time(lambda s=signal: _matplotlib_12lead(s, 500, model_size))[0])
            extra["naive:render 8 px/mm"].append(
                _time(lambda s=signal: _matplotlib_12lead(s, 500, people_size))[0])
            rows["naive:measure"].append(_time(lambda s=signal: _neurokit_delineation(s, 500))[0])

    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    def cell(value: float | None) -> str:
        return f"{value:>12.2f}" if value is not None else f"{'n/a':>12}"

    print(f"{len(paths)} ECGs ({args.count} simulated WFDB at 500 Hz + Mortara DICOM at 1000 Hz), "
          f"one thread, mean ms per ECG")
    print(f"{'stage':<26}{'ours':>12}{'naive':>12}{'naive/ours':>12}")
    totals = {"ours": 0.0, "naive": 0.0}
    for stage in STAGES:
        ours, naive = mean(rows[f"ours:{stage}"]), mean(rows[f"naive:{stage}"])
        label = {"render": f"render {model_size[0]}x{model_size[1]}"}.get(stage, stage)
        ratio = f"{naive / ours:>12.1f}" if ours and naive else f"{'':>12}"
        print(f"{label:<26}{cell(ours)}{cell(naive)}{ratio}")
        totals["ours"] += ours or 0.0
        totals["naive"] += naive or 0.0
    complete = measure is not None
    print(f"{'total' if complete else 'total (no measure yet)':<26}{totals['ours']:>12.2f}"
          f"{totals['naive']:>12.2f}{totals['naive'] / totals['ours']:>12.1f}")
    ours8, naive8 = mean(extra["ours:render 8 px/mm"]), mean(extra["naive:render 8 px/mm"])
    print(f"{f'render {people_size[0]}x{people_size[1]}':<26}{cell(ours8)}{cell(naive8)}{naive8 / ours8:>12.1f}")
    if complete:
        print(f"{'prepare() end to end':<26}{cell(mean(extra['prepare()']))}")
    else:
        print("ingest.measure.features is not installed yet: the measure stage of our pipeline is missing")


if __name__ == "__main__":
    main()
