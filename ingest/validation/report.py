"""What a validation run prints and keeps: text tables, the per-record CSV, and the baseline ratchet.

The baseline (`data/real/baseline.json`) holds our figures on the whole set, each with the
direction that counts as better and a small tolerance. `compare_with_baseline` lists every
figure that got worse by more than its tolerance; `ecg-worklist validate --write-baseline`
rewrites the file after an improvement (and after a deliberate trade-off, said so in the
commit message), so the committed figures can only move one way.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ingest.validation import labels as lb
from ingest.validation.evaluate import OVERALL, Evaluation, Figures, RecordRow
from ingest.validation.metrics import CSE_SD_MS, IEC_MEAN_MS, INTERVALS, Agreement
from ingest.validation.references import BOUNDARIES
from ingest.validation.run import OURS

BOUNDARY_NAMES = {"p_on": "P onset", "p_off": "P offset", "qrs_on": "QRS onset", "qrs_off": "QRS offset",
                  "t_end": "T end"}
INTERVAL_NAMES = {"hr_bpm": "HR (bpm)", "pr_ms": "PR", "qrs_ms": "QRS", "qt_ms": "QT", "qtc_ms": "QTc (Bazett)",
                  "p_axis_deg": "P axis (deg)", "qrs_axis_deg": "QRS axis (deg)", "t_axis_deg": "T axis (deg)"}
# Worse by more than this does not count as noise: ms (and bpm, degrees) and proportions.
TOLERANCE_MS = 0.5
TOLERANCE_RATE = 0.005


# --- text -----------------------------------------------------------------------------------------

def _agreement(a: Agreement | None) -> str:
    if a is None or a.n == 0:
        return "-" if a is None or not a.not_measured else f"none measured ({a.not_measured})"
    sd = f" ± {a.sd:.1f}" if a.sd is not None else ""
    missing = f", {a.not_measured} not measured" if a.not_measured else ""
    return f"{a.mean:+.1f}{sd} (|d| {a.mean_abs:.1f}, n={a.n}{missing})"


def _rate(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_text(evaluation: Evaluation) -> str:
    lines = [f"Real-data validation: {evaluation.records} records, split {evaluation.split}; delineators: "
             + ", ".join(evaluation.delineators)
             + (f" (neurokit2 on leads {', '.join(evaluation.neurokit2_leads)})" if evaluation.neurokit2_leads else "")
             + f"; {evaluation.seconds:.0f} s"
             + (f"; every record resampled to {evaluation.rate_hz:g} Hz first, as a recording made at that rate"
                if evaluation.rate_hz else ""), ""]
    sources = list(next(iter(evaluation.figures.values())).keys()) if evaluation.figures else []
    for source in [OVERALL, *[s for s in sources if s != OVERALL]]:
        lines += _source_section(evaluation, source)
    return "\n".join(lines)


def _source_section(evaluation: Evaluation, source: str) -> list[str]:
    figures = {name: per_source[source] for name, per_source in evaluation.figures.items() if source in per_source}
    first = next(iter(figures.values()))
    lines = [f"== {source}: {first.records} records"
             + "".join(f"; {name} could not read {f.unreadable}" for name, f in figures.items() if f.unreadable)
             + "".join(f"; {name} {f.seconds_per_record * 1000:.0f} ms/record" for name, f in figures.items()
                       if f.seconds_per_record is not None)]
    names = list(figures)
    if any(f.boundaries for f in figures.values()):
        # Ours twice: the global boundaries as devices take them (the earliest or latest of the leads that agree),
        # and the median of the leads' own, the convention of LUDB's reference and of neurokit2's column.
        columns = [(name, f.boundaries) for name, f in figures.items()]
        if OURS in figures and figures[OURS].boundaries_lead_median:
            columns.insert(1, (f"{OURS}, median of leads", figures[OURS].boundaries_lead_median))
        lines += ["", "Wave boundaries vs the LUDB cardiologists' (ms, found - annotated, per record; mean ± SD; "
                  "LUDB's boundary is the median of its leads' marks, neurokit2's the median of its leads'):",
                  "| boundary | CSE SD limit | " + " | ".join(name for name, _ in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        for boundary in BOUNDARIES:
            cells = [_agreement(summary.by_boundary.get(boundary)) if summary else "-" for _, summary in columns]
            lines.append(f"| {BOUNDARY_NAMES[boundary]} | {CSE_SD_MS[boundary]} | " + " | ".join(cells) + " |")
        for name, f in figures.items():
            if f.boundaries:
                b = f.boundaries
                lines.append(f"  {name}: {b.matched_beats} of {b.annotated_beats} annotated beats matched; "
                             f"P missed on {b.p_missed} beats, P found where none is drawn on {b.p_false}")
    for title, attribute in (("Global measurements vs the recording device's own", "intervals_vs_device"),
                             ("Global measurements vs the LUDB cardiologists' boundaries", "intervals_vs_annotations")):
        if any(getattr(f, attribute) for f in figures.values()):
            lines += ["", f"{title} (found - reference; mean ± SD, mean |d|):",
                      "| measurement | IEC mean limit | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
            for interval in INTERVALS:
                cells = [_agreement(getattr(f, attribute).get(interval)) for f in figures.values()]
                if all(cell == "-" for cell in cells):
                    continue
                limit = f"±{IEC_MEAN_MS[interval]:g} ms" if interval in IEC_MEAN_MS else ""
                lines.append(f"| {INTERVAL_NAMES[interval]} | {limit} | " + " | ".join(cells) + " |")
    ours = figures.get(OURS)
    if ours is not None and ours.labels is not None:
        lines += _label_lines(ours)
    if ours is not None and ours.prolonged_qt_vs_drawn_qt:
        q = ours.prolonged_qt_vs_drawn_qt
        lines.append(f"  prolonged qt against the QT the cardiologists drew (the reader's own Framingham rule on their "
                     f"boundaries; {q['tp'] + q['fn']} of {q['tp'] + q['fp'] + q['fn'] + q['tn']} records prolonged): "
                     f"sensitivity {_rate(q['sensitivity'])}, PPV {_rate(q['ppv'])} "
                     f"({q['fp']} called where the drawn QT is not prolonged, {q['fn']} missed)")
    lines.append("")
    return lines


def _label_lines(figures: Figures) -> list[str]:
    s = figures.labels
    af, normal = s.atrial_fibrillation, s.normal_ecg
    lines = ["", f"Protocol reader vs the reference statements ({s.records} records):",
             f"  rhythm class right on {s.rhythm_correct} of {s.rhythm_records} records that state one "
             f"({_rate(s.rhythm_accuracy)}); atrial fibrillation sensitivity {_rate(af.get('sensitivity'))}, "
             f"PPV {_rate(af.get('ppv'))} ({af.get('tp', 0) + af.get('fn', 0)} AF records)",
             f"  rhythm mechanism right (sinus at any rate; the references' own sinus rate limits differ) on "
             f"{s.rhythm_mechanism_correct} of {s.rhythm_records} ({_rate(s.rhythm_mechanism_accuracy)})",
             f"  normal ecg: sensitivity {_rate(normal.get('sensitivity'))}, specificity "
             f"{_rate(normal.get('specificity'))}, PPV {_rate(normal.get('ppv'))} "
             f"({normal.get('tp', 0) + normal.get('fn', 0)} normal records)",
             f"  records with a critical label the reference does not support: {_rate(s.any_critical_false_alarm_rate)}",
             "| critical finding | false alarms / records without it | rate | true calls / records with it |",
             "|---|---|---|---|"]
    for finding, c in s.critical_false_alarms.items():
        lines.append(f"| {finding} | {c['false_alarms']} / {c['records_without']} | {_rate(c['rate'])} | "
                     f"{c['true_calls']} / {c['true_calls'] + c['missed']} |")
    lines += ["  the worklist's triage on the measured values alone (the review queue's red marks before any reader): "
              f"records with a critical finding the reference does not support: {_rate(s.any_triage_false_alarm_rate)}",
              "| measured critical finding | false alarms / records without it | rate | true calls / records with it |",
              "|---|---|---|---|"]
    for finding, c in s.triage_false_alarms.items():
        lines.append(f"| {finding} | {c['false_alarms']} / {c['records_without']} | {_rate(c['rate'])} | "
                     f"{c['true_calls']} / {c['true_calls'] + c['missed']} |")
    lines += ["| label | reference | called | sensitivity | PPV | false calls |", "|---|---|---|---|---|---|"]
    for label, c in sorted(s.per_label.items(), key=lambda item: -(item[1]["tp"] + item[1]["fn"])):
        lines.append(f"| {label} | {c['tp'] + c['fn']} | {c['tp'] + c['fp']} | {_rate(c['sensitivity'])} | "
                     f"{_rate(c['ppv'])} | {c['fp']} |")
    if s.rhythm_confusion:
        predicted = sorted({p for row in s.rhythm_confusion.values() for p in row})
        lines += ["rhythm (reference rows, reader columns):", "| reference | " + " | ".join(predicted) + " |",
                  "|---|" + "---|" * len(predicted)]
        for reference in lb.RHYTHM_CLASSES:
            if reference in s.rhythm_confusion:
                row = s.rhythm_confusion[reference]
                lines.append(f"| {reference} | " + " | ".join(str(row.get(p, 0)) for p in predicted) + " |")
    return lines


# --- per-record CSV -------------------------------------------------------------------------------

def write_rows_csv(rows: list[RecordRow], path: Path) -> None:
    """One row per record and delineator; nested values are flattened into named columns."""
    columns = ["key", "source", "split", "delineator", "error", *[f"err_{b}_ms" for b in BOUNDARIES], "p_missed",
               "p_false", *[f"vs_device_{i}" for i in INTERVALS], *[f"vs_annotations_{i}" for i in INTERVALS],
               "reference_rhythm", "rhythm", "rhythm_correct", "missed_labels", "false_labels", "reference_labels",
               "labels", "leads_measured", "p_wave_fraction", "atrial_waves", "p_lock", "measured_critical", "notes", "seconds"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            flat = row.model_dump()
            out = {name: flat.get(name) for name in columns if name in flat}
            out.update({f"err_{b}_ms": row.boundary_errors_ms.get(b) for b in BOUNDARIES})
            out.update({f"vs_device_{i}": row.vs_device.get(i) for i in INTERVALS})
            out.update({f"vs_annotations_{i}": row.vs_annotations.get(i) for i in INTERVALS})
            for name in ("missed_labels", "false_labels", "reference_labels", "labels"):
                out[name] = "; ".join(getattr(row, name))
            writer.writerow(out)


# --- the baseline ratchet -------------------------------------------------------------------------

def held_figures(evaluation: Evaluation) -> dict[str, dict]:
    """Our overall figures that may only improve: name -> {value, better, tolerance}."""
    figures = evaluation.figures[OURS][OVERALL]
    held: dict[str, dict] = {}

    def hold(name: str, value: float | int | None, better: str, tolerance: float) -> None:
        if value is not None:
            held[name] = {"value": value, "better": better, "tolerance": tolerance}

    hold("unreadable_records", figures.unreadable, "lower", 0)
    if figures.boundaries:
        for boundary, a in figures.boundaries.by_boundary.items():
            hold(f"boundary.{boundary}.mean_abs_ms", a.mean_abs, "lower", TOLERANCE_MS)
            hold(f"boundary.{boundary}.sd_ms", a.sd, "lower", TOLERANCE_MS)
            hold(f"boundary.{boundary}.records", a.n, "higher", 0)
    if figures.boundaries_lead_median:
        for boundary, a in figures.boundaries_lead_median.by_boundary.items():
            hold(f"boundary_lead_median.{boundary}.mean_abs_ms", a.mean_abs, "lower", TOLERANCE_MS)
            hold(f"boundary_lead_median.{boundary}.sd_ms", a.sd, "lower", TOLERANCE_MS)
    for kind, summary in (("device", figures.intervals_vs_device), ("annotations", figures.intervals_vs_annotations)):
        for interval, a in summary.items():
            hold(f"vs_{kind}.{interval}.mean_abs", a.mean_abs, "lower", TOLERANCE_MS)
            hold(f"vs_{kind}.{interval}.not_measured", a.not_measured, "lower", 0)
    s = figures.labels
    if s is not None:
        hold("rhythm_accuracy", s.rhythm_accuracy, "higher", TOLERANCE_RATE)
        hold("rhythm_mechanism_accuracy", s.rhythm_mechanism_accuracy, "higher", TOLERANCE_RATE)
        hold("atrial_fibrillation.sensitivity", s.atrial_fibrillation.get("sensitivity"), "higher", TOLERANCE_RATE)
        hold("atrial_fibrillation.ppv", s.atrial_fibrillation.get("ppv"), "higher", TOLERANCE_RATE)
        for key in ("sensitivity", "specificity", "ppv"):
            hold(f"normal_ecg.{key}", s.normal_ecg.get(key), "higher", TOLERANCE_RATE)
        hold("critical.any_false_alarm_rate", s.any_critical_false_alarm_rate, "lower", TOLERANCE_RATE)
        for finding, c in s.critical_false_alarms.items():
            hold(f"critical.{finding}.false_alarm_rate", c["rate"], "lower", TOLERANCE_RATE)
        hold("triage.any_false_alarm_rate", s.any_triage_false_alarm_rate, "lower", TOLERANCE_RATE)
        for finding, c in s.triage_false_alarms.items():
            hold(f"triage.{finding}.false_alarm_rate", c["rate"], "lower", TOLERANCE_RATE)
        for label, c in s.per_label.items():
            hold(f"label.{label}.sensitivity", c["sensitivity"], "higher", TOLERANCE_RATE)
            hold(f"label.{label}.ppv", c["ppv"], "higher", TOLERANCE_RATE)
    for key in ("sensitivity", "ppv"):
        hold(f"prolonged_qt_vs_drawn_qt.{key}", figures.prolonged_qt_vs_drawn_qt.get(key), "higher", TOLERANCE_RATE)
    return held


def baseline_document(evaluation: Evaluation) -> dict:
    return {"about": "ecg-worklist's figures on data/real (ecg-worklist validate --split all); they may only "
                     "improve: tests/real_data fails when one gets worse by more than its tolerance. "
                     "Rewrite with: ecg-worklist validate --delineator ours --write-baseline",
            "split": evaluation.split, "records": evaluation.records, "figures": held_figures(evaluation)}


def write_baseline(evaluation: Evaluation, path: Path) -> None:
    if evaluation.split != "all" or OURS not in evaluation.figures:
        raise ValueError("the baseline holds ecg-worklist's figures on the whole set: run with --split all")
    path.write_text(json.dumps(baseline_document(evaluation), indent=1, sort_keys=True) + "\n", encoding="utf-8")


def compare_with_baseline(evaluation: Evaluation, baseline: dict) -> list[str]:
    """Every held figure that is worse than the baseline by more than its tolerance (empty: none)."""
    if baseline.get("split") != evaluation.split or baseline.get("records") != evaluation.records:
        return [f"the baseline is for {baseline.get('records')} records (split {baseline.get('split')}), this run "
                f"has {evaluation.records} (split {evaluation.split}): rewrite it with --write-baseline"]
    current = held_figures(evaluation)
    worse = []
    for name, held in sorted(baseline["figures"].items()):
        now = current.get(name)
        if now is None:
            worse.append(f"{name}: was {held['value']}, now not measured")
            continue
        value, tolerance = now["value"], held["tolerance"]
        if (held["better"] == "lower" and value > held["value"] + tolerance) or \
                (held["better"] == "higher" and value < held["value"] - tolerance):
            worse.append(f"{name}: {held['value']} -> {value} ({held['better']} is better)")
    return worse
