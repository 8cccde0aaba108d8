"""Grounding features: the cost of `ingest.measure.features.measure`, and what it says about a real ECG.

Same run, same ECGs, one thread:

    ours      ingest.measure.features.measure(signal, 500) on the (12, 5000) model window
    baseline  neurokit2 ecg_clean + ecg_peaks + ecg_delineate(method="dwt") on every lead
              (R peaks and wave boundaries only: less than `measure` returns)

Inputs: neurokit2 `ecg_simulate(method="multileads")` ECGs at 45-130 bpm and the real Mortara
ELI 250 record shipped with pydicom. The design budget for all of preparation is 50 ms per
ECG per core, ~25 ms of it for the features. Then, for the Mortara record, our global
measurements beside the ones the device stored in the file.

Run: .venv/bin/python benchmarks/features.py [--count 10] [--repeat 20] [--baseline-repeat 2]
"""

from __future__ import annotations

import os

# One core: set before numpy/scipy load their thread pools.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ingest.measure.features import measure  # noqa: E402

DEVICE_CODES = {  # SCPECG codes of the Mortara's own global measurements
    "5.10.2.1-3": "rr_ms", "5.13.5-7": "pr_ms", "5.13.5-9": "qrs_ms", "5.13.5-11": "qt_ms",
    "5.10.2.5-5": "qtc_ms", "5.10.3-11": "p_axis_deg", "5.10.3-13": "qrs_axis_deg", "5.10.3-15": "t_axis_deg",
}


def _median_ms(function: Callable[[], object], repeat: int) -> float:
    function()  # warm caches and lazy imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _neurokit(signal: np.ndarray, fs: float) -> None:
    import neurokit2 as nk

    for lead in signal:
        try:
            cleaned = nk.ecg_clean(lead, sampling_rate=fs)
            _, peaks = nk.ecg_peaks(cleaned, sampling_rate=fs)
            nk.ecg_delineate(cleaned, peaks, sampling_rate=fs, method="dwt")
        except Exception:  # a lead neurokit2 cannot delineate still cost its time
            pass


def _inputs(count: int) -> dict[str, np.ndarray]:
    import neurokit2 as nk
    from pydicom.data import get_testdata_file

    from ingest.readers.read import read_ecg
    from ingest.prepare.signal import to_model_window

    signals = {"mortara": to_model_window(read_ecg(Path(get_testdata_file("waveform_ecg.dcm")))).signal}
    for index, rate in enumerate(np.linspace(45, 130, count).round().astype(int)):
        frame = nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=int(rate), method="multileads",
                                random_state=index)
        signals[f"sim {rate} bpm"] = frame.to_numpy().T.astype(np.float32)
    return signals


def _device_table() -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    from ingest.readers.read import read_ecg
    from ingest.prepare.signal import to_model_window

    path = Path(get_testdata_file("waveform_ecg.dcm"))
    device = {}
    for annotation in pydicom.dcmread(path).WaveformAnnotationSequence:
        names = annotation.get("ConceptNameCodeSequence")
        if names and names[0].CodeValue in DEVICE_CODES and "NumericValue" in annotation:
            device.setdefault(DEVICE_CODES[names[0].CodeValue], float(annotation.NumericValue))
    ours = measure(to_model_window(read_ecg(path)).signal, 500).global_
    print("\nMortara ELI 250 record: ours (500 Hz model window) vs the device")
    print(f"{'measurement':<14}{'ours':>8}{'device':>8}{'diff':>8}")
    for name, value in device.items():
        mine = getattr(ours, name)
        diff = "" if mine is None else f"{mine - value:+.0f}"
        print(f"{name:<14}{'-' if mine is None else f'{mine:.0f}':>8}{value:>8.0f}{diff:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10, help="simulated ECGs")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of measure per ECG")
    parser.add_argument("--baseline-repeat", type=int, default=2, help="timed runs of the neurokit2 baseline")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # neurokit2 warns on some simulated leads; the timing is the point

    signals = _inputs(args.count)
    print(f"{'ECG':<16}{'measure ms':>12}{'neurokit2 ms':>14}{'ratio':>8}")
    ours_all, theirs_all = [], []
    for name, signal in signals.items():
        ours = _median_ms(lambda s=signal: measure(s, 500), args.repeat)
        theirs = _median_ms(lambda s=signal: _neurokit(s, 500), args.baseline_repeat)
        ours_all.append(ours)
        theirs_all.append(theirs)
        print(f"{name:<16}{ours:>12.1f}{theirs:>14.1f}{theirs / ours:>7.0f}x")
    print(f"{'median':<16}{statistics.median(ours_all):>12.1f}{statistics.median(theirs_all):>14.1f}"
          f"{statistics.median(theirs_all) / statistics.median(ours_all):>7.0f}x")
    _device_table()


if __name__ == "__main__":
    main()
