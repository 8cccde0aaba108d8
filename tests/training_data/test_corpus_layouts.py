"""Corpus generation from record folders: PTB-XL, MIMIC-IV-ECG and manifest layouts, rejections, rewriters.

Every fixture folder is written here at test time (WFDB records from the simulator, the CSVs
by hand); no data set is committed.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.protocol import vocabulary as v
from ingest.report_format import parse_output
from tests.training_data.conftest import simulated, write_wfdb
from training.build import split_for
from training.corpus import (
    ProtocolWording,
    apply_rewriter,
    detect_layout,
    generate_corpus,
    mimic_statement_label,
    ptbxl_labels,
)
from training.rows import TrainingRow, make_messages, read_rows

REPO = Path(__file__).resolve().parents[2]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _rejected(out: Path) -> list[dict[str, str]]:
    with (out / "rejected.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ptbxl")
    for number in (1, 2, 3, 4):
        write_wfdb(root / "records500" / "00000", f"{number:05d}_hr", simulated(number))
    (root / "records500" / "00000" / "00004_hr.dat").unlink()  # a broken record: header without samples
    _write_csv(root / "scp_statements.csv", ["", "description", "diagnostic", "form", "rhythm"], [
        ["NORM", "normal ECG", 1, "", ""], ["SR", "sinus rhythm", "", "", 1],
        ["IMI", "inferior myocardial infarction", 1, "", ""], ["CRBBB", "complete right bundle branch block", 1, "", ""],
    ])
    _write_csv(root / "ptbxl_database.csv",
               ["ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold", "filename_lr", "filename_hr"], [
        [1, 15709.0, 56.0, 1, "{'NORM': 100.0, 'SR': 0.0}", 3, "records100/00000/00001_lr", "records500/00000/00001_hr"],
        [2, 13243.0, 19.0, 0, "{'IMI': 50.0, 'CRBBB': 100.0}", 9, "records100/00000/00002_lr",
         "records500/00000/00002_hr"],
        [3, 20372.0, 37.0, 1, "{'SR': 0.0}", 10, "records100/00000/00003_lr", "records500/00000/00003_hr"],
        [4, 17014.0, 24.0, 0, "{'NORM': 100.0}", 2, "records100/00000/00004_lr", "records500/00000/00004_hr"],
    ])
    return root


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic")
    studies = [("10000032", "40689238", 5), ("10000032", "44458630", 6), ("10000117", "45090959", 7)]
    records = []
    for subject, study, index in studies:
        relative = f"files/p1000/p{subject}/s{study}/{study}"
        write_wfdb(root / Path(relative).parent, study, simulated(index))
        records.append([subject, study, study, "2180-07-23 08:44:00", relative])
    _write_csv(root / "record_list.csv", ["subject_id", "study_id", "file_name", "ecg_time", "path"], records)
    reports = [[*"10000032 40689238".split(), "Sinus rhythm", "Possible left atrial enlargement", "Borderline ECG"],
               [*"10000032 44458630".split(), "Atrial fibrillation with rapid ventricular response",
                "Left axis deviation", "Abnormal ECG"]]
    header = ["subject_id", "study_id", *[f"report_{n}" for n in range(18)]]
    _write_csv(root / "machine_measurements.csv", header, [row + [""] * (len(header) - len(row)) for row in reports])
    return root


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("manifest")
    write_wfdb(root / "ecgs", "a", simulated(8))
    write_wfdb(root / "ecgs", "b", simulated(9))
    shutil.copy(REPO / "samples" / "demo-dicom.dcm", root / "ecgs" / "c.dcm")
    (root / "ecgs" / "junk.hea").write_text("this is not a WFDB header\n")
    _write_csv(root / "manifest.csv", ["path", "labels", "split"], [
        ["ecgs/a.hea", "Sinus rhythm; left axis deviation", "val"],
        ["ecgs/b.hea", "", ""],
        ["ecgs/c.dcm", "sinus rhythm", "test"],
        ["ecgs/missing.hea", "normal ecg", "train"],
        ["ecgs/junk.hea", "normal ecg", "train"],
    ])
    return root


def test_layouts_are_detected(ptbxl, mimic, manifest, tmp_path):
    assert detect_layout(ptbxl) == "ptb-xl"
    assert detect_layout(mimic) == "mimic-iv-ecg"
    assert detect_layout(manifest) == "manifest"
    assert detect_layout(manifest / "manifest.csv") == "manifest"
    with pytest.raises(ValueError, match="layout unknown"):
        detect_layout(tmp_path)


def test_ptbxl_rows_labels_and_folds(ptbxl, tmp_path):
    result = generate_corpus(ptbxl, tmp_path / "out", progress=False)
    rows = {row.id: row for row in read_rows(result.path)}
    assert sorted(rows) == ["ptbxl-00001", "ptbxl-00002", "ptbxl-00003"]
    assert rows["ptbxl-00001"].labels == [v.NORMAL_ECG, v.SINUS_RHYTHM]
    assert rows["ptbxl-00002"].labels == ["inferior myocardial infarction", v.RBBB]  # IMI has no protocol label
    assert [rows[i].split for i in ("ptbxl-00001", "ptbxl-00002", "ptbxl-00003")] == ["train", "val", "test"]
    for row in rows.values():
        assert row.source == "ptb-xl" and row.label_origin == "reference report"
        assert parse_output(row.answer).labels == row.labels
        assert all(len(phrases) <= 3 for phrases in row.evidence.values())
        assert (result.path.parent / row.signal_path).is_file() and (result.path.parent / row.image_path).is_file()
    # The broken record is listed with its file and reason, not silently dropped.
    rejected = _rejected(tmp_path / "out")
    assert [item["id"] for item in rejected] == ["ptbxl-00004"]
    assert rejected[0]["path"].endswith("00004_hr.hea") and rejected[0]["reason"]
    assert result.summary.rejected == 1 and result.summary.rows == 3


def test_ptbxl_code_mapping():
    descriptions = {"LAFB": "left anterior fascicular block"}
    assert ptbxl_labels("{'AFIB': 100.0, 'LAFB': 100.0, 'PAC': 0.0}", descriptions) == [
        v.ATRIAL_FIBRILLATION, "left anterior fascicular block", "pac"]
    assert ptbxl_labels("{'1AVB': 100.0, 'LPR': 100.0}", {}) == [v.FIRST_DEGREE_AV_BLOCK]
    assert ptbxl_labels("{'AFLT': 100.0}", {}) == [v.ATRIAL_FLUTTER]


def test_mimic_rows_statements_and_patient_splits(mimic, tmp_path):
    result = generate_corpus(mimic, tmp_path / "out", layout="mimic-iv-ecg", progress=False)
    rows = {row.id: row for row in read_rows(result.path)}
    assert sorted(rows) == ["mimic-40689238", "mimic-44458630", "mimic-45090959"]
    assert rows["mimic-40689238"].labels == [v.SINUS_RHYTHM, "possible left atrial enlargement", "borderline ecg"]
    assert rows["mimic-44458630"].labels == [v.ATRIAL_FIBRILLATION, v.LEFT_AXIS_DEVIATION, "abnormal ecg"]
    # No machine report for this study: the protocol reader's labels are the answer.
    unlabelled = rows["mimic-45090959"]
    assert unlabelled.label_origin == "protocol reader" and unlabelled.labels == unlabelled.meta["reader_labels"]
    # One patient, one split.
    assert rows["mimic-40689238"].split == rows["mimic-44458630"].split == split_for("10000032")
    assert _rejected(tmp_path / "out") == []


def test_mimic_statement_mapping():
    assert mimic_statement_label("Sinus bradycardia.") == v.SINUS_BRADYCARDIA
    assert mimic_statement_label("1st degree A-V block") == v.FIRST_DEGREE_AV_BLOCK
    assert mimic_statement_label("Incomplete right bundle branch block") == v.INCOMPLETE_BBB
    assert mimic_statement_label("Right bundle branch block") == v.RBBB
    assert mimic_statement_label("Atrial flutter with variable A-V block") == v.ATRIAL_FLUTTER
    assert mimic_statement_label("Consider left ventricular hypertrophy") == "consider left ventricular hypertrophy"
    assert mimic_statement_label("Inferior infarct - age undetermined") == "inferior infarct - age undetermined"


def test_manifest_rows_dicom_and_rejections(manifest, tmp_path):
    result = generate_corpus(manifest, tmp_path / "out", progress=False)
    rows = {row.id: row for row in read_rows(result.path)}
    assert sorted(rows) == ["manifest-ecgs-a", "manifest-ecgs-b", "manifest-ecgs-c"]
    assert rows["manifest-ecgs-a"].labels == [v.SINUS_RHYTHM, v.LEFT_AXIS_DEVIATION]
    assert rows["manifest-ecgs-a"].split == "val"
    assert rows["manifest-ecgs-b"].label_origin == "protocol reader"
    assert rows["manifest-ecgs-b"].split == split_for("manifest-ecgs-b")
    dicom = rows["manifest-ecgs-c"]  # the Mortara DICOM sample went through the same readers
    assert dicom.split == "test" and dicom.labels == [v.SINUS_RHYTHM]
    rejected = {item["id"]: item for item in _rejected(tmp_path / "out")}
    assert sorted(rejected) == ["manifest-ecgs-junk", "manifest-ecgs-missing"]
    assert "not found" in rejected["manifest-ecgs-missing"]["reason"]
    assert rejected["manifest-ecgs-junk"]["path"].endswith("junk.hea")


def test_limit_and_explicit_layout(manifest, tmp_path):
    result = generate_corpus(manifest / "manifest.csv", tmp_path / "out", layout="manifest", limit=1,
                             progress=False)
    assert [row.id for row in read_rows(result.path)] == ["manifest-ecgs-a"]


class _Paraphrase:
    """Rewords the narrative only: headings, evidence and answer survive."""

    def rewrite(self, row: TrainingRow) -> TrainingRow:
        text = row.answer.replace("Preliminary computer reading", "Preliminary automated reading")
        return row.model_copy(update={"messages": make_messages(text)})


class _Careless:
    """Drops step 1's paragraph: its evidence is lost."""

    def rewrite(self, row: TrainingRow) -> TrainingRow:
        steps = parse_output(row.answer).steps
        text = row.answer.replace(steps[1], "Rate and rhythm look fine.")
        return row.model_copy(update={"messages": make_messages(text)})


def test_rewriter_hook_keeps_evidence_or_falls_back(manifest, tmp_path):
    result = generate_corpus(manifest, tmp_path / "out", limit=1, progress=False)
    row = next(read_rows(result.path))
    assert apply_rewriter(ProtocolWording(), row) is row
    reworded = apply_rewriter(_Paraphrase(), row)
    assert "automated reading" in reworded.answer and reworded.meta["rewrite"] == {"kept_original": False}
    kept = apply_rewriter(_Careless(), row)
    assert kept.answer == row.answer
    assert kept.meta["rewrite"]["kept_original"] is True
    assert any("step 1 lost evidence" in problem for problem in kept.meta["rewrite"]["problems"])


def test_cli_synth_and_corpus(manifest, tmp_path):
    from worker.cli_train import train

    runner = CliRunner()
    synth = runner.invoke(train, ["synth", str(tmp_path / "synth"), "--count", "3", "--seed", "1"])
    assert synth.exit_code == 0, synth.output
    assert "rows: 3" in synth.output and "heart rate" in synth.output
    assert len(list(read_rows(tmp_path / "synth" / "corpus.jsonl"))) == 3
    corpus = runner.invoke(train, ["corpus", str(manifest), str(tmp_path / "corpus"), "--limit", "2"])
    assert corpus.exit_code == 0, corpus.output
    assert "rows: 2" in corpus.output and "rejected: 0" in corpus.output
    missing = runner.invoke(train, ["corpus", str(tmp_path), str(tmp_path / "none")])
    assert missing.exit_code != 0 and "layout unknown" in missing.output


def test_corpus_in_worker_processes_matches_one_process(manifest, tmp_path):
    one = generate_corpus(manifest, tmp_path / "one", progress=False)
    two = generate_corpus(manifest, tmp_path / "two", progress=False, workers=2)
    assert [r.id for r in read_rows(one.path)] == [r.id for r in read_rows(two.path)]
    assert [r.labels for r in read_rows(one.path)] == [r.labels for r in read_rows(two.path)]
    assert [item.id for item in one.rejected] == [item.id for item in two.rejected]
