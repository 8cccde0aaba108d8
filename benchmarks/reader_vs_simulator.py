"""The protocol reader against the simulator's ground truth: per-label recall/precision, interval errors.

For records 0..count-1 of `training.synthetic.simulate(id, seed, index)` (the records the
bundled synthetic corpus is made of), measures the signal (`ingest.measure.features.measure`),
reads it (`ingest.protocol.read.protocol_read`) and compares the reader's labels with the
simulated labels, and the measured PR, QRS and QT with the simulated ones. No files are
written; nothing is rendered. Prints:

    label  rows  found  recall  extra  precision     (extra: reader wrote it, truth has not)
    interval errors (measured - simulated, ms): mean, SD, median, 5th and 95th percentile
    QRS and QT errors by conduction (normal / incomplete / rbbb / lbbb)

Run: .venv/bin/python benchmarks/reader_vs_simulator.py [--count 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tally:
    """Label counts and interval errors accumulated over the records."""

    truth: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    extra: Counter[str] = field(default_factory=Counter)
    agree: int = 0
    records: int = 0
    errors: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def tally(count: int, seed: int) -> Tally:
    from ingest.measure.features import measure
    from ingest.protocol.read import protocol_read
    from training.synthetic import FS, simulate

    result = Tally()
    for index in range(count):
        signal, truth = simulate(f"synthetic-{index:05d}", seed, index)
        features = measure(signal, FS)
        labels = set(protocol_read(features).labels)
        reference = set(truth.labels)
        result.records += 1
        result.agree += labels == reference
        result.truth.update(reference)
        result.found.update(reference & labels)
        result.extra.update(labels - reference)
        measured = features.global_
        for name, ours, simulated in (("pr", measured.pr_ms, truth.pr_ms), ("qrs", measured.qrs_ms, truth.qrs_ms),
                                      ("qt", measured.qt_ms, truth.qt_ms)):
            if ours is not None and simulated is not None:
                result.errors[name].append(ours - simulated)
                if name != "pr":
                    result.errors[f"{name} ({truth.conduction})"].append(ours - simulated)
    return result


def report(result: Tally) -> str:
    names = sorted(set(result.truth) | set(result.extra), key=lambda name: (-result.truth[name], name))
    width = max([len(name) for name in names] + [30]) + 2
    lines = [f"records {result.records}, reader label set == truth in {result.agree} "
             f"({result.agree / max(1, result.records):.0%})", "",
             f"{'label':<{width}}{'rows':>6}{'found':>7}{'recall':>8}{'extra':>7}{'precision':>11}"]
    for name in names:
        rows, found, extra = result.truth[name], result.found[name], result.extra[name]
        recall = f"{found / rows:.0%}" if rows else ""
        precision = f"{found / (found + extra):.0%}" if found + extra else ""
        lines.append(f"{name:<{width}}{rows:>6}{found:>7}{recall:>8}{extra:>7}{precision:>11}")
    lines += ["", f"{'measured - simulated (ms)':<26}{'n':>5}{'mean':>7}{'SD':>6}{'median':>8}{'p5':>6}{'p95':>6}"]
    for name in sorted(result.errors, key=lambda name: (name.split(" ")[0] != "pr", name)):
        values = np.asarray(result.errors[name])
        sd = values.std(ddof=1) if values.size > 1 else 0.0
        lines.append(f"{name:<26}{values.size:>5}{values.mean():>+7.1f}{sd:>6.1f}{np.median(values):>+8.1f}"
                     f"{np.percentile(values, 5):>+6.0f}{np.percentile(values, 95):>+6.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    result = tally(args.count, args.seed)
    print(report(result))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
