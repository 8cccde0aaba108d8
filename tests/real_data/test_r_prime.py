"""RBBB's R' in V1 alone sets the QRS offset on real recordings.

ludb/10 (dev) and ludb/108 (test) have a complete right bundle branch block in their references and a QRS
the cardiologists drew at 124 and 133 ms; the R' in V1 ends 42-50 ms after every other lead's QRS end, so no
other lead confirmed it, the offset fell at the others' end (QRS 82 and 86 ms) and the block was missed.
"""

from __future__ import annotations

import pytest

from ingest.measure.features import measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.run import model_window


@pytest.mark.parametrize("key", ["ludb/10", "ludb/108"])
def test_an_r_prime_in_v1_alone_widens_the_qrs_to_a_bundle_branch_block(key: str) -> None:
    reference = next(ref for ref in load_references(DEFAULT_DATA_DIR) if ref.key == key)
    signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
    features = measure(signal, fs)
    assert features.global_.qrs_ms >= 120, features.global_.qrs_ms
    assert v.RBBB in protocol_read(features, ecg.demographics).labels
