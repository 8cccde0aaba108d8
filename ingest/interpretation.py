"""The contract every interpreter fulfils: a batch of prepared ECGs in, interpretations out.

Two interpreters implement it: the deterministic protocol reader (`ingest.protocol`)
and ECG-R1 (`model.engines`). The worker holds an `Interpreter` and never knows which
one it is. Both write the ECG-R1 output format (see `ingest.report_format`), so the
HL7 builder, the claim checks and the review page treat them alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ingest.report_format import ParsedOutput

if TYPE_CHECKING:
    from ingest.prepare import PreparedEcg


class Interpretation(BaseModel):
    """What one interpreter said about one ECG, kept verbatim and parsed."""

    interpreter: str  # e.g. "protocol-reader" or "ecg-r1"
    interpreter_version: str  # code version, or the checkpoint's name/revision
    is_demonstration: bool = False  # True for the bundled demo model: never for clinical use
    modalities: list[str] = Field(default_factory=list)  # subset of ["ecg", "image"], in prompt order
    raw_text: str
    parsed: ParsedOutput


@runtime_checkable
class Interpreter(Protocol):
    """Anything that reads prepared ECGs in batches (GPUs are only fast at large batch)."""

    name: str
    version: str

    def interpret(self, batch: list["PreparedEcg"]) -> list[Interpretation]:
        """One interpretation per input, in the same order."""
        ...
