"""The committed real-data set is whole, and our figures on it are no worse than the baseline."""

from __future__ import annotations

import json
from collections import Counter

from ingest.validation.evaluate import OVERALL, Evaluation
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.report import compare_with_baseline
from ingest.validation.run import OURS


def test_the_set_has_200_records_from_3_sources_each_with_its_file_and_a_split():
    references = load_references()
    assert len(references) >= 200
    sources = Counter(reference.source for reference in references)
    assert len(sources) >= 3
    assert {reference.split for reference in references} == {"dev", "test"}
    for reference in references:
        assert reference.file(DEFAULT_DATA_DIR).is_file(), reference.key
    assert len({reference.key for reference in references}) == len(references)


def test_every_reference_code_is_mapped_or_listed_as_unmapped():
    unknown = {code for reference in load_references() for code in reference.labels.unknown}
    assert unknown == set()


def test_the_splits_partition_the_set():
    dev, test = load_references(split="dev"), load_references(split="test")
    assert {r.key for r in dev} | {r.key for r in test} == {r.key for r in load_references()}
    assert not {r.key for r in dev} & {r.key for r in test}
    assert len(load_references(sources=["ludb"])) == 200


def test_every_record_is_read_and_measured(evaluation: Evaluation):
    figures = evaluation.figures[OURS][OVERALL]
    assert figures.records == evaluation.records
    assert figures.unreadable == 0, [row.error for row in evaluation.rows if row.error]
    assert figures.boundaries is not None and figures.boundaries.records == 200
    assert figures.intervals_vs_device["qrs_ms"].n >= 10


def test_no_figure_is_worse_than_the_committed_baseline(evaluation: Evaluation):
    baseline = json.loads((DEFAULT_DATA_DIR / "baseline.json").read_text(encoding="utf-8"))
    worse = compare_with_baseline(evaluation, baseline)
    assert worse == [], ("figures worse than data/real/baseline.json (if the change is meant, rewrite it with "
                         "`ecg-worklist validate --delineator ours --write-baseline` and say why in the commit):\n"
                         + "\n".join(worse))
