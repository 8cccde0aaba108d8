"""The demo's SFT curriculum: the brief target keeps Step 1 and the answer, in the output format."""

from __future__ import annotations

from ingest.report_format import format_output, parse_output
from training.sft import brief_target


def test_brief_target_is_step_one_and_the_answer() -> None:
    full = format_output({1: "Heart rate 48 bpm (< 60 bpm): bradycardia. Regular RR: sinus rhythm.",
                          2: "PR interval 168 ms: normal.", 6: "Sinus bradycardia."},
                         "Sinus bradycardia at 48 bpm.", ["sinus bradycardia"])
    brief = brief_target(full)
    assert "Heart rate 48 bpm" in brief and "PR interval" not in brief and "Step 2" not in brief
    parsed = parse_output(brief)
    assert parsed.has_think and parsed.labels == ["sinus bradycardia"]
    assert brief_target("no steps here") == "no steps here"  # kept whole when it cannot be cut
