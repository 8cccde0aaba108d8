"""The measured AV dissociation (`reports.triage._av_dissociation`) on per-beat facts: P waves before most
beats at scattered PRs at a slow regular rate is complete heart block, unless a P wave is locked to the QRS
over all beats (`ingest.measure.p_lock`), which conducts."""

from __future__ import annotations

from ingest.measure.measured import PLock
from ingest.protocol import vocabulary as v
from reports.triage import measured_findings
from tests.protocol import builders as b

SLOW_REGULAR_RR = [None, 1300, 1310, 1295, 1305, 1300, 1290, 1310, 1300]
SCATTERED_PR = [90.0, 310.0, 170.0, 260.0, 120.0, 330.0, 210.0, 60.0, 280.0]


def _dissociated():
    return b.with_beats(b.normal_features(), SLOW_REGULAR_RR, SCATTERED_PR)


def _locked(features, share: float):
    return b.with_rhythm(features, p_lock=PLock(span_ms=300.0, beats=9, share_by_lead={"II": share, "aVF": share},
                                                peak_mv_by_lead={"II": 0.04, "aVF": 0.03}))


def test_p_waves_at_scattered_prs_at_a_slow_regular_rate_are_complete_heart_block():
    assert v.COMPLETE_HEART_BLOCK in [finding.finding for finding in measured_findings(_dissociated())]
    # ... and stay so when what lies before the QRS is not locked to it (independent P waves average away).
    unlocked = _locked(_dissociated(), 0.1)
    assert v.COMPLETE_HEART_BLOCK in [finding.finding for finding in measured_findings(unlocked)]


def test_a_p_wave_locked_to_the_qrs_is_not_dissociation():
    locked = _locked(_dissociated(), 0.8)
    assert v.COMPLETE_HEART_BLOCK not in [finding.finding for finding in measured_findings(locked)]
