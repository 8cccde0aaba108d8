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


def test_four_beats_running_at_one_pr_were_conducted_and_the_block_is_not_complete():
    # LUDB 12's shape: P waves timed far from the QRS in some beats, and four running at one PR: still under
    # half the beats at the median PR, so only the run tells.
    run = [330.0, 250.0, 190.0, 128.0, 120.0, 122.0, 118.0, 60.0, 300.0]
    assert v.COMPLETE_HEART_BLOCK not in [
        finding.finding for finding in measured_findings(b.with_beats(b.normal_features(), SLOW_REGULAR_RR, run))]
    # Three at one PR are not enough, nor four broken by a beat whose P was not timed.
    three = [330.0, 250.0, 190.0, 128.0, 120.0, 122.0, 60.0, 210.0, 300.0]
    broken = [330.0, 250.0, 190.0, 128.0, 120.0, None, 122.0, 118.0, 300.0]
    for prs in (three, broken):
        assert v.COMPLETE_HEART_BLOCK in [
            finding.finding for finding in measured_findings(b.with_beats(b.normal_features(), SLOW_REGULAR_RR, prs))]


def test_p_waves_marching_through_at_their_own_rate_stay_complete_heart_block():
    # P at 80 /min (750 ms) through QRS at 45 /min (1333 ms): the PR falls by 167 ms a beat, modulo the P cycle.
    prs = [float((n * 1333 - 200) % 750) for n in range(9)]
    rr = [None] + [1333] * 8
    features = b.with_beats(b.normal_features(), rr, prs)
    assert v.COMPLETE_HEART_BLOCK in [finding.finding for finding in measured_findings(features)]
