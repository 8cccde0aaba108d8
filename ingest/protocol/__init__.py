"""The deterministic protocol reader: the ECG-R1 protocol applied to measured features.

    protocol_read(features, demographics=None) -> ProtocolRead   text, labels, evidence, critical
    ProtocolReader().interpret(batch) -> list[Interpretation]     the `Interpreter` the worker holds

Laid out along the protocol's steps: `rhythm` (1: technical, rate, rhythm; it reads the
single beats through `beat_pattern`: premature beats, RR irregularity, P waves at a
consistent PR), `conduction` (2: PR, QRS and bundle branch blocks, axis), `voltage`
(3: hypertrophy, voltage, R progression, atria), `ischemia` (4: ST by the fourth universal
definition, Q waves, secondary changes of a wide QRS), `repolarisation` (5: QT decided by
Framingham's correction, T), `read` (6: weighing, narrative, labels, evidence), `reader`
(the Interpreter). Each module's docstring states its rules and the standard they follow;
their figures on real recordings are in the README ("Measured on real recordings"). `vocabulary` holds the label strings and `CRITICAL_LABELS`; `findings`
the `Finding` type and how numbers are written. Every threshold is a named constant of the
module that applies it, and `reports.verify` checks other interpreters' claims with them.
"""

from ingest.protocol.findings import Finding
from ingest.protocol.read import ProtocolRead, protocol_read
from ingest.protocol.reader import PROTOCOL_READER_NAME, PROTOCOL_READER_VERSION, ProtocolReader
from ingest.protocol.vocabulary import CRITICAL_LABELS, LABELS, critical_labels, is_critical

__all__ = [
    "CRITICAL_LABELS", "LABELS", "PROTOCOL_READER_NAME", "PROTOCOL_READER_VERSION", "Finding", "ProtocolRead",
    "ProtocolReader", "critical_labels", "is_critical", "protocol_read",
]
