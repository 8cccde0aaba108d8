"""The synthetic corpus: valid rows, files on disk, reference answer, reader agreement, deterministic splits."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from ingest.report_format import parse_output
from training.build import SUMMARY_FILE, CorpusSummary, split_for
from training.rows import MAX_EVIDENCE_PER_STEP, TrainingRow, read_rows, resolve
from training.synthetic import generate_synthetic_corpus

COUNT = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    started = time.perf_counter()
    path = generate_synthetic_corpus(out, COUNT, seed=3, progress=False)
    return path, list(read_rows(path)), time.perf_counter() - started


def test_rows_validate_and_files_exist(corpus):
    path, rows, _ = corpus
    assert path.name == "corpus.jsonl" and len(rows) == COUNT
    for line in path.read_text().splitlines():
        TrainingRow.model_validate(json.loads(line))
    for row in rows:
        assert row.source == "synthetic" and row.label_origin == "simulated"
        signal = np.load(resolve(path, row.signal_path))
        assert signal.shape == (12, 5000) and signal.dtype == np.float32
        with Image.open(resolve(path, row.image_path)) as image:
            assert image.size == (1056, 640)  # 4 px/mm: what the model sees uncapped
        assert [m.role for m in row.messages] == ["system", "user", "assistant"]
        assert row.messages[1].content.startswith("<ecg><image>\n")


def test_answer_carries_the_simulated_labels_and_the_reader_steps(corpus):
    _, rows, _ = corpus
    for row in rows:
        truth = row.meta["simulated"]
        assert row.labels == truth["labels"]
        parsed = parse_output(row.answer)
        assert parsed.well_formed, parsed.problems
        assert parsed.labels == row.labels
        assert sorted(parsed.steps) == [1, 2, 3, 4, 5, 6]
        # The reasoning cites the measured heart rate, not the simulated one.
        measured_hr = row.meta["measured"]["hr_bpm"]
        if measured_hr is not None:
            assert f"Heart rate {int(np.floor(measured_hr + 0.5))} bpm" in parsed.steps[1]


def test_reader_disagreement_is_recorded(corpus):
    _, rows, _ = corpus
    for row in rows:
        reader = row.meta["reader_labels"]
        assert row.meta["reader_agrees"] == (set(reader) == set(row.labels))
        assert row.meta["reader_missing"] == [label for label in row.labels if label not in reader]
        assert row.meta["reader_extra"] == [label for label in reader if label not in row.labels]


def test_evidence_is_short_and_in_its_step(corpus):
    _, rows, _ = corpus
    for row in rows:
        assert row.evidence
        steps = parse_output(row.answer).steps
        for step, phrases in row.evidence.items():
            assert 1 <= len(phrases) <= MAX_EVIDENCE_PER_STEP
            for phrase in phrases:
                assert phrase == phrase.lower() and phrase in steps[step].lower(), (step, phrase)


def test_splits_are_deterministic_by_id(corpus, tmp_path):
    _, rows, _ = corpus
    for row in rows:
        assert row.split == split_for(row.id)
    assert split_for("synthetic-00001") == split_for("synthetic-00001")
    shares = [split_for(f"synthetic-{i:05d}") for i in range(2000)]
    assert 0.75 < shares.count("train") / 2000 < 0.85
    assert 0.07 < shares.count("val") / 2000 < 0.13 and 0.07 < shares.count("test") / 2000 < 0.13
    # The same seed writes the same corpus: record i depends only on (seed, i).
    again = list(read_rows(generate_synthetic_corpus(tmp_path, 3, seed=3, progress=False)))
    assert [r.model_dump(exclude={"meta"}) for r in again] == [r.model_dump(exclude={"meta"}) for r in rows[:3]]


def test_summary_counts_labels_and_agreement(corpus):
    path, rows, _ = corpus
    summary = CorpusSummary.model_validate_json((path.parent / SUMMARY_FILE).read_text())
    assert summary.rows == COUNT and summary.rejected == 0
    assert sum(summary.by_split.values()) == COUNT
    assert summary.reader_agrees == sum(bool(row.meta["reader_agrees"]) for row in rows)
    for label, count in summary.label_counts.items():
        assert count == sum(label in row.labels for row in rows)
        assert summary.agreement[label].reader_found <= count
    assert summary.extra["hr_error_bpm"]["rows"] > 0
    assert any(line.startswith("rows: 12") for line in summary.lines())


def test_generation_is_fast(corpus):
    _, _, seconds = corpus
    # About 0.1 s per record on one core (measure + render + PNG); generous for a shared CI machine.
    assert seconds / COUNT < 1.0


def test_a_record_that_fails_is_listed_in_rejected_csv(tmp_path, monkeypatch):
    import training.synthetic as synthetic

    real = synthetic.synthetic_row

    def failing(index, seed, out_dir):
        if index == 1:
            raise IndexError("index 5250 is out of bounds")
        return real(index, seed, out_dir)

    monkeypatch.setattr(synthetic, "synthetic_row", failing)
    path = synthetic.generate_synthetic_corpus(tmp_path, 3, seed=2, progress=False)
    assert [row.id for row in read_rows(path)] == ["synthetic-00000", "synthetic-00002"]
    rejected = (tmp_path / "rejected.csv").read_text().splitlines()
    assert rejected[0] == "id,path,reason"
    assert rejected[1].startswith('synthetic-00001,"simulate(seed=2, index=1)",IndexError: index 5250')
    summary = CorpusSummary.model_validate_json((tmp_path / SUMMARY_FILE).read_text())
    assert summary.rejected == 1 and summary.rows == 2


def test_workers_change_only_the_time(tmp_path):
    one = list(read_rows(generate_synthetic_corpus(tmp_path / "one", 4, seed=5, progress=False)))
    two = list(read_rows(generate_synthetic_corpus(tmp_path / "two", 4, seed=5, progress=False, workers=2)))
    assert [row.model_dump() for row in one] == [row.model_dump() for row in two]
    for row in two:
        assert np.array_equal(np.load(tmp_path / "one" / row.signal_path), np.load(tmp_path / "two" / row.signal_path))
