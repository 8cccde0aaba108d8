"""What the rhythm rules read from the single beats: the RR pattern and the atrial activity.

    rr_pattern(rhythm)          premature beats, and how irregular the rest of the rhythm is
    atrial_activity(features)   how many beats have a P wave at a consistent PR
    other_shape_run(rhythm)     the longest run of consecutive beats of another QRS shape at a
                                tachycardia's rate (a non-sustained ventricular tachycardia)

Atrial fibrillation is an irregularly irregular rhythm without organised atrial activity.
Two things imitate it in an RR list and must not be taken for it:

- premature beats: a beat that comes early (its RR under PREMATURE_BELOW of the median RR
  and of the RR before it, so not the gradual shortening of sinus arrhythmia; the second
  beat of a run, whose RR before is itself premature, against the median alone), a beat only slightly
  early (under SLIGHTLY_EARLY_BELOW of both) that a pause follows (a premature atrial beat
  at a fast sinus rate, where the RR has little room to shorten), or a beat whose QRS
  differs from the dominant one, and the pause after it are two odd intervals. The
  irregularity is measured on the other intervals only: the median change from one RR to
  the next, as a share of the median RR (sinus arrhythmia changes the RR gradually, a few
  per cent a beat; atrial fibrillation by 10-30 % from one beat to the next). The change
  must also reach IRREGULAR_FROM_MS: at 200 bpm 6 % of the RR is 16 ms, within what beat
  timing alone varies by (2 ms samples, a QRS whose fiducial point moves), so a fast regular
  tachycardia would read as irregular; atrial fibrillation changes its RR by far more;
- grouped beating (bigeminy, trigeminy): when premature beats are so frequent that too few
  other intervals remain, the rhythm is regularly irregular if its short intervals and its
  long intervals are each regular.

Organised atrial activity is a P wave before the beat at a consistent PR in most (more than
half of the) beats (those whose QRS is of the dominant shape, that are not premature with a
pause after them and whose P segment was recorded: a premature atrial beat's own P is ectopic,
often inside the previous T where no P is found, and the pause after it, as the sinus node is
reset, is what tells it from an early beat of atrial fibrillation) with a P
wave whose PR lies within PR_CONSISTENT_MS of the median PR. Fibrillation waves that the
P-wave search happens to find come at random PRs.

A low P wave escapes the single-beat search on a noisy record, and a sinus rhythm would be left
undetermined (or, irregular, called atrial fibrillation). A reader sees such P waves over many
beats together; so the activity is organised as well when, in both II and aVF, LOCKED_FROM or
more of the stretch before the QRS repeats at the same place in every beat (over
LOCKED_MIN_BEATS or more beats), and that wave is upright in II, as a sinus P is
(`ingest.measure.p_lock`): a P wave at a fixed PR does, fibrillatory waves do not.

Features measured before the per-beat lists existed fall back to the record-level values
(`Rhythm.p_wave_fraction`, `Rhythm.regular`).
"""

from __future__ import annotations

import statistics

from pydantic import BaseModel

from ingest.measure.measured import GroundingFeatures, Rhythm

# A beat is premature when its RR is under this share of the median RR.
PREMATURE_BELOW = 0.85
# A beat this early (share of the median RR and of the RR before) is premature when a pause follows it.
SLIGHTLY_EARLY_BELOW = 0.9
# A pause: an RR over this share of the median RR.
PAUSE_ABOVE = 1.05
# Irregularly irregular from this median beat-to-beat change of the RR (share of the median RR).
IRREGULAR_FROM = 0.06
# ... and from this median beat-to-beat change in milliseconds (see the module's docstring).
IRREGULAR_FROM_MS = 30.0
# Fewer intervals than this outside premature beats and pauses: judge the grouping instead.
MIN_INTERVALS = 4
# Grouped beating: the short and the long intervals each vary less than this (coefficient of variation).
GROUPED_CV_BELOW = 0.1
# A P wave at a consistent PR: within this of the median PR of the beats.
PR_CONSISTENT_MS = 30.0
# Organised atrial activity: more than this share of the beats (most beats) has a P wave at a consistent PR.
ORGANISED_ABOVE = 0.5
# Organised as well when the wave locked to the QRS holds at least this share of the stretch before it
# (`ingest.measure.p_lock`), in every lead of LOCKED_LEADS: more of it repeats beat to beat than not.
LOCKED_FROM = 0.5
LOCKED_LEADS: tuple[str, ...] = ("II", "aVF")
# ... averaged over at least this many beats: over fewer, slow fibrillatory waves lock by chance
# (three slow atrial fibrillations of the real-data set, 5 and 6 beats, reached 0.37-0.46).
LOCKED_MIN_BEATS = 7
# A beat's PR is taken when at least this many leads timed its P wave.
MIN_PR_LEADS = 2
# A run of ventricular tachycardia: at least this many consecutive beats of another QRS shape than the
# dominant one (three or more ventricular beats, the definition of non-sustained ventricular tachycardia)...
OTHER_SHAPE_RUN_FROM_BEATS = 3
# ... at more than 100 /min: every RR between the run's beats under this...
OTHER_SHAPE_RUN_RR_BELOW_MS = 600.0
# ... and of a shape that has little of the dominant one: the run's median QRS correlation with the dominant
# QRS under this. A ventricular beat activates the ventricles another way (ningbo/JS45547's run 0.28,
# JS45543's 0.45); a supraventricular beat conducted a little differently keeps most of the shape (the
# narrow "other" beats of an atrial fibrillation, ludb/109: 0.65).
OTHER_SHAPE_RUN_CORRELATION_BELOW = 0.5


class RrPattern(BaseModel):
    """The RR intervals of a record, read for premature beats and irregularity."""

    intervals: int = 0  # RR intervals known
    premature: list[int] = []  # beats that came early (abruptly, against the median RR and the RR before)
    paused: list[int] = []  # of them, those a pause follows (after the run they start)
    set_aside: list[int] = []  # those and the beats of another QRS shape: left out of the irregularity
    irregularity: float | None = None  # median RR change outside premature beats and their pauses
    irregularity_ms: float | None = None  # the same change in milliseconds
    grouped: bool = False  # premature beats so regular in their own right that the rhythm is grouped
    irregular: bool | None = None  # irregularly irregular (None: too few intervals to say)


def rr_pattern(rhythm: Rhythm) -> RrPattern:
    """Premature beats and the irregularity of the rest (see the module's docstring)."""
    rr = {index: value for index, value in enumerate(rhythm.rr_intervals_ms) if value is not None}
    if len(rr) < MIN_INTERVALS:
        regular = rhythm.regular
        return RrPattern(intervals=len(rr), irregular=None if regular is None else not regular)
    reference = statistics.median(rr.values())
    premature: list[int] = []
    for index, value in rr.items():
        run = index - 1 in premature
        if _premature(value, None if run else rr.get(index - 1), rr.get(index + 1), reference, run):
            premature.append(index)
    # A premature atrial beat resets the sinus node: a pause follows it (or the run it starts). In atrial
    # fibrillation an early beat is followed by any interval.
    paused = [index for index in premature if _pause_after(index, premature, rr, reference)]
    other_shape = {index for index, flag in enumerate(rhythm.ectopic_beats) if flag and index in rr}
    set_aside = sorted(set(premature) | other_shape)
    odd = set(set_aside) | {index + 1 for index in set_aside}
    rest = [index for index in rr if index not in odd]
    changes = [abs(rr[index + 1] - rr[index]) / reference for index in rest if index + 1 in rest]
    if len(changes) >= MIN_INTERVALS - 1:
        irregularity = round(statistics.median(changes), 3)
        irregularity_ms = round(statistics.median(changes) * reference, 1)
        irregular = irregularity >= IRREGULAR_FROM and irregularity_ms >= IRREGULAR_FROM_MS
        return RrPattern(intervals=len(rr), premature=premature, paused=paused, set_aside=set_aside,
                         irregularity=irregularity, irregularity_ms=irregularity_ms, irregular=irregular)
    grouped = _grouped(list(rr.values()))
    return RrPattern(intervals=len(rr), premature=premature, paused=paused, set_aside=set_aside, grouped=grouped,
                     irregular=not grouped)


def _premature(rr: float, previous: float | None, following: float | None, reference: float, run: bool) -> bool:
    """Early against the median RR and abruptly shorter than the RR before (sinus arrhythmia shortens
    gradually), or only slightly early but with a pause after it.

    `previous` is None where the RR before is unknown (the first interval, or one after noise: not
    judged) or itself premature (`run`: the second beat of a run is early against the median RR alone).
    """
    if previous is None:
        return run and rr < PREMATURE_BELOW * reference
    if rr < PREMATURE_BELOW * reference and rr < PREMATURE_BELOW * previous:
        return True
    paused = following is not None and following > PAUSE_ABOVE * reference
    return paused and rr < SLIGHTLY_EARLY_BELOW * reference and rr < SLIGHTLY_EARLY_BELOW * previous


def _pause_after(index: int, premature: list[int], rr: dict[int, float], reference: float) -> bool:
    """Whether the first RR after the run of premature beats that `index` is in is a pause."""
    after = index + 1
    while after in premature:
        after += 1
    return after in rr and rr[after] > PAUSE_ABOVE * reference


def _grouped(values: list[float]) -> bool:
    """The short and the long intervals (split at the median) are each regular."""
    middle = statistics.median(values)
    short = [value for value in values if value < middle]
    long = [value for value in values if value >= middle]
    return all(len(group) >= 2 and statistics.pstdev(group) / statistics.mean(group) < GROUPED_CV_BELOW
               for group in (short, long))


class AtrialActivity(BaseModel):
    """P waves before the beats: how many, at which PR, and whether they are organised."""

    beats: int = 0  # beats whose P segment was recorded (dominant QRS, not premature)
    consistent: int = 0  # of them, with a P wave at a consistent PR
    pr_ms: float | None = None  # the median PR of the beats with a P wave
    share: float | None = None  # consistent / beats (or the record's P wave fraction)
    locked: dict[str, float] = {}  # per lead of LOCKED_LEADS, the share locked to the QRS, when all reach LOCKED_FROM
    organised: bool | None = None


def atrial_activity(features: GroundingFeatures) -> AtrialActivity:
    rhythm = features.rhythm
    count = len(rhythm.p_present)
    if count == 0 or count != len(rhythm.ectopic_beats):
        share = rhythm.p_wave_fraction
        return AtrialActivity(share=share, organised=None if share is None else share > ORGANISED_ABOVE)
    beat_prs = per_beat_pr(features, count)
    premature = set(rr_pattern(rhythm).paused)
    assessed = [i for i in range(count)
                if rhythm.p_present[i] is not None and not rhythm.ectopic_beats[i] and i not in premature]
    timed = [pr for i in assessed if rhythm.p_present[i] and (pr := beat_prs[i]) is not None]
    if not assessed:
        return AtrialActivity()
    locked = locked_p_waves(rhythm)
    if not timed:
        return AtrialActivity(beats=len(assessed), share=0.0, locked=locked, organised=bool(locked))
    median_pr = statistics.median(timed)
    consistent = sum(1 for pr in timed if abs(pr - median_pr) <= PR_CONSISTENT_MS)
    share = round(consistent / len(assessed), 3)
    return AtrialActivity(beats=len(assessed), consistent=consistent, pr_ms=round(median_pr, 1), share=share,
                          locked=locked, organised=share > ORGANISED_ABOVE or bool(locked))


def locked_p_waves(rhythm: Rhythm) -> dict[str, float]:
    """The locked shares of LOCKED_LEADS when every one reaches LOCKED_FROM over LOCKED_MIN_BEATS or more
    beats and the locked wave is upright in II; {} otherwise."""
    if rhythm.p_lock is None or rhythm.p_lock.beats < LOCKED_MIN_BEATS:
        return {}
    shares = {lead: rhythm.p_lock.share_by_lead.get(lead) for lead in LOCKED_LEADS}
    if any(share is None or share < LOCKED_FROM for share in shares.values()):
        return {}
    if rhythm.p_lock.peak_mv_by_lead.get("II", 0.0) <= 0.0:  # not a sinus P: an inverted or retrograde one
        return {}
    return {lead: share for lead, share in shares.items() if share is not None}


def per_beat_pr(features: GroundingFeatures, count: int) -> list[float | None]:
    """Each beat's PR: as measured across the leads (`Rhythm.beat_pr_ms`), or for features measured
    before that list existed, the median over the leads that timed its P wave (None with fewer than two)."""
    if len(features.rhythm.beat_pr_ms) == count:
        return list(features.rhythm.beat_pr_ms)
    prs: list[float | None] = []
    leads = [lead for lead in features.leads.values() if len(lead.beats) == count]
    for index in range(count):
        values = [pr for lead in leads if (pr := lead.beats[index].pr_ms) is not None]
        prs.append(statistics.median(values) if len(values) >= MIN_PR_LEADS else None)
    return prs


class BeatRun(BaseModel):
    """Consecutive beats of another QRS shape than the dominant one."""

    first: int  # the run's first beat (index into Rhythm.beat_times_ms)
    beats: int
    rate_per_min: int  # over the RR intervals between the run's beats


def other_shape_run(rhythm: Rhythm) -> BeatRun | None:
    """The longest run of OTHER_SHAPE_RUN_FROM_BEATS or more consecutive whole beats whose QRS differs from
    the dominant one, every RR between them under OTHER_SHAPE_RUN_RR_BELOW_MS and their median QRS
    correlation with the dominant one under OTHER_SHAPE_RUN_CORRELATION_BELOW; None if there is none (and
    for features measured before the correlations were kept).

    Three such beats in a row at a tachycardia's rate are a non-sustained ventricular tachycardia until shown
    otherwise (aberrant conduction of a supraventricular run looks the same on the surface ECG, and is the
    cardiologist's call). A beat cut by the record's edge is not classified, and an RR across noise is not
    known: either ends a run. The width of a single beat is not asked for: at these rates its QRS runs into
    the T wave before it, and the lead-by-lead widths of one beat scatter from 24 to 144 ms (ningbo/JS45547,
    a five-beat run at 235 /min whose complexes are plainly wide in V1).
    """
    flags, rr, correlation = rhythm.ectopic_beats, rhythm.rr_intervals_ms, rhythm.qrs_correlation
    if len(correlation) != len(flags):
        return None
    best: BeatRun | None = None
    start = 0
    while start < len(flags):
        if not flags[start]:
            start += 1
            continue
        end = start  # the run is start..end, each RR between its beats known and fast enough
        while (end + 1 < len(flags) and flags[end + 1] and end + 1 < len(rr) and rr[end + 1] is not None
               and rr[end + 1] < OTHER_SHAPE_RUN_RR_BELOW_MS):
            end += 1
        beats = end - start + 1
        unlike = statistics.median(correlation[start:end + 1]) < OTHER_SHAPE_RUN_CORRELATION_BELOW
        if beats >= OTHER_SHAPE_RUN_FROM_BEATS and unlike and (best is None or beats > best.beats):
            intervals = [value for value in rr[start + 1:end + 1] if value is not None]
            best = BeatRun(first=start, beats=beats, rate_per_min=round(60000.0 / statistics.mean(intervals)))
        start = end + 1
    return best
