"""The ECG-R1 output format: six reasoning steps, a narrative, and the answer labels.

    <think>
    **Step 1: Technical, Rate & Rhythm**
    ...
    **Step 6: Final Medical Reasoning**
    ...
    </think>
    A narrative paragraph.
    <answer>label; label; ...</answer>

The protocol reader writes it, ECG-R1 writes it, training rewards score it and the
HL7 builder reads it. A malformed output is never dropped: `parse_output` keeps the
text verbatim and lists what was wrong in `problems`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

STEP_HEADINGS: tuple[str, ...] = (
    "Step 1: Technical, Rate & Rhythm",
    "Step 2: Conduction, Axis & Intervals",
    "Step 3: Chamber Hypertrophy & Voltage",
    "Step 4: Ischemia, Infarction & Mimics",
    "Step 5: Electrolytes & QT",
    "Step 6: Final Medical Reasoning",
)


class ParsedOutput(BaseModel):
    steps: dict[int, str] = Field(default_factory=dict)  # step number (1-6) -> paragraph text
    narrative: str = ""
    labels: list[str] = Field(default_factory=list)
    has_think: bool = False
    has_answer: bool = False
    problems: list[str] = Field(default_factory=list)  # empty when the output is well formed

    @property
    def well_formed(self) -> bool:
        return not self.problems


def format_output(steps: dict[int, str], narrative: str, labels: list[str]) -> str:
    """Write the six steps, the narrative and the labels in the ECG-R1 format."""
    paragraphs = [f"**{STEP_HEADINGS[n - 1]}**\n{steps.get(n, '').strip()}" for n in range(1, 7)]
    think = "\n\n".join(paragraphs)
    answer = "; ".join(label.strip() for label in labels if label.strip())
    return f"<think>\n{think}\n</think>\n{narrative.strip()}\n<answer>{answer}</answer>"


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_STEP = re.compile(r"\*\*\s*Step\s*([1-6])\s*:[^*]*\*\*", re.IGNORECASE)


def split_labels(answer: str) -> list[str]:
    """Labels as the reward and the HL7 builder see them: ';'-separated, stripped, no empties."""
    return [part.strip() for part in answer.split(";") if part.strip()]


def parse_output(text: str) -> ParsedOutput:
    """Parse an interpreter's text; never raises, records what is missing instead."""
    parsed = ParsedOutput()
    think_match = _THINK.search(text)
    if think_match and think_match.group(1).strip():
        parsed.has_think = True
        think = think_match.group(1)
        headings = list(_STEP.finditer(think))
        for i, heading in enumerate(headings):
            end = headings[i + 1].start() if i + 1 < len(headings) else len(think)
            parsed.steps[int(heading.group(1))] = think[heading.end():end].strip()
        missing = [n for n in range(1, 7) if n not in parsed.steps]
        if missing:
            parsed.problems.append("missing reasoning step(s) " + ", ".join(map(str, missing)))
    else:
        parsed.problems.append("no <think> section")

    answer_match = _ANSWER.search(text)
    if answer_match:
        parsed.has_answer = True
        parsed.labels = split_labels(answer_match.group(1))
    else:
        parsed.problems.append("no <answer> section")

    after_think = text[think_match.end():] if think_match else text
    narrative = _ANSWER.sub("", after_think)
    if not think_match:
        narrative = _THINK.sub("", narrative)
    parsed.narrative = narrative.strip()
    return parsed
