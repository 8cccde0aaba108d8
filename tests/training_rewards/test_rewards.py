"""EDER rewards: table-driven cases for the diagnosis, evidence and format rewards and their sum."""

from __future__ import annotations

import pytest

from ingest.report_format import STEP_HEADINGS, format_output
from training.rewards import (RewardBreakdown, diagnosis_reward, eder_rewards, evidence_reward,
                              format_reward, phrase_credit)


def completion(steps: dict[int, str] | None = None, labels: str | None = "sinus rhythm",
               think: str | None = None) -> str:
    """A completion in the ECG-R1 format; `labels=None` leaves out <answer>, `think` overrides it."""
    if think is None:
        paragraphs = steps if steps is not None else {n: f"step {n} text" for n in range(1, 7)}
        think = "\n\n".join(f"**{STEP_HEADINGS[n - 1]}**\n{text}" for n, text in paragraphs.items())
    text = f"<think>\n{think}\n</think>\nNarrative."
    if labels is not None:
        text += f"\n<answer>{labels}</answer>"
    return text


DIAGNOSIS_CASES = [
    # (id, answer text or None for no <answer>, reference labels, expected)
    ("both empty", "", [], 1.0),
    ("both empty, answer is only separators", " ; ; ", [], 1.0),
    ("prediction empty", "", ["sinus rhythm"], 0.0),
    ("reference empty", "sinus rhythm", [], 0.0),
    ("exact match", "sinus rhythm; first degree av block", ["sinus rhythm", "first degree av block"], 1.0),
    ("partial overlap 1 of 3", "sinus rhythm; left axis deviation", ["sinus rhythm", "first degree av block"], 1 / 3),
    ("partial overlap 2 of 3", "sinus rhythm; lvh", ["sinus rhythm", "lvh", "rbbb"], 2 / 3),
    ("disjoint", "atrial fibrillation", ["sinus rhythm"], 0.0),
    ("case and surrounding whitespace", "  Sinus Rhythm ;FIRST DEGREE AV BLOCK  ", ["sinus rhythm", " First degree AV block"], 1.0),
    ("duplicates collapse to a set", "sinus rhythm; sinus rhythm; lvh", ["sinus rhythm", "lvh"], 1.0),
    ("trailing separator", "sinus rhythm;", ["sinus rhythm"], 1.0),
    ("missing answer, reference empty", None, [], 0.0),
    ("missing answer, reference present", None, ["sinus rhythm"], 0.0),
]


@pytest.mark.parametrize(("answer", "reference", "expected"), [c[1:] for c in DIAGNOSIS_CASES],
                         ids=[c[0] for c in DIAGNOSIS_CASES])
def test_diagnosis_reward(answer: str | None, reference: list[str], expected: float) -> None:
    assert diagnosis_reward(completion(labels=answer), reference) == pytest.approx(expected)


def test_diagnosis_reward_needs_a_closed_answer_tag() -> None:
    assert diagnosis_reward("<think>x</think><answer>sinus rhythm", ["sinus rhythm"]) == 0.0
    # The answer is scored even when the think is missing: the rewards are independent.
    assert diagnosis_reward("<answer>sinus rhythm</answer>", ["sinus rhythm"]) == 1.0
    # Only the first answer counts.
    assert diagnosis_reward("<answer>lvh</answer><answer>sinus rhythm</answer>", ["sinus rhythm"]) == 0.0


EVIDENCE = {1: ["sinus rhythm", "72 bpm"], 4: ["no st elevation"]}

EVIDENCE_CASES = [
    # (id, completion, evidence, expected)
    ("all phrases in their steps",
     completion({1: "Sinus rhythm at 72 bpm.", 4: "No ST elevation in any territory."}), EVIDENCE, 1.0),
    ("half of step 1, all of step 4",
     completion({1: "Sinus rhythm, rate 90 bpm.", 4: "No ST elevation."}), EVIDENCE, (0.5 + 1.0) / 2),
    ("negation absent: the bare finding does not match the negated phrase",
     completion({1: "Sinus rhythm at 72 bpm.", 4: "ST elevation in II, III, aVF."}), EVIDENCE, (1.0 + 0.0) / 2),
    ("negated phrase does not satisfy the plain one",
     completion({1: "Sinus rhythm", 4: "no st elevation"}), {4: ["st depression"]}, 0.0),
    ("missing step scores 0 for that step",
     completion({1: "Sinus rhythm at 72 bpm.", 2: "Normal axis."}), EVIDENCE, (1.0 + 0.0) / 2),
    ("evidence in the wrong step does not count",
     completion({1: "No ST elevation.", 4: "Sinus rhythm at 72 bpm."}), EVIDENCE, 0.0),
    ("the heading's title is part of the step's text (as the release)",
     completion({1: "Regular.", 2: "Normal."}), {1: ["rhythm"]}, 1.0),
    ("another step's title is not",
     completion({1: "Regular.", 2: "Normal."}), {1: ["axis"]}, 0.0),
    ("steps out of order are still matched by number",
     completion({4: "No ST elevation.", 1: "Sinus rhythm 72 bpm."}), EVIDENCE, 1.0),
    ("a repeated heading keeps the last paragraph (as the release)",
     completion(think="**Step 1: Technical, Rate & Rhythm**\nSinus rhythm.\n**Step 1: Technical, Rate & Rhythm**\n72 bpm."),
     {1: ["sinus rhythm", "72 bpm"]}, 0.5),
    ("string step keys from JSON",
     completion({1: "Sinus rhythm at 72 bpm."}), {"1": ["sinus rhythm"]}, 1.0),
    ("blank phrases are ignored",
     completion({1: "Sinus rhythm."}), {1: ["sinus rhythm", "  "], 2: [""]}, 1.0),
    ("no reference evidence, think present: 0 (as the release)", completion(), {}, 0.0),
    ("only blank reference phrases, think present", completion(), {3: [" "]}, 0.0),
    ("no think", "Sinus rhythm at 72 bpm.\n<answer>sinus rhythm</answer>", EVIDENCE, 0.0),
    ("no think and no reference evidence", "<answer>sinus rhythm</answer>", {}, 0.0),
    ("empty think", "<think>  \n </think><answer>sinus rhythm</answer>", EVIDENCE, 0.0),
    ("think without step headings",
     completion(think="Sinus rhythm at 72 bpm, no ST elevation."), EVIDENCE, 0.0),
    ("unclosed think", "<think>**Step 1: Technical, Rate & Rhythm**\nSinus rhythm 72 bpm", EVIDENCE, 0.0),
]


@pytest.mark.parametrize(("text", "evidence", "expected"), [c[1:] for c in EVIDENCE_CASES],
                         ids=[c[0] for c in EVIDENCE_CASES])
def test_evidence_reward(text: str, evidence: dict, expected: float) -> None:
    assert evidence_reward(text, evidence) == pytest.approx(expected)


def test_evidence_reward_rejects_a_step_outside_one_to_six() -> None:
    with pytest.raises(ValueError, match="steps are 1-6"):
        evidence_reward(completion(), {7: ["sinus rhythm"]})


GRADED_CASES = [
    # (id, reference phrase, the step's text, credit as written (the release), credit graded)
    ("the phrase as written", "heart rate 72 bpm", "heart rate 72 bpm (60-100 bpm)", 1.0, 1.0),
    ("4 bpm off: 1 - 4/10", "heart rate 72 bpm", "heart rate 76 bpm (60-100 bpm)", 0.0, 0.6),
    ("10 bpm off or more: nothing", "heart rate 72 bpm", "heart rate 82 bpm; heart rate 95 bpm", 0.0, 0.0),
    ("the nearest of two stated", "heart rate 72 bpm", "heart rate 95 bpm, later heart rate 70 bpm", 0.0, 0.8),
    ("ms: 10 of 20", "qtc 379 ms", "qtc 389 ms (bazett)", 0.0, 0.5),
    ("a signed axis: 6 of 30 degrees", "qrs axis +29 degrees", "qrs axis +35 degrees", 0.0, 0.8),
    ("the sign counts", "qrs axis -10 degrees", "qrs axis +10 degrees", 0.0, 1 / 3),
    ("other words before the number: nothing", "qrs duration 148 ms", "pr interval 150 ms", 0.0, 0.0),
    ("another unit: nothing", "heart rate 72 bpm", "heart rate 72 per minute", 0.0, 0.0),
    ("a number that is not the whole number: nothing", "heart rate 7 bpm", "heart rate 78 bpm", 0.0, 0.0),
    ("a phrase without a number is found as written only", "no st elevation", "no st depression", 0.0, 0.0),
]


@pytest.mark.parametrize(("phrase", "text", "as_written", "graded"), [c[1:] for c in GRADED_CASES],
                         ids=[c[0] for c in GRADED_CASES])
def test_phrase_credit_as_written_and_graded(phrase: str, text: str, as_written: float, graded: float) -> None:
    assert phrase_credit(phrase, text) == pytest.approx(as_written)
    assert phrase_credit(phrase, text, graded_numbers=True) == pytest.approx(graded)


def test_graded_evidence_ranks_a_nearer_rate_above_a_farther_one_where_the_release_scores_both_zero() -> None:
    evidence = {1: ["sinus rhythm", "heart rate 72 bpm"]}
    near, far = (completion({1: f"Sinus rhythm, heart rate {rate} bpm."}) for rate in (74, 80))
    assert evidence_reward(near, evidence) == evidence_reward(far, evidence) == pytest.approx(0.5)
    assert evidence_reward(near, evidence, graded_numbers=True) == pytest.approx((1.0 + 0.8) / 2)
    assert evidence_reward(far, evidence, graded_numbers=True) == pytest.approx((1.0 + 0.2) / 2)
    assert eder_rewards(near, ["sinus rhythm"], evidence, graded_numbers=True).evidence == pytest.approx(0.9)


FORMAT_CASES = [
    ("well formed", completion(), 1.0),
    ("think without steps still has a think", "<think>reasoning</think><answer>x</answer>", 1.0),
    ("no answer does not matter", completion(labels=None), 1.0),
    ("missing think", "Narrative only. <answer>sinus rhythm</answer>", 0.0),
    ("empty think", "<think></think><answer>sinus rhythm</answer>", 0.0),
    ("whitespace-only think", "<think>\n\t </think><answer>sinus rhythm</answer>", 0.0),
    ("unclosed think", "<think>reasoning<answer>sinus rhythm</answer>", 0.0),
    ("empty text", "", 0.0),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in FORMAT_CASES], ids=[c[0] for c in FORMAT_CASES])
def test_format_reward(text: str, expected: float) -> None:
    assert format_reward(text) == expected


def test_reference_output_of_format_output_scores_three() -> None:
    text = format_output({1: "Sinus rhythm at 72 bpm.", 4: "No ST elevation."}, "Normal ECG.",
                         ["Sinus Rhythm", "normal ecg"])
    rewards = eder_rewards(text, ["sinus rhythm", "normal ecg"], EVIDENCE)
    assert rewards == RewardBreakdown(diagnosis=1.0, evidence=1.0, format=1.0)
    assert rewards.total == 3.0


TOTAL_CASES = [
    ("nothing right", "no tags at all", ["sinus rhythm"], EVIDENCE, 0.0),
    ("format only", completion({2: "Normal axis."}, labels="atrial fibrillation"), ["sinus rhythm"], EVIDENCE, 1.0),
    ("answer only", "<answer>sinus rhythm</answer>", ["sinus rhythm"], EVIDENCE, 1.0),
    ("half of everything but format",
     completion({1: "Sinus rhythm.", 4: "No ST elevation."}, labels="sinus rhythm; lvh"),
     ["sinus rhythm"], {1: ["sinus rhythm", "72 bpm"]}, 0.5 + 0.5 + 1.0),
]


@pytest.mark.parametrize(("text", "labels", "evidence", "expected"), [c[1:] for c in TOTAL_CASES],
                         ids=[c[0] for c in TOTAL_CASES])
def test_total_is_the_sum_in_zero_to_three(text: str, labels: list[str], evidence: dict, expected: float) -> None:
    rewards = eder_rewards(text, labels, evidence)
    assert rewards.total == pytest.approx(expected)
    assert rewards.total == pytest.approx(rewards.diagnosis + rewards.evidence + rewards.format)
    assert 0.0 <= rewards.total <= 3.0
    for part in (rewards.diagnosis, rewards.evidence, rewards.format):
        assert 0.0 <= part <= 1.0
