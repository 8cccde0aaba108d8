"""One finding of the protocol reader, and how its numbers are written.

Every rule turns measured features into one `Finding`: the sentence that cites the value
and the leads, the label it leads to (if any), a short evidence phrase (a substring of
the sentence, used by the training rewards) and the values it was drawn from.

Numbers are rounded ONCE to the precision they are written with (ms, bpm and degrees to
whole numbers, mV to 0.01) and the thresholds are applied to the rounded value, so the
text never says "PR 200 ms (> 200 ms)".
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field


class Finding(BaseModel):
    """One statement of the reading, with what it rests on."""

    step: int  # 1-6, the ECG-R1 reasoning step it belongs to
    rule: str  # which rule wrote it, e.g. "pr_interval"
    statement: str  # one sentence citing the measured value(s) and leads
    evidence: str  # a short lower-case phrase, a substring of the lower-cased statement
    label: str | None = None  # the answer label it leads to, if any
    labels: list[str] = Field(default_factory=list)  # for rules that give several (territories)
    abnormal: bool = False
    measurable: bool = True  # False: the value was missing and no conclusion was drawn
    values: dict[str, float | str | None] = Field(default_factory=dict)  # as rounded and written
    leads: list[str] = Field(default_factory=list)

    def all_labels(self) -> list[str]:
        return ([self.label] if self.label else []) + [label for label in self.labels if label != self.label]


def whole(value: float | None) -> int | None:
    """ms, bpm, degrees as written: rounded half up to a whole number."""
    return None if value is None else int(math.floor(value + 0.5))


def hundredths(value: float | None) -> float | None:
    """mV as written: rounded half up to 0.01."""
    return None if value is None else math.floor(value * 100.0 + 0.5) / 100.0


def mv(value: float) -> str:
    return f"{value:.2f} mV"


def signed_mv(value: float) -> str:
    return f"{value:+.2f} mV"


def lead_list(leads: list[str] | tuple[str, ...]) -> str:
    return ", ".join(leads)


def not_measurable(step: int, rule: str, what: str, values: dict[str, float | str | None] | None = None) -> Finding:
    """The finding for a value that was not measured: said plainly, no conclusion drawn."""
    return Finding(step=step, rule=rule, statement=f"{what} not measurable: no conclusion drawn from it.",
                   evidence=f"{what.lower()} not measurable", measurable=False, values=values or {})
