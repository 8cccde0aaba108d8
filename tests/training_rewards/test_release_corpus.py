"""The release corpus importer: `solution` parsing and a row with a real WFDB record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.release_corpus import import_release_corpus, parse_solution
from training.rewards import eder_rewards
from training.rows import read_rows

REAL = Path(__file__).resolve().parents[2] / "data" / "real"

SOLUTION = ("<|answer|>Sinus rhythm; Left axis deviation<|/answer|>\n<|key_diagnostic_evidence|>"
            "step_1_technical_rate_rhythm: sinus rhythm; 72 bpm\n"
            "step_2_conduction_axis_intervals: left axis deviation; -45 degrees; PR 160 ms; QRS 90 ms\n"
            "step_4_ischemia_infarction_mimics: \n"
            "step_6_final_medical_reasoning: no acute ischemia<|/key_diagnostic_evidence|>")


def test_parse_solution_reads_labels_and_steps() -> None:
    parsed = parse_solution(SOLUTION)
    assert parsed.labels == ["sinus rhythm", "left axis deviation"]
    assert parsed.evidence == {1: ["sinus rhythm", "72 bpm"],
                               2: ["left axis deviation", "-45 degrees", "PR 160 ms"],
                               6: ["no acute ischemia"]}
    assert parsed.evidence_cut == {2: 1}  # a fourth phrase is cut, and said so
    # the release accepts a backslash closing tag, and falls back to the whole text for evidence
    assert parse_solution("<|answer|>AF<|\\answer|>step_1_technical_rate_rhythm: irregular").evidence == \
        {1: ["irregular"]}
    assert parse_solution("no tags").labels is None


def test_import_writes_rows_the_rewards_read(tmp_path: Path) -> None:
    think = ("<think>\n**Step 1: Technical, Rate & Rhythm**\nSinus rhythm at 72 bpm.\n"
             "**Step 2: Conduction, Axis & Intervals**\nLeft axis deviation at -45 degrees, PR 160 ms.\n"
             "**Step 6: Final Medical Reasoning**\nNo acute ischemia.\n</think>\nSummary."
             "\n<answer>Sinus rhythm; Left axis deviation</answer>")
    good = {"messages": [{"role": "user", "content": "<ecg><image>\nInterpret."},
                         {"role": "assistant", "content": think}],
            "images": ["page.png"], "objects": {"ecg": ["ptbxl/HR00001"]}, "solution": SOLUTION}
    no_answer = {"messages": [{"role": "user", "content": "<ecg>"}], "objects": {"ecg": ["ptbxl/HR00001"]}}
    missing = {**good, "objects": {"ecg": ["ptbxl/NOPE"]}}
    source = tmp_path / "release.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in (good, no_answer, missing)) + "\n")

    result = import_release_corpus(source, tmp_path / "out", ecg_root=REAL, image_root=tmp_path)
    assert (result.rows, result.rejected) == (1, 2)
    rejected = (tmp_path / "out" / "rejected.csv").read_text()
    assert rejected.splitlines()[1] == '2,"ValueError: no assistant turn"'
    assert rejected.splitlines()[2].startswith("3,")  # the unreadable record, with the reader's reason
    row = next(read_rows(Path(result.path)))
    assert row.labels == ["sinus rhythm", "left axis deviation"]
    assert row.messages[0].role == "system"  # the release's system prompt is added when absent
    signal = np.load(tmp_path / "out" / row.signal_path)
    assert signal.shape == (12, 5000) and np.abs(signal).max() > 0.1
    assert (tmp_path / "out" / row.image_path).resolve() == (tmp_path / "page.png").resolve()
    # the imported reference gives the release's own completion full marks
    assert eder_rewards(think, row.labels, row.evidence).total == 3.0
