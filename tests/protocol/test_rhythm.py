"""The rhythm rules on per-beat facts: premature beats are not atrial fibrillation, P waves at a
consistent PR are organised atrial activity, and an irregularly irregular rhythm without them is.

Each case gives the RR before every beat and the PR of every beat (None: no P wave found), as
`ingest.measure` reports them, on an otherwise normal ECG.
"""

from __future__ import annotations

from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.measure.measured import PLock
from ingest.protocol.beat_pattern import (
    LOCKED_FROM,
    LOCKED_MIN_BEATS,
    ORGANISED_ABOVE,
    atrial_activity,
    locked_p_waves,
    rr_pattern,
)
from tests.protocol import builders as b

SINUS_RR = [None, 800, 810, 805, 795, 800, 810, 800, 805, 800, 795, 805]
PR = 160.0
# Atrial fibrillation: RR changing by 10-40 % from beat to beat, no run of similar intervals.
AF_RR = [None, 620, 900, 540, 760, 1010, 650, 880, 560, 940, 700, 520, 830]


def _with_pacs(rr: list[float | None]) -> list[float | None]:
    """Two premature beats (at 62 % of the RR), each followed by a pause."""
    rr = list(rr)
    for index in (4, 8):
        rr[index], rr[index + 1] = 500.0, 1100.0
    return rr


def test_sinus_rhythm_with_premature_atrial_beats_is_sinus_with_ectopic_beats():
    read = protocol_read(b.with_beats(b.normal_features(), _with_pacs(SINUS_RR), [PR] * 12))
    assert v.SINUS_RHYTHM in read.labels and v.ATRIAL_FIBRILLATION not in read.labels
    assert v.ECTOPIC_BEATS in read.labels
    assert "2 of 12 beats premature, 2 with the dominant QRS (supraventricular)" in read.steps[1]
    assert "regular RR (beat-to-beat change 1%, 10 ms, 2 premature set aside)" in read.steps[1]


def test_premature_beats_without_visible_p_waves_are_not_atrial_fibrillation():
    """P waves lost in noise (found before 3 of 12 beats) and a CV of 0.2 from two premature beats and
    their pauses: the rest of the rhythm is regular, so not atrial fibrillation."""
    pr = [PR if index in (1, 2, 3) else None for index in range(12)]
    features = b.with_beats(b.normal_features(), _with_pacs(SINUS_RR), pr)
    assert features.rhythm.rr_cv > 0.15
    read = protocol_read(features)
    assert v.ATRIAL_FIBRILLATION not in read.labels
    assert v.UNDETERMINED_RHYTHM in read.labels


def test_irregularly_irregular_without_p_waves_is_atrial_fibrillation():
    read = protocol_read(b.with_beats(b.normal_features(), AF_RR, [None] * 13))
    assert read.labels[0] == v.ATRIAL_FIBRILLATION
    assert "without organised atrial activity" in read.steps[1]
    assert v.ECTOPIC_BEATS not in read.labels  # no underlying rhythm to be premature against


def test_a_fast_tachycardia_whose_rr_jitters_by_a_few_milliseconds_is_not_atrial_fibrillation():
    """220 bpm without P waves, the RR moving by 14-24 ms (6-9 % of 270 ms) from beat to beat: as much
    as beat timing itself varies at that rate, so regular, not atrial fibrillation (Ningbo JS45547,
    a ventricular tachycardia, read as atrial fibrillation before the millisecond floor)."""
    jitter = [None] + [270 + (12 if index % 2 else -8) + (index % 3) * 2 for index in range(1, 30)]
    pattern = rr_pattern(b.with_beats(b.normal_features(), jitter, [None] * 30).rhythm)
    assert pattern.irregularity is not None and pattern.irregularity >= 0.06  # over the relative threshold alone
    assert pattern.irregularity_ms is not None and pattern.irregularity_ms < 30
    assert pattern.irregular is False
    read = protocol_read(b.with_beats(b.normal_features(), jitter, [None] * 30))
    assert v.ATRIAL_FIBRILLATION not in read.labels and v.UNDETERMINED_RHYTHM in read.labels
    # The same relative irregularity at 75 bpm (60 ms a beat) is atrial fibrillation.
    slow = [None if value is None else value * 3 for value in jitter]
    assert protocol_read(b.with_beats(b.normal_features(), slow, [None] * 30)).labels[0] == v.ATRIAL_FIBRILLATION


def test_p_like_waves_at_random_pr_are_not_organised():
    """Fibrillation waves found before every beat, at PRs from 80 to 320 ms."""
    pr = [80.0, 320.0, 150.0, 260.0, 110.0, 300.0, 190.0, 90.0, 240.0, 140.0, 310.0, 200.0, 120.0]
    features = b.with_beats(b.normal_features(), AF_RR, pr)
    activity = atrial_activity(features)
    assert activity.share is not None and activity.share <= 0.5 and activity.organised is False
    assert protocol_read(features).labels[0] == v.ATRIAL_FIBRILLATION


def test_irregular_rhythm_with_p_waves_at_a_consistent_pr_is_sinus():
    """Sinus arrhythmia: the RR lengthens and shortens by 3-6 % a beat, a P wave before every beat."""
    rr = [None, 700, 740, 790, 840, 880, 900, 870, 820, 770, 730, 700, 690]
    read = protocol_read(b.with_beats(b.normal_features(), rr, [PR] * 13))
    assert v.SINUS_RHYTHM in read.labels
    assert v.ECTOPIC_BEATS not in read.labels  # a gradual shortening is not a premature beat


def test_bigeminy_is_regularly_irregular():
    rr = [None] + [520.0, 1080.0] * 6
    pattern = rr_pattern(b.with_beats(b.normal_features(), rr, [None] * 13).rhythm)
    assert pattern.grouped is True and pattern.irregular is False
    assert v.ATRIAL_FIBRILLATION not in protocol_read(b.with_beats(b.normal_features(), rr, [None] * 13)).labels


def test_a_premature_beat_of_another_shape_is_ventricular_or_aberrant_and_a_late_one_is_no_ectopic():
    early = b.with_beats(b.normal_features(), _with_pacs(SINUS_RR), [PR] * 12, other_shape=[4])
    statement = protocol_read(early).steps[1]
    assert "1 with the dominant QRS (supraventricular) and 1 with another QRS shape (ventricular or aberrant)" \
        in statement
    on_time = b.with_beats(b.normal_features(), SINUS_RR, [PR] * 12, other_shape=[6])
    assert v.ECTOPIC_BEATS not in protocol_read(on_time).labels


def test_organised_p_waves_of_unmeasured_axis_still_read_as_sinus():
    features = b.with_beats(b.normal_features(), SINUS_RR, [PR] * 12)
    features = b.with_rhythm(features, p_positive_in=[], p_negative_in=[])
    for lead in features.leads.values():
        lead.median.p_amp_mv = None
    read = protocol_read(features)
    assert v.SINUS_RHYTHM in read.labels
    assert "P axis not measured" in read.steps[1]


def test_a_small_upright_p_in_ii_is_upright():
    """P +0.04 mV in II (too small to time the P onset on, a clear P elsewhere) is still upright."""
    features = b.with_rhythm(b.normal_features(), p_positive_in=["I", "aVL"], p_negative_in=["aVR"])
    features = b.with_median(features, "II", p_amp_mv=0.04)
    assert v.SINUS_RHYTHM in protocol_read(features).labels


def test_no_pr_conclusion_in_atrial_fibrillation_even_if_the_median_beat_holds_a_p_like_wave():
    features = b.with_global(b.with_beats(b.normal_features(), AF_RR, [None] * 13), pr_ms=260.0)
    read = protocol_read(features)
    assert read.labels[0] == v.ATRIAL_FIBRILLATION
    assert v.FIRST_DEGREE_AV_BLOCK not in read.labels
    assert "PR interval not applicable: no P waves." in read.steps[2]


# Sinus tachycardia at ~105 bpm (RR ~575 ms) whose premature atrial beats come only 12 % early (there
# is little room to shorten at that rate), each followed by a pause, as in ningbo/JS20011.
FAST_SINUS_RR = [None, 574, 580, 578, 582, 580, 576, 574, 580, 578, 582, 576, 574, 580, 578, 576]


def test_slightly_early_beats_followed_by_a_pause_are_premature_at_a_fast_sinus_rate():
    rr = list(FAST_SINUS_RR)
    for index in (4, 10):
        rr[index], rr[index + 1] = 510.0, 640.0
    pattern = rr_pattern(b.with_beats(b.normal_features(), rr, [PR] * 16).rhythm)
    assert pattern.premature == [4, 10] and pattern.paused == [4, 10]
    assert pattern.irregular is False
    read = protocol_read(b.with_beats(b.normal_features(), rr, [PR] * 16))
    assert v.SINUS_TACHYCARDIA in read.labels and v.ECTOPIC_BEATS in read.labels
    assert v.ATRIAL_FIBRILLATION not in read.labels
    # Without the pause, the same slightly shorter RR is no premature beat (sinus arrhythmia).
    rr[5] = 578.0
    assert 4 not in rr_pattern(b.with_beats(b.normal_features(), rr, [PR] * 16).rhythm).premature


def test_frequent_premature_beats_whose_p_is_not_found_leave_the_sinus_beats_organised():
    """Sinus tachycardia with a premature atrial beat after almost every sinus beat, their P inside the
    previous T (not found), and a couplet: the sinus beats after the pauses have their P at one PR, so
    the rhythm is sinus with ectopic beats, as in ningbo/JS20010."""
    rr = [None, 470, 340, 610, 470, 340, 610, 470, 335, 300, 620, 470, 340, 610, 470, 480, 340, 610, 470]
    premature = {2, 5, 8, 9, 12, 16}
    pr = [None if index in premature else PR for index in range(len(rr))]
    for index in (1, 7, 14, 18):  # P waves lost in noise before some sinus beats too
        pr[index] = None
    features = b.with_beats(b.normal_features(), rr, pr)
    pattern = rr_pattern(features.rhythm)
    assert set(pattern.premature) == premature and set(pattern.paused) == premature  # 9: the couplet's second
    activity = atrial_activity(features)
    assert activity.beats == len(rr) - len(premature) and activity.organised is True  # 9 of 13 (9 of 19 if counted)
    read = protocol_read(features)
    assert v.SINUS_TACHYCARDIA in read.labels and v.ECTOPIC_BEATS in read.labels
    assert v.ATRIAL_FIBRILLATION not in read.labels


def test_early_beats_of_atrial_fibrillation_without_a_pause_still_count_against_organisation():
    """Atrial fibrillation whose early beats are followed by ordinary intervals, with P-like waves at one
    PR before half the beats (as cpsc2018_extra/Q0048): the early beats are not premature atrial beats,
    so they stay in the count and the rhythm is atrial fibrillation."""
    rr = [None, 880, 930, 660, 490, 410, 670, 940, 770, 950, 470, 740, 710, 950]
    pr = [None, None, 160.0, None, None, None, 155.0, 170.0, None, 165.0, None, 150.0, 175.0, None]
    features = b.with_beats(b.normal_features(), rr, pr)
    assert rr_pattern(features.rhythm).paused == []
    assert atrial_activity(features).organised is False
    assert protocol_read(features).labels[0] == v.ATRIAL_FIBRILLATION


# --- P waves seen over all beats together (ingest.measure.p_lock) ---------------------------------

def _locked(features, share_ii: float = 0.8, share_avf: float = 0.8, beats: int = 11, peak_ii: float = 0.05):
    return b.with_rhythm(features, p_lock=PLock(span_ms=300.0, beats=beats,
                                                share_by_lead={"II": share_ii, "aVF": share_avf},
                                                peak_mv_by_lead={"II": peak_ii, "aVF": peak_ii}))


def _missed_p_waves() -> list[float | None]:
    """Single beats' P waves found before 3 of 12 beats, as on a noisy record with a low P."""
    return [PR if index in (1, 2, 3) else None for index in range(12)]


def test_a_p_wave_locked_to_the_qrs_in_ii_and_avf_is_organised_though_single_beats_miss_it():
    """The regular rhythm of premature beats without visible P waves was undetermined; with a P wave that
    over all beats stands at the same place before every QRS in II and aVF, it is sinus rhythm."""
    features = _locked(b.with_beats(b.normal_features(), _with_pacs(SINUS_RR), _missed_p_waves()), 0.55, 0.71)
    activity = atrial_activity(features)
    assert activity.share is not None and activity.share <= ORGANISED_ABOVE
    assert activity.organised is True and activity.locked == {"II": 0.55, "aVF": 0.71}
    read = protocol_read(features)
    assert v.SINUS_RHYTHM in read.labels and v.UNDETERMINED_RHYTHM not in read.labels
    assert ("but over all beats together an upright P wave in II stands at the same place before every QRS "
            "(55% in II and 71% in aVF of the signal there)") in read.steps[1]


def test_the_locked_p_rule_at_its_limits():
    """LOCKED_FROM in both leads, LOCKED_MIN_BEATS beats, and upright in II; one short of any, not organised."""
    base = b.with_beats(b.normal_features(), SINUS_RR, _missed_p_waves())
    assert atrial_activity(base).organised is False
    assert atrial_activity(_locked(base, LOCKED_FROM, LOCKED_FROM, beats=LOCKED_MIN_BEATS)).organised is True
    for short in (dict(share_ii=LOCKED_FROM - 0.01), dict(share_avf=LOCKED_FROM - 0.01),
                  dict(beats=LOCKED_MIN_BEATS - 1), dict(peak_ii=-0.05), dict(peak_ii=0.0)):
        changed = _locked(base, **{"share_ii": 0.9, "share_avf": 0.9, **short})
        assert atrial_activity(changed).organised is False, short
        assert locked_p_waves(changed.rhythm) == {}, short
        assert v.UNDETERMINED_RHYTHM in protocol_read(changed).labels, short


def test_an_irregular_rhythm_with_a_locked_p_wave_is_not_atrial_fibrillation_and_one_without_is():
    missed = [None] * 13
    assert protocol_read(b.with_beats(b.normal_features(), AF_RR, missed)).labels[0] == v.ATRIAL_FIBRILLATION
    unlocked = _locked(b.with_beats(b.normal_features(), AF_RR, missed), 0.1, 0.05)
    assert protocol_read(unlocked).labels[0] == v.ATRIAL_FIBRILLATION
    locked = _locked(b.with_beats(b.normal_features(), AF_RR, missed), 0.8, 0.75)
    assert v.ATRIAL_FIBRILLATION not in protocol_read(locked).labels
