"""Training rows from a folder of ECG records: PTB-XL, MIMIC-IV-ECG, or a plain manifest CSV.

    generate_corpus(root, out_dir, layout=None, limit=None, rewriter=None) -> CorpusResult
    ecg-worklist train corpus DIR OUT [--layout ptb-xl|mimic-iv-ecg|manifest] [--limit N]

Layouts (auto-detected from the files present, or given explicitly):

    ptb-xl        ptbxl_database.csv (ecg_id, filename_hr / filename_lr, scp_codes as a Python
                  dict string, strat_fold, age, sex) + scp_statements.csv (code -> description).
                  SCP codes map to the protocol vocabulary where the meaning is the same
                  (PTBXL_TO_VOCABULARY); every other code becomes its lower-case description.
                  Split: strat_fold 1-8 train, 9 val, 10 test (PTB-XL's recommendation).
    mimic-iv-ecg  record_list.csv (subject_id, study_id, path) + machine_measurements.csv
                  (study_id, report_0 ... report_17: the machine's free-text statements).
                  Statements map to the vocabulary by MIMIC_PATTERNS unless hedged ("possible",
                  "consider"...); the rest are kept as lower-case text. Split by subject, so
                  one patient's ECGs never straddle train and test.
    manifest      a CSV with columns path, labels, split: path relative to the CSV's folder,
                  labels ';'-separated (empty: the protocol reader's labels are the answer,
                  label_origin "protocol reader"), split train/val/test or empty (by id).

Every record goes through `ingest.readers.read.read_ecg` and `ingest.prepare.prepare`, the same
readers the worklist uses (so DICOM and WFDB both work), then `training.build.build_row`.
A record that cannot be used is skipped and listed with its file and reason in
`rejected.csv` beside the JSONL, never silently.

Rewriting. `Rewriter.rewrite(row) -> row` may vary the wording of the assistant text (an
LLM paraphrasing the protocol reader's steps, as the ECG-R1 corpus was written). The
default `ProtocolWording` keeps the deterministic reader's text. Every rewrite is checked
by `apply_rewriter`: the six step headings, the answer labels and every evidence phrase
(in its own step) must survive; otherwise the original row is kept and the reason is
recorded in `meta["rewrite"]`.
"""

from __future__ import annotations

import ast
import csv
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from ingest.ecg import Demographics, Sex
from ingest.errors import IngestError
from ingest.protocol import vocabulary as v
from ingest.report_format import parse_output
from training.build import (
    CORPUS_FILE,
    REJECTED_FILE,
    CorpusSummary,
    RowInput,
    Split,
    build_row,
    split_for,
    summarise,
    write_summary,
)
from training.rows import TrainingRow, write_rows

Layout = Literal["ptb-xl", "mimic-iv-ecg", "manifest"]
LAYOUTS: tuple[str, ...] = ("ptb-xl", "mimic-iv-ecg", "manifest")
MANIFEST_NAMES = ("manifest.csv",)

# PTB-XL SCP-ECG codes whose meaning is the protocol label's. Codes absent here (infarction
# stages, injury statements, fascicular blocks, PACs...) keep their own description: mapping
# them onto a nearby label would claim more than the reference says.
PTBXL_TO_VOCABULARY: dict[str, str] = {
    "NORM": v.NORMAL_ECG,
    "SR": v.SINUS_RHYTHM,
    "SBRAD": v.SINUS_BRADYCARDIA,
    "STACH": v.SINUS_TACHYCARDIA,
    "AFIB": v.ATRIAL_FIBRILLATION,
    "AFLT": v.ATRIAL_FLUTTER,
    "1AVB": v.FIRST_DEGREE_AV_BLOCK,
    "LPR": v.FIRST_DEGREE_AV_BLOCK,  # "prolonged PR interval"
    "CRBBB": v.RBBB,
    "CLBBB": v.LBBB,
    "IRBBB": v.INCOMPLETE_BBB,
    "ILBBB": v.INCOMPLETE_BBB,
    "IVCD": v.IVCD,
    "LVH": v.LVH,
    "LVOLT": v.LOW_QRS_VOLTAGE,
    "LAO/LAE": v.LEFT_ATRIAL_ABNORMALITY,
    "RAO/RAE": v.RIGHT_ATRIAL_ABNORMALITY,
    "LNGQT": v.PROLONGED_QT,
    "QWAVE": v.PATHOLOGICAL_Q_WAVES,
    "PVC": v.ECTOPIC_BEATS,  # a ventricular ectopic beat differs in shape from the dominant one
}
PTBXL_FOLD_SPLIT: dict[int, Split] = {**{fold: "train" for fold in range(1, 9)}, 9: "val", 10: "test"}

# MIMIC-IV-ECG machine statements (lower-cased) -> protocol label. First match wins, so the
# more specific patterns come first.
MIMIC_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern), label) for pattern, label in (
    (r"^normal ecg\b", v.NORMAL_ECG),
    (r"^sinus bradycardia\b", v.SINUS_BRADYCARDIA),
    (r"^sinus tachycardia\b", v.SINUS_TACHYCARDIA),
    (r"^sinus rhythm\b", v.SINUS_RHYTHM),
    (r"^atrial fibrillation\b", v.ATRIAL_FIBRILLATION),
    (r"^atrial flutter\b", v.ATRIAL_FLUTTER),
    (r"^(?:1st|first) degree a-?v block\b", v.FIRST_DEGREE_AV_BLOCK),
    (r"^incomplete (?:right |left )?bundle branch block\b|^(?:irbbb|ilbbb)\b", v.INCOMPLETE_BBB),
    (r"^right bundle branch block\b|^rbbb\b", v.RBBB),
    (r"^left bundle branch block\b|^lbbb\b", v.LBBB),
    (r"^(?:nonspecific )?intraventricular conduction (?:delay|defect)\b|^iv conduction defect\b", v.IVCD),
    (r"^left axis deviation\b", v.LEFT_AXIS_DEVIATION),
    (r"^right axis deviation\b", v.RIGHT_AXIS_DEVIATION),
    (r"^left ventricular hypertrophy\b", v.LVH),
    (r"^low qrs voltages?\b", v.LOW_QRS_VOLTAGE),
    (r"^poor r wave progression\b", v.POOR_R_PROGRESSION),
    (r"^left atrial (?:abnormality|enlargement)\b", v.LEFT_ATRIAL_ABNORMALITY),
    (r"^right atrial (?:abnormality|enlargement)\b", v.RIGHT_ATRIAL_ABNORMALITY),
    (r"^prolonged qtc? (?:interval)?\b|^long qtc? interval\b", v.PROLONGED_QT),
    (r"^short pr (?:interval)?\b", v.SHORT_PR),
))
# A hedged statement is a reference's doubt, not its diagnosis: kept verbatim, never mapped.
HEDGED = re.compile(r"^(?:possible|probable|consider|borderline|cannot rule out|rule out|suggests?|"
                    r"questionable|may be|likely)\b")
MIMIC_REPORTS = tuple(f"report_{number}" for number in range(18))


class RecordRef(BaseModel):
    """One record to read: where it is, its reference labels, its split."""

    id: str
    path: Path
    labels: list[str] | None  # None: no reference, the protocol reader labels it
    split: Split
    demographics: Demographics | None = None  # from the layout's CSV (the file may carry none)
    meta: dict[str, object] = Field(default_factory=dict)


class Rejected(BaseModel):
    id: str
    path: str
    reason: str


class CorpusResult(BaseModel):
    path: Path  # the JSONL
    rejected_path: Path
    summary: CorpusSummary
    rejected: list[Rejected]


class Rewriter(Protocol):
    """Varies the wording of a row's assistant text; must keep headings, answer and evidence."""

    def rewrite(self, row: TrainingRow) -> TrainingRow: ...


class ProtocolWording:
    """The default rewriter: the deterministic protocol reader's own wording, unchanged.

    An LLM rewriter implements the same one method: take `row.answer`, ask the model to
    reword each step paragraph and the narrative while keeping every number, lead name and
    evidence phrase (`row.evidence[step]`) verbatim in its step, and the `<answer>` as is;
    return `row.model_copy(update={"messages": make_messages(new_text)})`. `apply_rewriter`
    rejects any rewrite that drops a phrase, a heading or a label.
    """

    def rewrite(self, row: TrainingRow) -> TrainingRow:
        return row


def rewrite_problems(original: TrainingRow, rewritten: TrainingRow) -> list[str]:
    """Why a rewrite is not acceptable (empty: acceptable)."""
    parsed = parse_output(rewritten.answer)
    problems = list(parsed.problems)
    if parsed.labels != parse_output(original.answer).labels:
        problems.append("answer labels changed")
    for step, phrases in original.evidence.items():
        paragraph = parsed.steps.get(step, "").lower()
        problems += [f"step {step} lost evidence '{phrase}'" for phrase in phrases if phrase.lower() not in paragraph]
    if rewritten.labels != original.labels or rewritten.evidence != original.evidence:
        problems.append("labels or evidence fields changed")
    return problems


def apply_rewriter(rewriter: Rewriter, row: TrainingRow) -> TrainingRow:
    """The rewritten row if it keeps headings, answer and evidence; else the original, with why."""
    if isinstance(rewriter, ProtocolWording):
        return row
    try:
        rewritten = rewriter.rewrite(row)
        problems = rewrite_problems(row, rewritten)
    except Exception as error:  # an LLM call failing must not lose the row
        problems = [f"rewriter failed ({type(error).__name__}: {error})"]
    if problems:
        return row.model_copy(update={"meta": {**row.meta, "rewrite": {"kept_original": True, "problems": problems}}})
    return rewritten.model_copy(update={"meta": {**rewritten.meta, "rewrite": {"kept_original": False}}})


# --- layouts -------------------------------------------------------------------------------------

def detect_layout(root: Path) -> Layout:
    """The layout of a folder (or a manifest CSV file); ValueError naming the folder if none fits."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return "manifest"
    if (root / "ptbxl_database.csv").is_file():
        return "ptb-xl"
    if (root / "record_list.csv").is_file():
        return "mimic-iv-ecg"
    if any((root / name).is_file() for name in MANIFEST_NAMES):
        return "manifest"
    raise ValueError(f"{root}: no ptbxl_database.csv, record_list.csv or manifest.csv: layout unknown "
                     "(give --layout and a manifest CSV)")


def _rows(path: Path) -> Iterator[dict[str, str]]:
    if not path.is_file():
        raise ValueError(f"{path}: missing (needed by this layout)")
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _hea(root: Path, relative: str) -> Path:
    """A WFDB record name from a CSV (no extension) -> its header file."""
    path = root / relative
    return path if path.suffix == ".hea" else path.with_name(path.name + ".hea")


def ptbxl_descriptions(root: Path) -> dict[str, str]:
    path = root / "scp_statements.csv"
    if not path.is_file():
        return {}
    descriptions = {}
    for row in _rows(path):
        code = (row.get("") or row.get("Unnamed: 0") or next(iter(row.values()), "")).strip()
        if code:
            descriptions[code] = (row.get("description") or code).strip().lower()
    return descriptions


def ptbxl_labels(scp_codes: str, descriptions: dict[str, str]) -> list[str]:
    """PTB-XL's scp_codes dict string -> labels (vocabulary where the meaning matches)."""
    codes = ast.literal_eval(scp_codes) if scp_codes.strip() else {}
    if not isinstance(codes, dict):
        raise ValueError(f"scp_codes is not a dict: {scp_codes!r}")
    labels: list[str] = []
    for code in codes:
        label = PTBXL_TO_VOCABULARY.get(code) or descriptions.get(code, str(code).lower())
        if label not in labels:
            labels.append(label)
    return labels


def _ptbxl_sex(value: str) -> Sex:
    # PTB-XL codes sex as 0 = male, 1 = female.
    return {"0": Sex.MALE, "1": Sex.FEMALE}.get(value.strip().split(".")[0], Sex.UNKNOWN)


def ptbxl_records(root: Path) -> Iterator[RecordRef]:
    descriptions = ptbxl_descriptions(root)
    for row in _rows(root / "ptbxl_database.csv"):
        ecg_id = row["ecg_id"].strip().split(".")[0]
        name = (row.get("filename_hr") or "").strip()
        if not name or not _hea(root, name).exists():
            name = (row.get("filename_lr") or "").strip() or name
        fold = int(float(row.get("strat_fold") or 0))
        age = row.get("age", "").strip()
        demographics = Demographics(sex=_ptbxl_sex(row.get("sex", "")),
                                    age_years=int(float(age)) if age and float(age) < 150 else None)
        yield RecordRef(id=f"ptbxl-{int(ecg_id):05d}", path=_hea(root, name),
                        labels=ptbxl_labels(row.get("scp_codes", ""), descriptions),
                        split=PTBXL_FOLD_SPLIT.get(fold, split_for(ecg_id)), demographics=demographics,
                        meta={"ecg_id": ecg_id, "strat_fold": fold, "scp_codes": row.get("scp_codes", "")})


def mimic_statement_label(statement: str) -> str:
    """One machine statement -> a vocabulary label, or the statement itself (lower case)."""
    text = re.sub(r"\s+", " ", statement.strip().lower()).rstrip(" .")
    if HEDGED.search(text):
        return text
    for pattern, label in MIMIC_PATTERNS:
        if pattern.search(text):
            return label
    return text


def mimic_labels(row: dict[str, str]) -> list[str]:
    labels: list[str] = []
    for column in MIMIC_REPORTS:
        statement = (row.get(column) or "").strip()
        if statement and statement.lower() != "nan":
            label = mimic_statement_label(statement)
            if label and label not in labels:
                labels.append(label)
    return labels


def mimic_records(root: Path) -> Iterator[RecordRef]:
    reports = {row["study_id"].strip(): row for row in _rows(root / "machine_measurements.csv")}
    for row in _rows(root / "record_list.csv"):
        study, subject = row["study_id"].strip(), row.get("subject_id", "").strip()
        report = reports.get(study)
        yield RecordRef(id=f"mimic-{study}", path=_hea(root, row["path"].strip()),
                        labels=mimic_labels(report) if report is not None else None,
                        split=split_for(subject or study),
                        meta={"study_id": study, "subject_id": subject,
                              "statements": [report[c] for c in MIMIC_REPORTS if report and report.get(c)]})


def _manifest_id(relative: str) -> str:
    stem = re.sub(r"\.(hea|dcm|dat|pdf)$", "", relative, flags=re.IGNORECASE)
    return "manifest-" + re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")


def manifest_records(csv_path: Path) -> Iterator[RecordRef]:
    for row in _rows(csv_path):
        relative = (row.get("path") or "").strip()
        if not relative:
            continue
        raw = (row.get("labels") or "").strip()
        labels = [label.strip().lower() for label in raw.split(";") if label.strip()] if raw else None
        record_id = _manifest_id(relative)
        given = (row.get("split") or "").strip().lower()
        split: Split = given if given in ("train", "val", "test") else split_for(record_id)  # type: ignore[assignment]
        yield RecordRef(id=record_id, path=csv_path.parent / relative, labels=labels, split=split,
                        meta={"manifest_path": relative})


def records(root: Path, layout: Layout) -> Iterator[RecordRef]:
    if layout == "ptb-xl":
        return ptbxl_records(root)
    if layout == "mimic-iv-ecg":
        return mimic_records(root)
    csv_path = root if root.is_file() else next((root / n for n in MANIFEST_NAMES if (root / n).is_file()),
                                                 root / MANIFEST_NAMES[0])
    return manifest_records(csv_path)


# --- the corpus ----------------------------------------------------------------------------------

def record_row(ref: RecordRef, source: str, out_dir: Path) -> TrainingRow:
    """Read, prepare and build one record's row. Raises IngestError naming file and reason."""
    from ingest.prepare import prepare
    from ingest.readers.read import read_ecg

    ecg = read_ecg(ref.path)
    if ref.demographics is not None:
        known = ecg.demographics
        if known.sex == Sex.UNKNOWN:
            known.sex = ref.demographics.sex
        if known.age_years is None:
            known.age_years = ref.demographics.age_years
    prepared = prepare(ecg)
    if prepared.model_signal is None or prepared.features is None:
        raise IngestError(ref.path, "no signal (image-only record): nothing measured to ground the reasoning on")
    origin = "reference report" if ref.labels is not None else "protocol reader"
    return build_row(RowInput(id=ref.id, source=source, signal=prepared.model_signal, image=prepared.page(),
                              features=prepared.features, reference_labels=ref.labels, label_origin=origin,
                              split=ref.split, demographics=ecg.demographics,
                              meta={**ref.meta, "record": str(ref.path), "window": prepared.window_note}), out_dir)


def write_rejected(path: Path, rejected: list[Rejected]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "reason"])
        for item in rejected:
            writer.writerow([item.id, item.path, item.reason])
    return path


def _try_record(ref: RecordRef, source: str, out_dir: Path) -> TrainingRow | Rejected:
    """One record's row, or why it was rejected (run in worker processes too)."""
    try:
        return record_row(ref, source, out_dir)
    except IngestError as error:
        return Rejected(id=ref.id, path=str(ref.path), reason=error.reason)
    except Exception as error:  # a bug or a corrupt record must still be listed, not lost
        return Rejected(id=ref.id, path=str(ref.path), reason=f"{type(error).__name__}: {error}")


def built(refs: list[RecordRef], source: str, out_dir: Path, workers: int = 1) -> Iterator[TrainingRow | Rejected]:
    """Each record's row or rejection, in input order; `workers` > 1 reads in processes.

    Every record writes only its own files (signals/<id>.npy, images/<id>.png), so workers
    never touch the same file; the rows come back to this process in order.
    """
    if workers <= 1:
        for ref in refs:
            yield _try_record(ref, source, out_dir)
        return
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(partial(_try_record, source=source, out_dir=out_dir), refs, chunksize=8)


def generate_corpus(root: Path, out_dir: Path, layout: Layout | None = None, limit: int | None = None,
                    rewriter: Rewriter | None = None, progress: bool = True, workers: int = 1) -> CorpusResult:
    """Rows for every usable record under `root`; rejected.csv lists the others with reasons.

    `workers` > 1 reads and measures records in that many processes (about 0.1 s per record
    on one core; PTB-XL's 21,799 records take about 35 min on one).
    """
    from tqdm import tqdm

    root, out_dir = Path(root), Path(out_dir)
    chosen: Layout = layout or detect_layout(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    rewriter = rewriter or ProtocolWording()
    refs = list(records(root, chosen))
    if limit is not None:
        refs = refs[:limit]
    started = time.perf_counter()
    rows: list[TrainingRow] = []
    rejected: list[Rejected] = []
    outcomes = built(refs, chosen, out_dir, workers)
    for outcome in tqdm(outcomes, total=len(refs), desc=f"{chosen} records", unit="ecg", disable=not progress):
        if isinstance(outcome, Rejected):
            rejected.append(outcome)
        else:
            rows.append(apply_rewriter(rewriter, outcome))
    path = out_dir / CORPUS_FILE
    write_rows(path, rows)
    rejected_path = write_rejected(out_dir / REJECTED_FILE, rejected)
    summary = summarise(rows, rejected=len(rejected), seconds=time.perf_counter() - started,
                        extra={"layout": chosen, "root": str(root), "workers": workers})
    write_summary(out_dir, summary)
    return CorpusResult(path=path, rejected_path=rejected_path, summary=summary, rejected=rejected)


__all__ = ["CorpusResult", "HEDGED", "LAYOUTS", "Layout", "MIMIC_PATTERNS", "PTBXL_TO_VOCABULARY", "ProtocolWording",
           "RecordRef", "Rejected", "Rewriter", "apply_rewriter", "detect_layout", "generate_corpus",
           "mimic_statement_label", "ptbxl_labels", "records", "rewrite_problems"]
