"""What the recording's faults do to the reading: the real records as recorded, and with a fault added.

Not a timing: a robustness check of `ingest.measure` + `ingest.protocol` + the measured triage
(`reports.triage.measured_findings`) on data/real's records. Each record is read as recorded, then
again with one fault added to its model window (10 s at 500 Hz), and the labels compared. The faults
are put where a cart picks them up, at the electrodes (RA, LA, LL, V1-V6), and the 12 leads are formed
from them as a cart forms them (Einthoven, Goldberger, Wilson's terminal):

    arms swapped     the left and right arm electrodes exchanged (I inverted, II/III and aVR/aVL swapped)
    wander 0.25/0.5  breathing: a sine of 0.25 or 0.5 mV (each electrode 30-100 % of it) at 0.21-0.39 Hz
    muscle 20/50     muscle tremor: noise band-passed to 20-150 Hz, 20 or 50 uV RMS at each electrode
    mains 50/60      a 50 or 60 Hz line of up to 0.1 mV at each electrode
    ventricular run  four wide complexes at 150 /min (one dipole's time course at every electrode, a
                     QRS of 140 ms and an opposite T) in place of what followed the third beat: how
                     often a run of ventricular tachycardia amid each record's own rhythm is read as one
    recorded 250 Hz  the record as a 250 Hz archive holds it (resampled with the preparation's filter,
                     prepared as any 250 Hz file is, pacing judged at that rate)

Each fault's draws are seeded by the record's name (crc32), so a run repeats exactly. Printed per
fault: the records whose labels changed, those whose reading says the trace has muscle artefact
(`ingest.measure.features.MUSCLE_ARTEFACT_FROM_UV`), the labels the fault added and took away (the commonest),
and the critical findings the measured triage raised that it did not raise as recorded, by record.
These are our own perturbations of real recordings: a figure from here says so.

Run: .venv/bin/python benchmarks/perturbations.py [--split dev|test|all] [--fault NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.ecg import STANDARD_LEADS  # noqa: E402
from ingest.measure.beats import filtfilt  # noqa: E402
from ingest.measure.features import measure  # noqa: E402
from ingest.protocol import protocol_read  # noqa: E402
from ingest.protocol import vocabulary as v  # noqa: E402
from ingest.validation.references import DEFAULT_DATA_DIR, Reference, load_references  # noqa: E402
from ingest.validation.run import model_window  # noqa: E402
from reports.triage import measured_findings  # noqa: E402

FS = 500.0
LEAD = {name: index for index, name in enumerate(STANDARD_LEADS)}


def through_leads(electrodes: np.ndarray) -> np.ndarray:
    """(12, n) leads from (9, n) electrode potentials RA, LA, LL, V1-V6."""
    ra, la, ll = electrodes[:3]
    wilson = (ra + la + ll) / 3
    limb = [la - ra, ll - ra, ll - la, ra - (la + ll) / 2, la - (ra + ll) / 2, ll - (ra + la) / 2]
    return np.array(limb + [chest - wilson for chest in electrodes[3:]])


def arms_swapped(signal: np.ndarray) -> np.ndarray:
    """The left and right arm electrodes exchanged: I inverted, II/III and aVR/aVL swapped."""
    swapped = signal.copy()
    swapped[LEAD["I"]] = -signal[LEAD["I"]]
    swapped[[LEAD["II"], LEAD["III"]]] = signal[[LEAD["III"], LEAD["II"]]]
    swapped[[LEAD["aVR"], LEAD["aVL"]]] = signal[[LEAD["aVL"], LEAD["aVR"]]]
    return swapped


def wander(amplitude_mv: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def add(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(signal.shape[1]) / FS
        electrodes = np.array([amplitude_mv * rng.uniform(0.3, 1.0)
                               * np.sin(2 * np.pi * 0.3 * rng.uniform(0.7, 1.3) * t + rng.uniform(0, 2 * np.pi))
                               for _ in range(9)])
        return signal + through_leads(electrodes)
    return add


def muscle(rms_mv: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def add(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = filtfilt(rng.normal(0.0, 1.0, (9, signal.shape[1])), "bandpass", (20.0, 150.0), FS)
        return signal + through_leads(noise / noise.std(axis=1, keepdims=True) * rms_mv)
    return add


def mains(hz: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def add(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(signal.shape[1]) / FS
        electrodes = np.array([0.1 * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
                               for _ in range(9)])
        return signal + through_leads(electrodes)
    return add


# A run of ventricular beats spliced into the record (`ventricular_run`): this many wide complexes, each
# RUN_RR_S after the one before (150 /min), the first RUN_AFTER_S after a beat's QRS.
RUN_BEATS = 4
RUN_RR_S = 0.4
RUN_AFTER_S = 0.5
RUN_QRS_S = 0.14  # each complex's QRS: a biphasic wave this wide
RUN_T_S = 0.2  # and its T, opposite the QRS, this wide


def _ventricular_complex(rng: np.random.Generator) -> np.ndarray:
    """(12, n) one wide complex: every electrode the same time course at its own size (one dipole moving
    one way, as a ventricular beat's activation spreads from its ectopic focus), formed into leads."""
    n = int(round((RUN_RR_S + 0.05) * FS))
    t = np.arange(n) / FS
    centre, width = RUN_QRS_S / 2, RUN_QRS_S / 6
    qrs = -(t - centre) / width * np.exp(-0.5 * ((t - centre) / width) ** 2)  # biphasic, peak at +-1/sqrt(e)
    t_wave = np.exp(-0.5 * ((t - RUN_QRS_S - 0.12) / (RUN_T_S / 5)) ** 2)
    sizes = rng.normal(0.0, 1.0, 9)
    electrodes = np.outer(sizes, 1.2 * qrs - 0.3 * t_wave)
    return through_leads(electrodes)


def ventricular_run(signal: np.ndarray, rng: np.random.Generator, beat_times_ms: list[float]) -> np.ndarray | None:
    """The record with RUN_BEATS wide complexes at 150 /min in place of what was there after its third beat
    (the stretch replaced by a line between its ends, then the complexes added); None when the record has
    no room for them (too few beats, or no beat after the run's end within the record)."""
    if len(beat_times_ms) < 4:
        return None
    start = int(round((beat_times_ms[2] / 1000.0 + RUN_AFTER_S - 0.05) * FS))
    run_end = start + int(round((0.05 + (RUN_BEATS - 1) * RUN_RR_S + RUN_QRS_S + RUN_T_S + 0.15) * FS))
    following = [time for time in beat_times_ms if time / 1000.0 * FS - 0.25 * FS >= run_end]
    if not following:
        return None
    end = int(round(following[0] / 1000.0 * FS - 0.25 * FS))
    if end >= signal.shape[1]:
        return None
    spliced = signal.copy()
    weights = np.linspace(0.0, 1.0, end - start)
    spliced[:, start:end] = signal[:, [start]] * (1 - weights) + signal[:, [end]] * weights
    complex_ = _ventricular_complex(rng)
    for beat in range(RUN_BEATS):
        at = start + int(round((0.05 + beat * RUN_RR_S) * FS))
        stop = min(at + complex_.shape[1], end)
        spliced[:, at:stop] += complex_[:, :stop - at]
    return spliced


FAULTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray] | None] = {
    "arms swapped": lambda signal, _rng: arms_swapped(signal), "wander 0.25": wander(0.25), "wander 0.5": wander(0.5),
    "muscle 20": muscle(0.02), "muscle 50": muscle(0.05), "mains 50": mains(50.0), "mains 60": mains(60.0),
    "recorded 250 Hz": None,  # resampled by the harness's reader (`model_window(rate_hz=250)`)
}


def read(reference: Reference, fault: str | None) -> tuple[set[str], set[str], bool]:
    """(the reader's labels, the measured triage's critical findings, whether muscle artefact was said) for a
    record, as recorded or with a fault."""
    rate = 250.0 if fault == "recorded 250 Hz" else None
    signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR, rate_hz=rate)
    add = FAULTS.get(fault) if fault else None
    if add is not None:
        signal = add(signal, np.random.default_rng(zlib.crc32(reference.key.encode())))
    features = measure(signal, fs, recorded_rate_hz=ecg.sampling_rate_hz)
    return (set(protocol_read(features, ecg.demographics).labels),
            {finding.finding for finding in measured_findings(features, ecg.demographics)},
            features.quality.muscle_artefact)


RUN_FAULT = "ventricular run"


def read_with_run(reference: Reference) -> tuple[set[str], set[str]] | None:
    """(labels, measured critical findings) with a run of ventricular beats spliced in; None: no room for one."""
    signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
    beat_times = measure(signal, fs, recorded_rate_hz=ecg.sampling_rate_hz).rhythm.beat_times_ms
    spliced = ventricular_run(signal, np.random.default_rng(zlib.crc32(reference.key.encode())), beat_times)
    if spliced is None:
        return None
    features = measure(spliced, fs, recorded_rate_hz=ecg.sampling_rate_hz)
    return (set(protocol_read(features, ecg.demographics).labels),
            {finding.finding for finding in measured_findings(features, ecg.demographics)})


def report_runs(references: list[Reference], recorded: dict[str, tuple[set[str], set[str], bool]]) -> None:
    """How often a spliced run of ventricular beats is read as one, and what else it changes."""
    spliced, by_reader, by_triage, marked, changed, added = 0, 0, 0, 0, 0, Counter()
    missed = []
    for reference in references:
        result = read_with_run(reference)
        if result is None:
            continue
        spliced += 1
        labels, critical = result
        by_reader += v.NON_SUSTAINED_VT in labels
        by_triage += v.NON_SUSTAINED_VT in critical
        marked += bool({v.NON_SUSTAINED_VT, v.WIDE_COMPLEX_TACHYCARDIA} & critical)
        if v.NON_SUSTAINED_VT not in labels:
            missed.append(reference.key)
        changed += labels != recorded[reference.key][0]
        added.update(labels - recorded[reference.key][0] - {v.NON_SUSTAINED_VT})
    print(f"\n== {RUN_FAULT}: {RUN_BEATS} wide complexes at {60 / RUN_RR_S:.0f} /min spliced into {spliced} of "
          f"{len(references)} records (the others have no room for them)")
    print(f"  read as {v.NON_SUSTAINED_VT}: {by_reader} of {spliced}; raised by the measured triage: {by_triage}; "
          f"marked critical by it as a run or a wide complex tachycardia (the run outnumbering the record's own "
          f"beats): {marked}")
    print(f"  labels changed on {changed} of {spliced}; other labels added: " + ", ".join(f"{label} {count}" for label, count in added.most_common(8)))
    print("  not read as a run: " + ", ".join(missed[:20]) + (" ..." if len(missed) > 20 else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "test", "all"], default="all")
    parser.add_argument("--fault", action="append", choices=[*FAULTS, RUN_FAULT],
                        help="only these faults (repeatable)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    references = load_references(DEFAULT_DATA_DIR, args.split)
    recorded = {reference.key: read(reference, None) for reference in references}
    print(f"{len(references)} real records of data/real ({args.split}); each fault is ours, added to every record")
    print(f"muscle artefact said as recorded: {sum(artefact for _, _, artefact in recorded.values())}")
    faults = args.fault or [*FAULTS, RUN_FAULT]
    for fault in [fault for fault in faults if fault != RUN_FAULT]:
        added, lost, changed, raised, artefact = Counter(), Counter(), 0, [], 0
        for reference in references:
            (labels, critical, _), (labels_after, critical_after, said) = recorded[reference.key], read(reference, fault)
            artefact += said
            changed += labels != labels_after
            added.update(labels_after - labels)
            lost.update(labels - labels_after)
            raised += [f"{reference.key} {finding}" for finding in sorted(critical_after - critical)]
        print(f"\n== {fault}: labels changed on {changed} of {len(references)}; muscle artefact said on {artefact}")
        print("  added: " + ", ".join(f"{label} {count}" for label, count in added.most_common(8)))
        print("  taken away: " + ", ".join(f"{label} {count}" for label, count in lost.most_common(8)))
        print(f"  measured triage, critical findings raised that were not: {len(raised)}"
              + ("".join(f"\n    {line}" for line in raised)))
    if RUN_FAULT in faults:
        report_runs(references, recorded)


if __name__ == "__main__":
    main()
