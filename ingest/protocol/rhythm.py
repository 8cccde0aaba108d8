"""Step 1 of the protocol: technical quality, rate and rhythm.

    technical_finding   how many leads were measured
    lead_reversal_finding  P, QRS and T all negative in I (only when suspected; a flat T is not negative)
    rate_finding        heart rate against 60 / 100 bpm
    rhythm_finding      sinus (P before most beats, upright in II, not upright in aVR),
                        atrial fibrillation (irregular RR without P waves), or undetermined
    ectopic_finding     beats whose QRS differs from the dominant one

The classifiers (`rate_class`, `sinus_p_waves`, `rhythm_class`) are pure functions of
measured values, with their thresholds as named constants, so `reports.verify` applies
the very same thresholds to other interpreters' claims.
"""

from __future__ import annotations

from typing import Literal

from ingest.ecg import STANDARD_LEADS
from ingest.measure.measured import GroundingFeatures, Rhythm
from ingest.protocol import vocabulary as v
from ingest.protocol.conduction import COMPLETE_BBB_FROM_MS
from ingest.protocol.findings import Finding, hundredths, lead_list, not_measurable, signed_mv, whole

BRADYCARDIA_BELOW_BPM = 60
TACHYCARDIA_ABOVE_BPM = 100
# "P present before most beats": more than this share of the beats has a P wave.
SINUS_P_FRACTION_ABOVE = 0.5
# A T in I counts as inverted (lead reversal) from this depth: a smaller one is a flat T,
# which the measurer reports as a small signed number (ingest.measure.delineate.T_MIN_MV).
INVERTED_T_FROM_MV = 0.05

RateClass = Literal["bradycardia", "normal", "tachycardia"]
RhythmClass = Literal["sinus", "atrial fibrillation", "undetermined", "unmeasurable"]


def rate_class(hr_bpm: int) -> RateClass:
    if hr_bpm < BRADYCARDIA_BELOW_BPM:
        return "bradycardia"
    if hr_bpm > TACHYCARDIA_ABOVE_BPM:
        return "tachycardia"
    return "normal"


def p_before_most_beats(p_wave_fraction: float | None) -> bool | None:
    return None if p_wave_fraction is None else p_wave_fraction > SINUS_P_FRACTION_ABOVE


def sinus_p_waves(rhythm: Rhythm) -> bool | None:
    """P before most beats, upright in II and not upright in aVR; None when P was not assessed."""
    most = p_before_most_beats(rhythm.p_wave_fraction)
    if most is None:
        return None
    return most and "II" in rhythm.p_positive_in and "aVR" not in rhythm.p_positive_in


def rhythm_class(rhythm: Rhythm) -> RhythmClass:
    sinus = sinus_p_waves(rhythm)
    if sinus is None:
        return "unmeasurable"
    if sinus:
        return "sinus"
    if rhythm.regular is False and not p_before_most_beats(rhythm.p_wave_fraction):
        return "atrial fibrillation"
    return "undetermined"


def technical_finding(features: GroundingFeatures) -> Finding:
    measured = [lead for lead in STANDARD_LEADS if lead in features.leads_measured]
    missing = [lead for lead in STANDARD_LEADS if lead not in features.leads_measured]
    if not measured:
        phrase, statement = "no lead measured", "No lead measured."
    else:
        phrase = f"{len(measured)} of 12 leads measured"
        statement = phrase + (f" (not measured: {lead_list(missing)})." if missing else ".")
    return Finding(step=1, rule="technical", statement=statement, evidence=phrase,
                   abnormal=False, values={"leads_measured": float(len(measured))}, leads=measured)


def lead_reversal_finding(features: GroundingFeatures) -> Finding | None:
    """Protocol phase 1: P, QRS and T all inverted in lead I suggests reversed arm electrodes."""
    lead_i = features.leads.get("I")
    if lead_i is None:
        return None
    p, net, t = (hundredths(getattr(lead_i.median, name)) for name in ("p_amp_mv", "qrs_net_mv", "t_amp_mv"))
    if p is None or net is None or t is None or not (p < 0 and net < 0 and t <= -INVERTED_T_FROM_MV):
        return None
    return Finding(
        step=1, rule="lead_reversal", label=v.LEAD_REVERSAL, abnormal=True, leads=["I"],
        statement=(f"P ({signed_mv(p)}), QRS (net {signed_mv(net)}) and T ({signed_mv(t)}) all negative in I: "
                   f"{v.LEAD_REVERSAL}."),
        evidence="all negative in i", values={"p_i_mv": p, "qrs_net_i_mv": net, "t_i_mv": t})


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


def _rr_phrase(rhythm: Rhythm) -> str:
    if rhythm.regular is None:
        return "RR regularity not measurable"
    cv = f" (RR CV {rhythm.rr_cv:.2f})" if rhythm.rr_cv is not None else ""
    return ("regular" if rhythm.regular else "irregular") + f" rhythm{cv}"


def _p_phrase(rhythm: Rhythm) -> str:
    share = f"{whole(100.0 * rhythm.p_wave_fraction)}%" if rhythm.p_wave_fraction is not None else "?"
    polarity = []
    if "II" in rhythm.p_positive_in:
        polarity.append("upright in II")
    elif "II" in rhythm.p_negative_in:
        polarity.append("inverted in II")
    else:
        polarity.append("no clear P in II")
    if "aVR" in rhythm.p_negative_in:
        polarity.append("inverted in aVR")
    elif "aVR" in rhythm.p_positive_in:
        polarity.append("upright in aVR")
    return f"P waves before {share} of beats, " + ", ".join(polarity)


def rhythm_finding(features: GroundingFeatures) -> Finding:
    """The rhythm label, combined with the rate (sinus bradycardia, sinus tachycardia...)."""
    rhythm = features.rhythm
    kind = rhythm_class(rhythm)
    hr = whole(features.global_.hr_bpm)
    rate = rate_class(hr) if hr is not None else None
    values: dict[str, float | str | None] = {"p_wave_fraction": rhythm.p_wave_fraction, "rr_cv": rhythm.rr_cv,
                                             "rhythm": kind}
    if kind == "unmeasurable":
        return not_measurable(1, "rhythm", "P waves (rhythm)", values)
    if kind == "sinus":
        label = {"bradycardia": v.SINUS_BRADYCARDIA, "tachycardia": v.SINUS_TACHYCARDIA}.get(rate or "", v.SINUS_RHYTHM)
        return Finding(step=1, rule="rhythm", label=label, abnormal=label != v.SINUS_RHYTHM, values=values,
                       statement=f"{_p_phrase(rhythm)}; {_rr_phrase(rhythm)}: {label}.", evidence=label)
    if kind == "atrial fibrillation":
        return Finding(step=1, rule="rhythm", label=v.ATRIAL_FIBRILLATION, abnormal=True, values=values,
                       statement=f"{_rr_phrase(rhythm).capitalize()} without P waves before most beats "
                                 f"({_p_phrase(rhythm)}): {v.ATRIAL_FIBRILLATION}.",
                       evidence=v.ATRIAL_FIBRILLATION)
    qrs = whole(features.global_.qrs_ms)
    if rate == "tachycardia" and qrs is not None and qrs >= COMPLETE_BBB_FROM_MS:
        return Finding(step=1, rule="rhythm", label=v.WIDE_COMPLEX_TACHYCARDIA, abnormal=True, values=values,
                       statement=(f"Wide QRS (>= {COMPLETE_BBB_FROM_MS} ms) tachycardia without sinus P waves "
                                  f"({_p_phrase(rhythm)}): {v.WIDE_COMPLEX_TACHYCARDIA}."),
                       evidence=v.WIDE_COMPLEX_TACHYCARDIA)
    labels = [v.UNDETERMINED_RHYTHM]
    if rate in ("bradycardia", "tachycardia"):
        labels.append(v.BRADYCARDIA if rate == "bradycardia" else v.TACHYCARDIA)
    return Finding(step=1, rule="rhythm", label=v.UNDETERMINED_RHYTHM, labels=labels, abnormal=True, values=values,
                   statement=f"{_p_phrase(rhythm)}; {_rr_phrase(rhythm)}: not sinus, rhythm undetermined.",
                   evidence="rhythm undetermined")


def ectopic_finding(features: GroundingFeatures) -> Finding | None:
    count = features.rhythm.ectopic_count
    if count is None or features.rhythm.beat_count == 0:
        return None
    total = features.rhythm.beat_count
    if count == 0:
        return Finding(step=1, rule="ectopics", statement=f"No ectopic beats (all {total} beats of one shape).",
                       evidence="no ectopic beats", values={"ectopic_count": 0.0})
    return Finding(step=1, rule="ectopics", label=v.ECTOPIC_BEATS, abnormal=True,
                   values={"ectopic_count": float(count)},
                   statement=f"{count} of {total} beats differ in shape from the dominant beat: {v.ECTOPIC_BEATS}.",
                   evidence=v.ECTOPIC_BEATS)


def step1(features: GroundingFeatures) -> list[Finding]:
    found = [technical_finding(features), lead_reversal_finding(features), rate_finding(features),
             rhythm_finding(features), ectopic_finding(features)]
    return [finding for finding in found if finding is not None]
