"""`training.evaluate` end to end: a random tiny ECG-R1 and the protocol reader on rows made here.

The rows are constructed 12-lead signals (tests/ingest_features/synthetic.py) whose labels
and evidence are the protocol reader's own reading, so the reader must score perfectly on
the signal and the figures of the random model must still all be there.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ingest.measure.features import measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.prepare.render import render_12lead
from ingest.report_format import format_output
from model.tiny import save_tiny_model
from tests.ingest_features import synthetic as s
from training.evaluate import (EvalReport, evaluate, render_markdown, score_outputs, table_rows, write_report)
from training.rows import TrainingRow, make_messages, write_rows

MAX_NEW = 48
SPACES = ["protocol", "PTB-XL super", "CPSC 2018", "CODE-15%"]


def _signals() -> dict[str, np.ndarray]:
    inferior_ste = s.Beat().with_leads(II=replace(s.NORMAL_LEADS["II"], st=0.25))
    return {
        "normal": s.ecg(s.Beat(), s.qrs_onsets(72)),
        "brady-avb": s.ecg(s.Beat(pr_ms=240), s.qrs_onsets(50)),
        "inferior-ste": s.ecg(inferior_ste, s.qrs_onsets(80)),
        "tachy": s.ecg(s.Beat(qt_ms=320), s.qrs_onsets(115)),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four test rows (signal + small rendered image) and one train row, labelled by the reader."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "signals").mkdir()
    (folder / "images").mkdir()
    rows = []
    for i, (name, signal) in enumerate([*_signals().items(), ("train-normal", s.ecg(s.Beat(), s.qrs_onsets(65)))]):
        np.save(folder / "signals" / f"{name}.npy", signal)
        render_12lead(signal, 500, pixels_per_mm=2).save(folder / "images" / f"{name}.png")
        read = protocol_read(measure(signal, 500))
        rows.append(TrainingRow(id=name, source="test", split="test" if i < 4 else "train",
                                signal_path=f"signals/{name}.npy", image_path=f"images/{name}.png",
                                messages=make_messages(read.text), labels=read.labels, evidence=read.evidence))
    write_rows(folder / "rows.jsonl", rows)
    return folder / "rows.jsonl"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-ecg-r1"), seed=0)


@pytest.fixture(scope="module")
def report(corpus: Path, checkpoint: Path) -> EvalReport:
    return evaluate(corpus, checkpoint, split="test", max_new_tokens=MAX_NEW, batch_size=4, device="cpu",
                    progress=False)


def test_the_rows_cover_every_label_space(corpus: Path) -> None:
    """Guards the premise of the other tests: each space has a positive and a negative in the test rows."""
    labels = [json.loads(line)["labels"] for line in corpus.read_text().splitlines()][:4]
    assert labels[1] == [v.SINUS_BRADYCARDIA, v.FIRST_DEGREE_AV_BLOCK]
    assert "st elevation (inferior)" in labels[2]
    assert v.NORMAL_ECG in labels[0] and v.SINUS_TACHYCARDIA in labels[3]


def test_every_figure_is_there_for_both_interpreters(report: EvalReport) -> None:
    assert report.rows == 4 and report.split == "test"  # the train row is not evaluated
    assert [i.role for i in report.interpreters] == ["model", "protocol reader"]
    for interpreter in report.interpreters:
        assert interpreter.samples == 4
        assert interpreter.exact_match is not None and interpreter.format_valid is not None
        for value in interpreter.rewards.model_dump().values():
            assert value is not None
        assert 0.0 <= interpreter.rewards.total <= 3.0
        assert [m.space for m in interpreter.spaces] == SPACES
        for m in interpreter.spaces:
            assert m.samples == 4
            for figure in (m.exact_match, m.hamming_loss, m.macro_f1, m.macro_auc):
                assert figure is not None, (interpreter.role, m.space)
                assert 0.0 <= figure <= 1.0
        assert [f.input for f in interpreter.inputs] == ["signal+image", "signal", "image"]
        assert all(f.samples == 4 and f.rewards.total is not None for f in interpreter.inputs)
        assert interpreter.consistency.pairs == 4
        assert interpreter.consistency.bleu4 is not None and interpreter.consistency.rouge_l is not None
    model = report.interpreter("model")
    assert model.name == "ecg-r1" and not model.is_demonstration


def test_the_reader_scores_perfectly_on_its_own_labels(report: EvalReport) -> None:
    reader = report.interpreter("protocol reader")
    assert reader.rewards.diagnosis == 1.0
    assert reader.rewards.evidence == 1.0
    assert reader.rewards.format == 1.0 and reader.format_valid == 1.0
    assert reader.exact_match == 1.0
    for m in reader.spaces:
        assert (m.macro_f1, m.macro_auc, m.hamming_loss, m.exact_match) == (1.0, 1.0, 0.0, 1.0), m.space


def test_the_reader_without_a_signal_says_image_only(report: EvalReport) -> None:
    reader = report.interpreter("protocol reader")
    signal_only, image_only = reader.inputs[1], reader.inputs[2]
    assert signal_only.rewards.diagnosis == 1.0
    # Its image-only output is the well-formed "image only" reading: format 1, no diagnosis, no evidence.
    assert (image_only.rewards.diagnosis, image_only.rewards.evidence, image_only.rewards.format) == (0.0, 0.0, 1.0)
    assert image_only.format_valid == 1.0
    assert reader.consistency.rouge_l < 0.5  # a reading vs "measurements unavailable"


def test_report_round_trips_and_renders(report: EvalReport, tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    write_report(report, path)
    assert EvalReport.model_validate_json(path.read_text()) == report
    markdown = render_markdown(report)
    assert "| figure | model (ecg-r1) | protocol reader (protocol-reader) |" in markdown
    assert "| EDER total (0-3) |" in markdown and "| 3.000 |" in markdown
    assert "| CODE-15%: macro AUC (binary score) |" in markdown
    assert len(table_rows(report)) == 6 + 4 * len(SPACES) + 4 + 2


def test_limit_and_an_engine_instance(corpus: Path, checkpoint: Path) -> None:
    from model.engines import load_engine

    engine = load_engine("hf", checkpoint, max_new_tokens=8, batch_size=2, device="cpu")
    small = evaluate(corpus, engine, split="test", limit=1, progress=False)
    assert small.rows == 1 and small.interpreter("model").samples == 1
    assert small.interpreter("protocol reader").space("protocol").labels == [v.NORMAL_ECG, v.SINUS_RHYTHM]
    with pytest.raises(ValueError, match="no rows in split 'val'"):
        evaluate(corpus, engine, split="val", progress=False)


def test_cli_prints_the_table_and_writes_json(corpus: Path, checkpoint: Path, tmp_path: Path) -> None:
    from worker.cli import main

    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["train", "eval", "--model", str(checkpoint), "--corpus", str(corpus),
                                       "--limit", "1", "--max-new-tokens", "8", "--device", "cpu",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| label accuracy (exact set match) |" in result.output
    assert EvalReport.model_validate_json(out.read_text()).rows == 1


# -- scoring without a model ---------------------------------------------------------------------

def _row(name: str, labels: list[str], evidence: dict[int, list[str]]) -> TrainingRow:
    return TrainingRow(id=name, source="test", messages=make_messages(""), labels=labels, evidence=evidence)


def test_score_outputs_by_hand() -> None:
    rows = [_row("a", ["sinus rhythm", "normal ecg"], {1: ["sinus rhythm"]}),
            _row("b", ["atrial fibrillation"], {1: ["irregular"]})]
    good = format_output({1: "Sinus rhythm."}, "Normal.", ["sinus rhythm", "normal ecg"])
    half = "<think>Regular rhythm.</think><answer>atrial fibrillation; left bundle branch block</answer>"
    outputs = {"signal+image": [good, half], "signal": [good, None], "image": [good, None]}
    m = score_outputs("model", "x", "1", outputs, rows)
    assert m.exact_match == 0.5
    assert m.rewards.diagnosis == pytest.approx((1 + 1 / 2) / 2)
    assert m.rewards.evidence == pytest.approx(0.5)
    assert m.format_valid == pytest.approx(0.5)  # row b's think has no step headings
    assert m.rewards.format == pytest.approx(1.0)  # ...but it is a non-empty think
    assert m.consistency.pairs == 1 and m.consistency.rouge_l == pytest.approx(1.0)
    assert [f.samples for f in m.inputs] == [2, 1, 1]
    cpsc = m.space("CPSC 2018")
    assert cpsc.support["AF"] == 1 and cpsc.support["NORM"] == 1
    assert cpsc.hamming_loss == pytest.approx(1 / 18)  # the extra LBBB of row b
    assert m.space("PTB-XL super").macro_auc == pytest.approx(1.0)  # NORM: one positive, one negative, right


def test_score_outputs_needs_every_full_output() -> None:
    with pytest.raises(ValueError, match="every row"):
        score_outputs("model", "x", "1", {"signal+image": [None], "signal": [None], "image": [None]},
                      [_row("a", [], {})])
