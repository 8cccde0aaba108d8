"""ECG Diagnostic Evidence Rewards (EDER): the three RL rewards of ECG-R1, as pure functions.

Each reward scores one completion (the model's text) against one corpus row's reference:

- `diagnosis_reward`: Jaccard between the predicted and the reference label sets. Labels are
  the `<answer>` text split on ';', stripped and lower-cased (empty parts dropped, duplicates
  collapsed). Both sets empty -> 1.0; no `<answer>...</answer>` at all -> 0.0 whatever the
  reference is (an empty `<answer></answer>` is an answer: it predicts "no labels"). With
  several `<answer>` sections the first one counts, as in the HL7 builder.
- `evidence_reward`: for each of the six steps that has reference evidence, the fraction of its
  phrases found (case-insensitive substring, the phrase exactly as written, so a negation such
  as "no st elevation" must appear with its "no") in THAT step's text of the `<think>`; the
  mean over those steps. As the release's `KeyDiagnosticEvidenceORM` scores it: a step's text
  is its heading's title ("Technical, Rate & Rhythm") and the paragraph after it, up to the
  next heading; a heading written twice keeps the LAST non-empty text; a step whose heading
  is missing scores 0 for that step; evidence written in another step does not count. No
  non-empty `<think>`, or no step heading in it -> 0.0. No reference evidence at all (or only
  blank phrases) -> 0.0, as the release (under GRPO a reward equal for every completion of a
  prompt carries no advantage, so this only moves the total's scale for such rows).
  With `graded_numbers` (off in the release and by default; `RlConfig.evidence_graded_numbers`)
  a phrase that holds a measured number ("heart rate 72 bpm", "qtc 379 ms", "qrs axis +29
  degrees") and is not found as written earns part credit for the same words with another
  number, 1 - |stated - reference| / the unit's tolerance (`NUMBER_TOLERANCE`), never below 0:
  the exact phrase is a needle a small model's sampled readings rarely hit, so under GRPO every
  completion of a group scores alike on it and the rate it states gets no push towards the
  measured one; graded, a nearer rate scores higher than a farther one within the same group.
- `format_reward`: 1.0 iff a `<think>...</think>` with non-whitespace content is present.

The total is the unweighted sum (weights 1, as in the release), in [0, 3].

The text is parsed with `ingest.report_format.parse_output`, the same parser the HL7 builder
uses: its `has_think` is exactly "a non-empty think", its `labels` are the ';' split stripped
of empties, and its steps are the paragraphs after each `**Step N: ...**` heading up to the
next heading (the heading text itself is not part of the paragraph, so a phrase that only
occurs in a heading, e.g. "rhythm", is not found). Two places where it is not the spec are
handled here: labels are lower-cased here (the parser keeps the model's case), and a step's
text includes its heading's title here (the parser drops the heading), as the release does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from ingest.report_format import parse_output

STEPS = range(1, 7)
# Graded evidence (`graded_numbers`): how far a stated number may be from the reference's for any credit,
# by the unit the phrase gives it in. 10 bpm is the demo's own heart-rate criterion (issue 17); 20 ms is
# about twice the IEC 60601-2-25 mean limits for PR and QT; 30 degrees splits an axis range in three.
NUMBER_TOLERANCE: dict[str, float] = {"bpm": 10.0, "ms": 20.0, "degrees": 30.0}
_NUMBER = r"[+-]?\d+(?:\.\d+)?"
_NUMBERED_PHRASE = re.compile(
    rf"^(?P<head>.*?)(?P<number>{_NUMBER})\s*(?P<unit>{'|'.join(NUMBER_TOLERANCE)})\b(?P<tail>.*)$")

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
# Same heading shape as ingest.report_format: "**Step N: title**", tolerant of spacing and case.
_STEP_HEADING = re.compile(r"\*\*\s*Step\s*([1-6])\s*:([^*]*)\*\*", re.IGNORECASE)


def label_set(labels: Sequence[str]) -> frozenset[str]:
    """Labels as the reward compares them: stripped, lower case, no empties, no duplicates."""
    return frozenset(label.strip().lower() for label in labels if label.strip())


def predicted_labels(completion: str) -> frozenset[str] | None:
    """The completion's answer labels as a set, or None when there is no `<answer>` section."""
    parsed = parse_output(completion)
    if not parsed.has_answer:
        return None
    return label_set(parsed.labels)


def jaccard(predicted: frozenset[str], reference: frozenset[str]) -> float:
    """|A & B| / |A | B|, with two empty sets counted as a perfect match."""
    union = predicted | reference
    if not union:
        return 1.0
    return len(predicted & reference) / len(union)


def diagnosis_reward(completion: str, reference_labels: Sequence[str]) -> float:
    """Jaccard of the answer's labels with the reference labels; 0.0 without an `<answer>`."""
    predicted = predicted_labels(completion)
    if predicted is None:
        return 0.0
    return jaccard(predicted, label_set(reference_labels))


def step_paragraphs(completion: str) -> dict[int, str] | None:
    """Step number -> its text (heading title + paragraph) in the first non-empty `<think>`; None without one.

    The release's reward keeps the title in the step text (its pattern resumes right after
    "**Step N" and the colon) and, for a heading written twice, the last non-empty text.
    """
    if not parse_output(completion).has_think:
        return None
    match = _THINK.search(completion)
    assert match is not None  # has_think implies the tag pair is there
    think = match.group(1)
    headings = list(_STEP_HEADING.finditer(think))
    paragraphs: dict[int, str] = {}
    for i, heading in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(think)
        text = (heading.group(2) + "\n" + think[heading.end():end]).strip()
        if text:
            paragraphs[int(heading.group(1))] = text
    return paragraphs


def _reference_phrases(evidence: Mapping[int, Sequence[str]]) -> dict[int, list[str]]:
    """Steps with at least one non-blank phrase -> their phrases (stripped, lower case).

    Keys may be ints or the strings JSON gives ("1"); a step outside 1-6 is an error in the
    corpus, not something to score silently.
    """
    phrases: dict[int, list[str]] = {}
    for key, step_phrases in evidence.items():
        step = int(key)
        if step not in STEPS:
            raise ValueError(f"evidence for step {step}: steps are 1-6")
        kept = [p.strip().lower() for p in step_phrases if p.strip()]
        if kept:
            phrases.setdefault(step, []).extend(kept)
    return phrases


def phrase_credit(phrase: str, text: str, graded_numbers: bool = False) -> float:
    """1.0 when the phrase is in the text as written; else, with `graded_numbers`, the best part credit
    of the same words with another number (see the module's docstring); else 0.0."""
    if phrase in text:
        return 1.0
    numbered = _NUMBERED_PHRASE.match(phrase) if graded_numbers else None
    if numbered is None:
        return 0.0
    reference, unit = float(numbered["number"]), numbered["unit"]
    pattern = re.compile(rf"{re.escape(numbered['head'])}({_NUMBER})\s*{unit}\b{re.escape(numbered['tail'])}")
    stated = [float(found.group(1)) for found in pattern.finditer(text)]
    if not stated:
        return 0.0
    return max(0.0, 1.0 - min(abs(value - reference) for value in stated) / NUMBER_TOLERANCE[unit])


def evidence_reward(completion: str, evidence: Mapping[int, Sequence[str]], graded_numbers: bool = False) -> float:
    """Mean over the steps with reference evidence of the fraction of phrases found in that step
    (`graded_numbers`: part credit for a phrase's number stated near the reference's, `phrase_credit`)."""
    paragraphs = step_paragraphs(completion)
    if not paragraphs:
        return 0.0
    reference = _reference_phrases(evidence)
    if not reference:
        return 0.0  # the release: no reference evidence scores 0
    scores: list[float] = []
    for step, phrases in reference.items():
        paragraph = paragraphs.get(step)
        if paragraph is None:
            scores.append(0.0)
            continue
        text = paragraph.lower()
        scores.append(sum(phrase_credit(phrase, text, graded_numbers) for phrase in phrases) / len(phrases))
    return sum(scores) / len(scores)


def format_reward(completion: str) -> float:
    """1.0 iff a `<think>...</think>` with non-whitespace content is present."""
    return 1.0 if parse_output(completion).has_think else 0.0


class RewardBreakdown(BaseModel):
    """The three EDER rewards of one completion; `total` is their sum (weights 1)."""

    diagnosis: float
    evidence: float
    format: float

    @property
    def total(self) -> float:
        return self.diagnosis + self.evidence + self.format


def eder_rewards(completion: str, reference_labels: Sequence[str],
                 evidence: Mapping[int, Sequence[str]], graded_numbers: bool = False) -> RewardBreakdown:
    """All three rewards of one completion against one row's labels and evidence."""
    return RewardBreakdown(diagnosis=diagnosis_reward(completion, reference_labels),
                           evidence=evidence_reward(completion, evidence, graded_numbers),
                           format=format_reward(completion))


__all__ = ["RewardBreakdown", "diagnosis_reward", "eder_rewards", "evidence_reward", "format_reward", "phrase_credit",
           "jaccard", "label_set", "predicted_labels", "step_paragraphs"]
