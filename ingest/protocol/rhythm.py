"""Step 1 of the protocol: technical quality, rate and rhythm.

    technical_finding   how many leads were measured, a gain suspect (a QRS larger than hearts make it),
                        and muscle artefact (a fuzzy trace)
    lead_reversal_finding  P and QRS negative in I, or without a P a QRS negative in I and upright in
                           aVR with T inverted in I (only when suspected)
    rate_finding        heart rate against 60 / 100 bpm
    rhythm_finding      paced: pacemaker spikes before most beats (`ingest.measure.pacing`);
                        sinus: organised atrial activity (a P wave at a consistent PR before more
                        than half the beats, or over all beats together a P wave locked to the QRS
                        in II and aVF, `beat_pattern.atrial_activity`) with a sinus P axis
                        (upright in II, or in I when II shows none, and not upright in aVR; a
                        P axis that was not measured does not stop the call, the text says so);
                        atrial flutter: the same saw-tooth atrial wave at 230-350/min in II, III, aVF
                        and V1, faster than the ventricles (`flutter.flutter_waves`); looked at before
                        the P waves, as flutter waves at a fixed ratio stand at a consistent "PR";
                        a wide QRS at a fast rate stays a wide complex tachycardia, and so does
                        a "sinus" one whose wave before the QRS is under 120 ms from it (the
                        previous T where the complexes fill the cycle, or pre-excitation);
                        atrial fibrillation: an irregularly irregular RR once premature beats and
                        their pauses are set aside (`beat_pattern.rr_pattern`) AND no organised
                        atrial activity; otherwise undetermined (a wide QRS at a fast rate: wide
                        complex tachycardia)
    ectopic_finding     premature beats (early, abruptly, against the median RR and the RR before)
                        -> "ectopic beats", the text saying which are supraventricular (the
                        dominant QRS) and which ventricular or aberrant (another QRS); a beat of
                        another shape that is not early (pacing, fusion, artefact) is not one;
                        not assessed in atrial fibrillation or flutter, nor in a wide complex
                        tachycardia
    ventricular_run_finding  three or more consecutive beats of another QRS shape at > 100 /min
                        (`beat_pattern.other_shape_run`) -> "non-sustained ventricular tachycardia";
                        not assessed under ventricular pacing (the beats the pacemaker did not start
                        are of another shape) nor in a wide complex tachycardia (its dominant QRS is
                        the ventricular one, and the other beats are the odd sinus or fusion beats)

The classifiers (`rate_class`, `sinus_polarity`, `rhythm_class`) are pure functions of
measured values, with their thresholds as named constants (here and in `beat_pattern`), so
`reports.verify` applies the very same thresholds to other interpreters' claims.
"""

from __future__ import annotations

from typing import Literal

from ingest.ecg import STANDARD_LEADS
from ingest.measure.measured import GroundingFeatures, Rhythm
from ingest.protocol import vocabulary as v
from ingest.protocol.beat_pattern import (
    LOCKED_LEADS,
    ORGANISED_ABOVE,
    OTHER_SHAPE_RUN_FROM_BEATS,
    OTHER_SHAPE_RUN_RR_BELOW_MS,
    AtrialActivity,
    RrPattern,
    atrial_activity,
    other_shape_run,
    rr_pattern,
)
from ingest.protocol.conduction import COMPLETE_BBB_FROM_MS, SHORT_PR_BELOW_MS
from ingest.protocol.findings import Finding, hundredths, lead_list, not_measurable, signed_mv, whole
from ingest.protocol.flutter import FlutterWaves, flutter_waves

BRADYCARDIA_BELOW_BPM = 60
TACHYCARDIA_ABOVE_BPM = 100
# A T in I counts as inverted (lead reversal) from this depth: a smaller one is a flat T,
# which the measurer reports as a small signed number (ingest.measure.delineate.T_MIN_MV).
INVERTED_T_FROM_MV = 0.05
# A P wave in I counts as negative (lead reversal) from this depth: a smaller one is within the noise
# (the unpaced records of data/real with a QRS negative in I have their P in I at +0.03 mV or more;
# with the arms swapped in software, every P called negative there is -0.037 mV or deeper).
REVERSAL_P_FROM_MV = 0.02

# Leads as recorded with the arm electrodes swapped -> the lead they are of a correct recording (lead I,
# recorded inverted, is its own partner).
ARMS_SWAPPED_BACK = {"II": "III", "III": "II", "aVR": "aVL", "aVL": "aVR"}

RateClass = Literal["bradycardia", "normal", "tachycardia"]
RhythmClass = Literal["sinus", "atrial flutter", "atrial fibrillation", "undetermined", "unmeasurable"]


def rate_class(hr_bpm: int) -> RateClass:
    if hr_bpm < BRADYCARDIA_BELOW_BPM:
        return "bradycardia"
    if hr_bpm > TACHYCARDIA_ABOVE_BPM:
        return "tachycardia"
    return "normal"


def _p_signs(features: GroundingFeatures) -> dict[str, int]:
    """+1 / -1 per lead whose P polarity is known: the clear P waves first, else the median P's sign.

    With the arm electrodes possibly swapped (`lead_reversal_finding`), the signs are those of the
    leads swapped back (I inverted, II and III, aVR and aVL exchanged), so the sinus P axis is judged
    on the leads a correct recording would have given, as the reading says."""
    rhythm = features.rhythm
    signs = {}
    for lead, lead_features in features.leads.items():
        amplitude = hundredths(lead_features.median.p_amp_mv)
        if amplitude:
            signs[lead] = 1 if amplitude > 0 else -1
    signs.update({lead: 1 for lead in rhythm.p_positive_in})
    signs.update({lead: -1 for lead in rhythm.p_negative_in})
    if lead_reversal_finding(features) is not None:
        return {ARMS_SWAPPED_BACK.get(lead, lead): -sign if lead == "I" else sign for lead, sign in signs.items()}
    return signs


def sinus_polarity(features: GroundingFeatures) -> bool | None:
    """A sinus P axis: upright in II (or in I when II shows no P) and not upright in aVR.

    False when P is inverted in II or upright in aVR; None when no P polarity was measured.
    """
    signs = _p_signs(features)
    if not signs:
        return None
    if signs.get("II") == -1 or signs.get("aVR") == 1:
        return False
    if signs.get("II") == 1 or ("II" not in signs and signs.get("I") == 1):
        return True
    return None


def wide_and_fast(features: GroundingFeatures) -> bool:
    """A QRS of COMPLETE_BBB_FROM_MS or more at a tachycardia's rate."""
    hr, qrs = whole(features.global_.hr_bpm), whole(features.global_.qrs_ms)
    return hr is not None and rate_class(hr) == "tachycardia" and qrs is not None and qrs >= COMPLETE_BBB_FROM_MS


def wave_too_close_to_wide_qrs(features: GroundingFeatures) -> int | None:
    """The PR (ms) of a wave standing less than SHORT_PR_BELOW_MS before a wide QRS at a fast rate, which
    is no evidence of a sinus P wave: where the complexes fill the cycle it is the previous beat's T
    (ningbo/JS45546, ventricular tachycardia at 173 /min, read as sinus tachycardia with a "PR" of
    72 ms), and a true P that close to a wide QRS is pre-excitation. None otherwise."""
    pr = whole(features.global_.pr_ms)
    return pr if pr is not None and pr < SHORT_PR_BELOW_MS and wide_and_fast(features) else None


def rhythm_class(features: GroundingFeatures) -> RhythmClass:
    activity = atrial_activity(features)
    if activity.organised is None:
        return "unmeasurable"
    if flutter_waves(features) is not None:
        return "atrial flutter"
    if activity.organised:
        if sinus_polarity(features) is False or wave_too_close_to_wide_qrs(features) is not None:
            return "undetermined"
        return "sinus"
    if rr_pattern(features.rhythm).irregular:
        return "atrial fibrillation"
    return "undetermined"


# Rhythms without P waves: a P-like wave the median beat holds there is no P wave, so neither the PR
# nor the P axis measured on it is read or reported (the reading says why).
WITHOUT_P_WAVES: tuple[RhythmClass, ...] = ("atrial fibrillation", "atrial flutter")


def has_p_waves(features: GroundingFeatures) -> bool:
    """False in atrial fibrillation or flutter (WITHOUT_P_WAVES), and in a wide complex tachycardia
    (a wide QRS at a fast rate without sinus P waves)."""
    kind = rhythm_class(features)
    return kind not in WITHOUT_P_WAVES and not (kind != "sinus" and wide_and_fast(features))


def technical_finding(features: GroundingFeatures) -> Finding:
    measured = [lead for lead in STANDARD_LEADS if lead in features.leads_measured]
    qrs_only = [lead for lead in STANDARD_LEADS if lead in features.leads_qrs_only]
    missing = [lead for lead in STANDARD_LEADS if lead not in measured and lead not in qrs_only]
    if not measured:
        phrase, statement = "no lead measured", "No lead measured."
    else:
        phrase = f"{len(measured)} of 12 leads measured"
        parts = []
        if qrs_only:
            parts.append(f"QRS only, too noisy for P, ST and T: {lead_list(qrs_only)}")
        if missing:
            parts.append(f"not measured: {lead_list(missing)}")
        statement = phrase + (f" ({'; '.join(parts)})." if parts else ".")
    span = features.voltages.median_lead_qrs_mv
    if features.voltages.gain_suspect and span:
        statement += (f" The median lead's QRS spans {span:.1f} mV, more than hearts make: the recording's gain is "
                      "suspect, and what rests on amplitudes is not read.")
    noise = features.quality.median_lead_hf_noise_uv
    if features.quality.muscle_artefact and noise is not None:
        statement += (f" Muscle artefact: the median lead's noise above 40 Hz is {noise:.0f} uV RMS; small waves and "
                      "levels may be misread, and a repeat recording is advised.")
    return Finding(step=1, rule="technical", statement=statement, evidence=phrase,
                   abnormal=False, values={"leads_measured": float(len(measured))}, leads=measured)


def lead_reversal_finding(features: GroundingFeatures) -> Finding | None:
    """Protocol phase 1: the arm electrodes swapped, read from lead I (and aVR).

    Swapping them inverts lead I, so its P and QRS, normally upright there, turn negative together
    (a negative T beside them is common but not needed: a T flat or inverted in I before the swap is
    upright after it). Without a P wave in I to judge (atrial fibrillation), the QRS negative in I
    and upright in aVR with the T inverted in I. Chosen on data/real's dev split with its arm
    electrodes swapped in software (I inverted, II and III, aVR and aVL exchanged): P, QRS and T
    all negative, the earlier rule, found 91 of the 180; this rule 120; on the 332 records as
    recorded neither flags any. Dextrocardia looks the same in the limb leads, and a repeat recording
    tells them apart, which the reading asks for. Not judged under ventricular pacing: a paced QRS
    points where the lead in the heart sends it, often near zero or negative in I (LUDB 45 and 104,
    paced, read at 250 Hz, turned "negative" in I).
    """
    lead_i, lead_avr = features.leads.get("I"), features.leads.get("aVR")
    if lead_i is None or is_paced(features):
        return None
    p, net, t = (hundredths(getattr(lead_i.median, name)) for name in ("p_amp_mv", "qrs_net_mv", "t_amp_mv"))
    net_avr = hundredths(lead_avr.median.qrs_net_mv) if lead_avr is not None else None
    if net is None or net >= 0:
        return None
    if p is not None and p <= -REVERSAL_P_FROM_MV:
        statement = f"P ({signed_mv(p)}) and QRS (net {signed_mv(net)}) both negative in I"
        values = {"p_i_mv": p, "qrs_net_i_mv": net}
    elif p is None and net_avr is not None and net_avr > 0 and t is not None and t <= -INVERTED_T_FROM_MV:
        statement = (f"no P wave in I; QRS negative in I (net {signed_mv(net)}) and upright in aVR "
                     f"(net {signed_mv(net_avr)}), T negative in I ({signed_mv(t)})")
        values = {"qrs_net_i_mv": net, "qrs_net_avr_mv": net_avr, "t_i_mv": t}
    else:
        return None
    return Finding(step=1, rule="lead_reversal", label=v.LEAD_REVERSAL, abnormal=True, leads=["I", "aVR"],
                   statement=f"{statement}: {v.LEAD_REVERSAL}.", evidence="negative in i", values=values)


# With the arm electrodes swapped, lead I is inverted and aVL shows what aVR should: Q waves and ST levels
# read there are the swap's, not the heart's. II and III trade places, which leaves the inferior leads the
# same set, and the chest leads are untouched.
ARM_LEADS_SET_ASIDE: tuple[str, ...] = ("I", "aVL")


def arm_leads_set_aside(features: GroundingFeatures) -> GroundingFeatures:
    """The features without leads I and aVL when the arm electrodes may be swapped (for the Q-wave and ST
    rules, the reader's and the triage's); the same features otherwise."""
    if lead_reversal_finding(features) is None:
        return features
    return features.model_copy(update={
        "leads": {lead: value for lead, value in features.leads.items() if lead not in ARM_LEADS_SET_ASIDE},
        "st_deviation_mv": {lead: value for lead, value in features.st_deviation_mv.items()
                            if lead not in ARM_LEADS_SET_ASIDE}})


def rate_finding(features: GroundingFeatures) -> Finding:
    hr = whole(features.global_.hr_bpm)
    if hr is None:
        return not_measurable(1, "rate", "Heart rate")
    kind = rate_class(hr)
    limits = {"bradycardia": f"< {BRADYCARDIA_BELOW_BPM} bpm", "tachycardia": f"> {TACHYCARDIA_ABOVE_BPM} bpm",
              "normal": f"{BRADYCARDIA_BELOW_BPM}-{TACHYCARDIA_ABOVE_BPM} bpm"}[kind]
    conclusion = "normal rate" if kind == "normal" else kind
    return Finding(step=1, rule="rate", statement=f"Heart rate {hr} bpm ({limits}): {conclusion}.",
                   evidence=f"heart rate {hr} bpm", abnormal=kind != "normal", values={"hr_bpm": float(hr)})


def _rr_phrase(pattern: RrPattern, rhythm: Rhythm) -> str:
    if pattern.irregular is None:
        return "RR regularity not measurable"
    if pattern.irregularity is not None:
        early = f", {len(pattern.premature)} premature set aside" if pattern.premature else ""
        kind = "irregularly irregular" if pattern.irregular else "regular"
        change = f"{whole(100.0 * pattern.irregularity)}%"
        if pattern.irregularity_ms is not None:
            change += f", {whole(pattern.irregularity_ms)} ms"
        return f"{kind} RR (beat-to-beat change {change}{early})"
    if pattern.grouped:
        return f"grouped beating ({len(pattern.premature)} premature, short and long RR each regular)"
    if pattern.intervals:
        return "irregularly irregular RR (short and long RR not each regular)"
    cv = f" (RR CV {rhythm.rr_cv:.2f})" if rhythm.rr_cv is not None else ""
    return ("irregular" if pattern.irregular else "regular") + f" rhythm{cv}"


def _locked_share(rhythm: Rhythm) -> float | None:
    """The smallest locked P share of the leads the rule reads (`beat_pattern.LOCKED_LEADS`)."""
    shares = {} if rhythm.p_lock is None else rhythm.p_lock.share_by_lead
    if not all(lead in shares for lead in LOCKED_LEADS):
        return None
    return min(shares[lead] for lead in LOCKED_LEADS)


def locked_shares_text(locked: dict[str, float]) -> str:
    """The locked P shares as written: "58% in II and 71% in aVF" (the reading and the claim checks)."""
    return " and ".join(f"{whole(100.0 * value)}% in {lead}" for lead, value in locked.items())


def _p_phrase(features: GroundingFeatures, activity: AtrialActivity) -> str:
    signs = _p_signs(features)
    if activity.beats:
        at = f" at a consistent PR ({whole(activity.pr_ms)} ms)" if activity.pr_ms is not None else ""
        share = f"P waves{at} before {activity.consistent} of {activity.beats} beats"
        if activity.locked and activity.share is not None and activity.share <= ORGANISED_ABOVE:
            share += (f" one by one, but over all beats together an upright P wave in II stands at the same "
                      f"place before every QRS ({locked_shares_text(activity.locked)} of the signal there)")
    else:
        fraction = features.rhythm.p_wave_fraction
        share = f"P waves before {'?' if fraction is None else str(whole(100.0 * fraction)) + '%'} of beats"
    if not signs:
        return share + ", P axis not measured"
    polarity = []
    if "II" in signs:
        polarity.append("upright in II" if signs["II"] > 0 else "inverted in II")
    elif "I" in signs:
        polarity.append("no P in II, " + ("upright" if signs["I"] > 0 else "inverted") + " in I")
    else:
        polarity.append("no clear P in II")
    if "aVR" in signs:
        polarity.append("inverted in aVR" if signs["aVR"] < 0 else "upright in aVR")
    return share + ", " + ", ".join(polarity)


def is_paced(features: GroundingFeatures) -> bool:
    """Ventricular pacing: pacemaker spikes were found before most beats."""
    return bool(features.rhythm.paced)


def paced_finding(features: GroundingFeatures) -> Finding:
    """The rhythm of a paced record: the pacemaker's, and the sinus rhythm it follows where the P waves show one.

    Sinus P waves at a consistent PR before the paced beats (P-synchronous pacing) are said as
    "sinus rhythm" beside "paced rhythm", as a device's "sinus rhythm with ventricular pacing".
    """
    rhythm = features.rhythm
    share = f"{rhythm.paced_beats} of {rhythm.pacing_assessed_beats} beats"
    sinus = rhythm_class(features) == "sinus"
    labels = [v.PACED_RHYTHM, v.SINUS_RHYTHM] if sinus else [v.PACED_RHYTHM]
    atria = f", each after a sinus P wave ({_p_phrase(features, atrial_activity(features))})" if sinus else ""
    return Finding(step=1, rule="rhythm", label=v.PACED_RHYTHM, labels=labels, abnormal=True,
                   values={"paced_beats": float(rhythm.paced_beats or 0), "rhythm": "paced"},
                   statement=f"Pacemaker spikes before {share}, each starting the QRS{atria}: {'; '.join(labels)}.",
                   evidence=v.PACED_RHYTHM)


def rhythm_finding(features: GroundingFeatures) -> Finding:
    """The rhythm label, combined with the rate (sinus bradycardia, sinus tachycardia...)."""
    rhythm = features.rhythm
    if is_paced(features):
        return paced_finding(features)
    kind = rhythm_class(features)
    activity, pattern = atrial_activity(features), rr_pattern(rhythm)
    hr = whole(features.global_.hr_bpm)
    rate = rate_class(hr) if hr is not None else None
    values: dict[str, float | str | None] = {"p_wave_fraction": rhythm.p_wave_fraction, "rr_cv": rhythm.rr_cv,
                                             "organised_p_share": activity.share,
                                             "locked_p_share": _locked_share(rhythm),
                                             "rr_irregularity": pattern.irregularity, "rhythm": kind}
    if kind == "unmeasurable":
        return not_measurable(1, "rhythm", "P waves (rhythm)", values)
    p_text, rr_text = _p_phrase(features, activity), _rr_phrase(pattern, rhythm)
    if (pr := wave_too_close_to_wide_qrs(features)) is not None and activity.organised:
        return Finding(step=1, rule="rhythm", label=v.WIDE_COMPLEX_TACHYCARDIA, abnormal=True, values=values,
                       statement=(f"Wide QRS (>= {COMPLETE_BBB_FROM_MS} ms) tachycardia; the wave {pr} ms before "
                                  f"the QRS (< {SHORT_PR_BELOW_MS} ms) is not taken for a sinus P wave: "
                                  f"{v.WIDE_COMPLEX_TACHYCARDIA}."),
                       evidence=v.WIDE_COMPLEX_TACHYCARDIA)
    if kind == "sinus":
        label = {"bradycardia": v.SINUS_BRADYCARDIA, "tachycardia": v.SINUS_TACHYCARDIA}.get(rate or "", v.SINUS_RHYTHM)
        return Finding(step=1, rule="rhythm", label=label, abnormal=label != v.SINUS_RHYTHM, values=values,
                       statement=f"{p_text}; {rr_text}: {label}.", evidence=label)
    if kind == "atrial fibrillation":
        return Finding(step=1, rule="rhythm", label=v.ATRIAL_FIBRILLATION, abnormal=True, values=values,
                       statement=(f"{rr_text[0].upper() + rr_text[1:]} without organised atrial activity "
                                  f"({p_text}): {v.ATRIAL_FIBRILLATION}."),
                       evidence=v.ATRIAL_FIBRILLATION)
    wide_fast = wide_and_fast(features)
    flutter = flutter_waves(features) if kind == "atrial flutter" and not wide_fast else None
    if flutter is not None:
        return _flutter_finding(flutter, pattern, hr, values)
    if wide_fast:
        return Finding(step=1, rule="rhythm", label=v.WIDE_COMPLEX_TACHYCARDIA, abnormal=True, values=values,
                       statement=(f"Wide QRS (>= {COMPLETE_BBB_FROM_MS} ms) tachycardia without sinus P waves "
                                  f"({p_text}): {v.WIDE_COMPLEX_TACHYCARDIA}."),
                       evidence=v.WIDE_COMPLEX_TACHYCARDIA)
    labels = [v.UNDETERMINED_RHYTHM]
    if rate in ("bradycardia", "tachycardia"):
        labels.append(v.BRADYCARDIA if rate == "bradycardia" else v.TACHYCARDIA)
    why = "P axis not sinus" if activity.organised else "no organised atrial activity, RR not irregularly irregular"
    return Finding(step=1, rule="rhythm", label=v.UNDETERMINED_RHYTHM, labels=labels, abnormal=True, values=values,
                   statement=f"{p_text}; {rr_text}: {why}, rhythm undetermined.",
                   evidence="rhythm undetermined")


def _flutter_finding(flutter: FlutterWaves, pattern: RrPattern, hr: int | None,
                     values: dict[str, float | str | None]) -> Finding:
    """Flutter, and how its waves reach the ventricles: at a fixed ratio (a regular RR) or variably."""
    if pattern.irregular is False and hr:
        conduction = f"regular RR, {round(flutter.rate_per_min / hr)}:1 conduction"
    else:
        conduction = "irregular RR, variable conduction"
    return Finding(step=1, rule="rhythm", label=v.ATRIAL_FLUTTER, abnormal=True,
                   values={**values, "atrial_rate_per_min": float(flutter.rate_per_min),
                           "atrial_organisation": flutter.organisation},
                   statement=(f"Atrial waves at {flutter.rate_per_min}/min, alike in {lead_list(flutter.leads)}, "
                              f"faster than the ventricles; {conduction}: {v.ATRIAL_FLUTTER}."),
                   evidence=v.ATRIAL_FLUTTER)


def ectopic_finding(features: GroundingFeatures, no_underlying_rhythm: bool = False) -> Finding | None:
    """Premature beats, by their QRS: the dominant one (supraventricular) or another (ventricular or aberrant).

    In atrial fibrillation or flutter, or a wide complex tachycardia, no beat is premature against an
    underlying rhythm (`no_underlying_rhythm`): not assessed.
    """
    rhythm = features.rhythm
    if rhythm.ectopic_count is None or rhythm.beat_count == 0 or no_underlying_rhythm:
        return None
    total = rhythm.beat_count
    premature = rr_pattern(rhythm).premature
    other_shape = [index for index in premature if index < len(rhythm.ectopic_beats) and rhythm.ectopic_beats[index]]
    if not rhythm.rr_intervals_ms:  # features measured before the per-beat lists: the QRS shape alone
        other_shape, premature = list(range(rhythm.ectopic_count)), list(range(rhythm.ectopic_count))
    supraventricular = len(premature) - len(other_shape)
    if not premature:
        return Finding(step=1, rule="ectopics", statement=f"No ectopic beats (none of the {total} beats premature).",
                       evidence="no ectopic beats", values={"ectopic_count": 0.0})
    parts = []
    if supraventricular:
        parts.append(f"{supraventricular} with the dominant QRS (supraventricular)")
    if other_shape:
        parts.append(f"{len(other_shape)} with another QRS shape (ventricular or aberrant)")
    return Finding(step=1, rule="ectopics", label=v.ECTOPIC_BEATS, abnormal=True,
                   values={"ectopic_count": float(len(premature)), "premature_supraventricular": float(supraventricular),
                           "premature_other_shape": float(len(other_shape))},
                   statement=f"{len(premature)} of {total} beats premature, {' and '.join(parts)}: {v.ECTOPIC_BEATS}.",
                   evidence=v.ECTOPIC_BEATS)


def ventricular_run_finding(features: GroundingFeatures, rhythm_label: str | None) -> Finding | None:
    """A run of beats of another QRS shape at a tachycardia's rate amid the rhythm (see the module's docstring)."""
    if is_paced(features) or rhythm_label == v.WIDE_COMPLEX_TACHYCARDIA:
        return None
    run = other_shape_run(features.rhythm)
    if run is None:
        return None
    return Finding(step=1, rule="ventricular run", label=v.NON_SUSTAINED_VT, abnormal=True,
                   values={"run_beats": float(run.beats), "run_rate_per_min": float(run.rate_per_min)},
                   statement=(f"A run of {run.beats} consecutive beats with another QRS shape than the dominant one "
                              f"at {run.rate_per_min} /min (>= {OTHER_SHAPE_RUN_FROM_BEATS} beats, each RR < "
                              f"{OTHER_SHAPE_RUN_RR_BELOW_MS:.0f} ms): {v.NON_SUSTAINED_VT}, ventricular until shown "
                              "otherwise (a supraventricular run with aberrant conduction looks the same)."),
                   evidence=v.NON_SUSTAINED_VT)


def step1(features: GroundingFeatures) -> list[Finding]:
    rhythm = rhythm_finding(features)
    # No underlying rhythm for a beat to be early against.
    no_underlying = rhythm.label in (v.ATRIAL_FIBRILLATION, v.ATRIAL_FLUTTER, v.WIDE_COMPLEX_TACHYCARDIA)
    found = [technical_finding(features), lead_reversal_finding(features), rate_finding(features), rhythm,
             ectopic_finding(features, no_underlying), ventricular_run_finding(features, rhythm.label)]
    return [finding for finding in found if finding is not None]
