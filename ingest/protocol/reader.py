"""`ProtocolReader`: the protocol read as an `Interpreter`, the way the worker calls it.

For each prepared ECG with measured features it writes `protocol_read`'s text. A scanned
PDF has an image but no signal, so nothing could be measured: the reader then writes a
well-formed output that says so, with the single label `vocabulary.IMAGE_ONLY`, and leaves
the reading to a cardiologist. One ECG whose reading fails never fails the batch: it gets
the label `vocabulary.READ_FAILED` and the error is logged (by type; no patient data).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ingest.interpretation import Interpretation
from ingest.protocol import vocabulary as v
from ingest.protocol.read import protocol_read
from ingest.report_format import format_output, parse_output

if TYPE_CHECKING:
    from ingest.prepare import PreparedEcg

log = logging.getLogger(__name__)

PROTOCOL_READER_NAME = "protocol-reader"
PROTOCOL_READER_VERSION = "1.0.0"


def unreadable_output(reason: str, label: str) -> str:
    """A well-formed output for an ECG the rules could not read: every step says why."""
    steps = {
        1: f"{reason}: rate and rhythm not measurable.",
        2: f"{reason}: PR, QRS and axis not measurable.",
        3: f"{reason}: voltages not measurable.",
        4: f"{reason}: ST segments and Q waves not measurable.",
        5: f"{reason}: QT and QTc not measurable.",
        6: f"{reason}: no conclusion drawn; requires cardiologist reading.",
    }
    return format_output(steps, f"{reason}. No measurement-based interpretation; requires cardiologist reading.",
                         [label])


IMAGE_ONLY_REASON = "Signal not available for measurement (image-only source)"
READ_FAILED_REASON = "The protocol reading could not be completed"


class ProtocolReader:
    """The deterministic protocol reader (`ingest.interpretation.Interpreter`)."""

    name = PROTOCOL_READER_NAME
    version = PROTOCOL_READER_VERSION

    def interpret(self, batch: list[PreparedEcg]) -> list[Interpretation]:
        return [self.interpret_one(prepared) for prepared in batch]

    def interpret_one(self, prepared: PreparedEcg) -> Interpretation:
        if prepared.features is None:
            return self._interpretation(unreadable_output(IMAGE_ONLY_REASON, v.IMAGE_ONLY), modalities=[])
        try:
            text = protocol_read(prepared.features, prepared.ecg.demographics).text
        except Exception as exc:  # one bad ECG must not lose the batch: it goes to a cardiologist instead
            log.exception("protocol reading failed (%s); the ECG is left for a cardiologist", type(exc).__name__)
            return self._interpretation(unreadable_output(READ_FAILED_REASON, v.READ_FAILED), modalities=["ecg"])
        return self._interpretation(text, modalities=["ecg"])

    def _interpretation(self, text: str, modalities: list[str]) -> Interpretation:
        return Interpretation(interpreter=self.name, interpreter_version=self.version, is_demonstration=False,
                              modalities=modalities, raw_text=text, parsed=parse_output(text))
