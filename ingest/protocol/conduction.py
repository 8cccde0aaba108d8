"""Step 2 of the protocol: conduction, axis and intervals.

    pr_finding    PR against 120 / 200 ms (short PR, first degree AV block); not applicable in
                  atrial fibrillation or a wide complex tachycardia (no sinus P waves)
    qrs_finding   QRS by the AHA/ACCF/HRS 2009 recommendations (part III, adults):
                  >= 120 ms: right bundle branch block with an R' in V1 or V2 or a dominant R
                  in V1; left bundle branch block with a dominant S in V1 (QS, rS) and a broad
                  R without a q in both I and V6; otherwise a non-specific intraventricular
                  conduction delay;
                  110-119 ms: incomplete bundle branch block with the same right-sided
                  (R' in V1 or V2) or left-sided morphology; otherwise a non-specific
                  intraventricular conduction delay (QRS > 110 ms without either pattern: at
                  110 ms without one, normal conduction);
                  under 110 ms: normal intraventricular conduction (an rSr' in V1 with a
                  normal QRS is a normal variant, not a block);
                  in a wide complex tachycardia (step 1) the width is stated and no block is
                  named: a wide QRS at a fast rate without sinus P waves is presumed
                  ventricular until shown otherwise, and a bundle branch block or conduction
                  delay would offer the benign explanation (aberrant conduction) unasked
    axis_finding  QRS axis against -30 / +90 degrees, or from the QRS polarity in I, II and
                  aVF when the angle was not measured
"""

from __future__ import annotations

import re
from typing import Literal

from ingest.measure.measured import GroundingFeatures, LeadFeatures
from ingest.protocol import vocabulary as v
from ingest.protocol.findings import Finding, hundredths, not_measurable, whole

SHORT_PR_BELOW_MS = 120
FIRST_DEGREE_AV_BLOCK_ABOVE_MS = 200
INCOMPLETE_BBB_FROM_MS = 110
COMPLETE_BBB_FROM_MS = 120
# A non-specific intraventricular conduction delay: a QRS over 110 ms (AHA/ACCF/HRS 2009 part III), so a QRS of
# 110 ms without a bundle branch pattern is still normal conduction.
IVCD_ABOVE_MS = 110
LEFT_AXIS_BELOW_DEG = -30
RIGHT_AXIS_ABOVE_DEG = 90
# Below -90 degrees (the north-west quadrant) the axis is "extreme", neither left nor right.
EXTREME_AXIS_BELOW_DEG = -90

PrClass = Literal["short", "normal", "long"]
QrsClass = Literal["normal", "incomplete", "complete"]
AxisClass = Literal["normal", "left", "right", "extreme"]
V1Pattern = Literal["rsr", "r_dominant", "s_dominant"]

_PRIMED_R = re.compile(r"[Rr]'")


def pr_class(pr_ms: int) -> PrClass:
    if pr_ms < SHORT_PR_BELOW_MS:
        return "short"
    if pr_ms > FIRST_DEGREE_AV_BLOCK_ABOVE_MS:
        return "long"
    return "normal"


def qrs_class(qrs_ms: int) -> QrsClass:
    if qrs_ms >= COMPLETE_BBB_FROM_MS:
        return "complete"
    if qrs_ms >= INCOMPLETE_BBB_FROM_MS:
        return "incomplete"
    return "normal"


def axis_class(axis_deg: int) -> AxisClass:
    """Frontal QRS axis in degrees (-180..180)."""
    if axis_deg > RIGHT_AXIS_ABOVE_DEG:
        return "right"
    if axis_deg < EXTREME_AXIS_BELOW_DEG:
        return "extreme"
    if axis_deg < LEFT_AXIS_BELOW_DEG:
        return "left"
    return "normal"


def axis_class_from_signs(net_i: float | None, net_ii: float | None, net_avf: float | None) -> AxisClass | None:
    """The axis quadrant from the net QRS polarity: I+ aVF+ normal; I+ II- left; I- aVF+ right.

    None when a lead needed is unmeasured or equiphasic (net 0), or when I+ aVF- leaves it
    open between 0 and -90 degrees and II does not decide.
    """
    if not net_i or not net_avf:
        return None
    if net_i > 0 and net_avf > 0:
        return "normal"
    if net_i < 0:
        return "right" if net_avf > 0 else "extreme"
    if not net_ii:
        return None
    return "normal" if net_ii > 0 else "left"


def has_r_prime(lead: LeadFeatures | None) -> bool:
    return bool(lead is not None and lead.qrs_morphology and _PRIMED_R.search(lead.qrs_morphology))


def v1_pattern(lead: LeadFeatures | None) -> V1Pattern | None:
    """V1's QRS: an R' (rSR', rsR'), a dominant R, or a dominant S (QS, rS); None when unmeasured."""
    if lead is None:
        return None
    if lead.qrs_morphology and _PRIMED_R.search(lead.qrs_morphology):
        return "rsr"
    r, q, s = lead.median.r_amp_mv, lead.median.q_amp_mv or 0.0, lead.median.s_amp_mv
    if r is None or s is None:
        if lead.qrs_morphology == "QS":
            return "s_dominant"
        return None
    return "r_dominant" if r > max(q, s) else "s_dominant"


def broad_r_without_q(lead: LeadFeatures | None) -> bool | None:
    """A left-ventricular lead whose QRS is a dominant R (notched or slurred: R, RS, rsR'...) with no
    septal q before it (the LBBB sign in V6 and I)."""
    if lead is None:
        return None
    if lead.qrs_morphology:
        return not lead.qrs_morphology.lower().startswith("q") and "R" in lead.qrs_morphology
    r, q, s = lead.median.r_amp_mv, lead.median.q_amp_mv, lead.median.s_amp_mv
    if r is None or q is None or s is None:
        return None
    return q == 0 and r > s


def bundle_branch_pattern(features: GroundingFeatures) -> Literal["right", "left"] | None:
    """Right: an R' in V1 or V2, or a dominant R in V1. Left: a dominant S in V1 and a broad R
    without q in both I and V6 (V5 standing in for an unmeasured V6)."""
    pattern = v1_pattern(features.leads.get("V1"))
    if pattern in ("rsr", "r_dominant") or has_r_prime(features.leads.get("V2")):
        return "right"
    left_lateral = features.leads.get("V6") or features.leads.get("V5")
    lateral = [broad_r_without_q(lead) for lead in (features.leads.get("I"), left_lateral)]
    if pattern == "s_dominant" and all(lateral):
        return "left"
    return None


def _describe(lead: LeadFeatures | None, name: str) -> str:
    if lead is None:
        return f"{name} not measured"
    if lead.qrs_morphology:
        return f"{name} {lead.qrs_morphology}"
    r, s = hundredths(lead.median.r_amp_mv), hundredths(lead.median.s_amp_mv)
    if r is None or s is None:
        return f"{name} QRS shape not measured"
    return f"{name} R {r:.2f} mV / S {s:.2f} mV"


def pr_finding(features: GroundingFeatures, atrial_fibrillation: bool = False,
               wide_complex_tachycardia: bool = False) -> Finding:
    pr = whole(features.global_.pr_ms)
    if atrial_fibrillation:  # fibrillation or flutter: a P-like wave the median beat holds is no P wave, no PR
        return Finding(step=2, rule="pr_interval", statement="PR interval not applicable: no P waves.",
                       evidence="pr interval not applicable")
    if wide_complex_tachycardia:  # called only without sinus P waves: a wave before the QRS is no sinus P
        return Finding(step=2, rule="pr_interval", evidence="pr interval not applicable",
                       statement="PR interval not applicable: no sinus P waves (wide complex tachycardia).")
    if pr is None:
        return not_measurable(2, "pr_interval", "PR interval")
    kind = pr_class(pr)
    text = {
        "short": (f"(< {SHORT_PR_BELOW_MS} ms): short PR, possible pre-excitation", v.SHORT_PR),
        "normal": (f"({SHORT_PR_BELOW_MS}-{FIRST_DEGREE_AV_BLOCK_ABOVE_MS} ms): normal AV conduction", None),
        "long": (f"(> {FIRST_DEGREE_AV_BLOCK_ABOVE_MS} ms): first degree AV block", v.FIRST_DEGREE_AV_BLOCK),
    }[kind]
    return Finding(step=2, rule="pr_interval", statement=f"PR interval {pr} ms {text[0]}.", label=text[1],
                   evidence=f"pr interval {pr} ms", abnormal=kind != "normal", values={"pr_ms": float(pr)})


def qrs_finding(features: GroundingFeatures, wide_complex_tachycardia: bool = False) -> Finding:
    qrs = whole(features.global_.qrs_ms)
    if qrs is None:
        return not_measurable(2, "qrs_duration", "QRS duration")
    kind = qrs_class(qrs)
    values: dict[str, float | str | None] = {"qrs_ms": float(qrs)}
    head = f"QRS duration {qrs} ms"
    evidence = f"qrs duration {qrs} ms"
    if kind == "normal":
        return Finding(step=2, rule="qrs_duration", evidence=evidence, values=values,
                       statement=f"{head} (< {INCOMPLETE_BBB_FROM_MS} ms): normal intraventricular conduction.")
    if wide_complex_tachycardia:
        return Finding(step=2, rule="qrs_duration", abnormal=True, evidence=evidence, values=values,
                       statement=(f"{head} in a wide complex tachycardia: presumed ventricular, no bundle branch "
                                  f"block or conduction delay named."))
    side = bundle_branch_pattern(features)
    values["pattern"] = side
    v1 = _describe(features.leads.get("V1"), "V1")
    lateral = _describe(features.leads.get("V6") or features.leads.get("V5"), "V6") + ", " + _describe(
        features.leads.get("I"), "I")
    if side is None and qrs <= IVCD_ABOVE_MS:
        return Finding(step=2, rule="qrs_duration", evidence=evidence, values=values,
                       statement=(f"{head} without a bundle branch pattern (a non-specific delay is > {IVCD_ABOVE_MS} "
                                  f"ms): normal intraventricular conduction."))
    if side is None:
        limits = (f">= {COMPLETE_BBB_FROM_MS} ms" if kind == "complete"
                  else f"{INCOMPLETE_BBB_FROM_MS}-{COMPLETE_BBB_FROM_MS - 1} ms")
        return Finding(step=2, rule="qrs_duration", label=v.IVCD, abnormal=True, evidence=evidence, values=values,
                       leads=["V1", "V6", "I"],
                       statement=(f"{head} ({limits}) with {v1}, {lateral}: neither a right nor a left bundle branch "
                                  f"pattern, non-specific {v.IVCD}."))
    pattern = (f"{v1} (R' in V1 or V2, or a dominant R in V1)" if side == "right"
               else f"{v1} and a broad R without q ({lateral})")
    if kind == "incomplete":
        return Finding(step=2, rule="qrs_duration", label=v.INCOMPLETE_BBB, abnormal=True, evidence=evidence,
                       values=values, leads=["V1", "V6", "I"],
                       statement=(f"{head} ({INCOMPLETE_BBB_FROM_MS}-{COMPLETE_BBB_FROM_MS - 1} ms) with {pattern}: "
                                  f"{side}-sided {v.INCOMPLETE_BBB}."))
    label = v.RBBB if side == "right" else v.LBBB
    return Finding(step=2, rule="qrs_duration", label=label, abnormal=True, evidence=evidence, values=values,
                   leads=["V1", "V6", "I"],
                   statement=f"{head} (>= {COMPLETE_BBB_FROM_MS} ms) with {pattern}: {label}.")


def _polarity(features: GroundingFeatures) -> dict[str, float | None]:
    nets = {}
    for lead in ("I", "II", "aVF"):
        features_of = features.leads.get(lead)
        nets[lead] = hundredths(features_of.median.qrs_net_mv) if features_of else None
    return nets


def _sign_text(nets: dict[str, float | None]) -> str:
    words = []
    for lead, net in nets.items():
        if net is not None:
            words.append(f"{lead} " + ("positive" if net > 0 else "negative" if net < 0 else "equiphasic"))
    return ", ".join(words)


_AXIS_LABELS = {"normal": None, "left": v.LEFT_AXIS_DEVIATION, "right": v.RIGHT_AXIS_DEVIATION,
                "extreme": v.EXTREME_AXIS_DEVIATION}
_AXIS_RANGES = {"normal": f"{LEFT_AXIS_BELOW_DEG} to +{RIGHT_AXIS_ABOVE_DEG}",
                "left": f"< {LEFT_AXIS_BELOW_DEG}", "right": f"> +{RIGHT_AXIS_ABOVE_DEG}",
                "extreme": f"< {EXTREME_AXIS_BELOW_DEG}"}


def axis_finding(features: GroundingFeatures, arms_swapped: bool = False) -> Finding:
    """The QRS axis class; not read when the arm electrodes may be swapped (lead I inverted, so the
    axis as recorded is the mirror image of the heart's)."""
    angle = whole(features.global_.qrs_axis_deg)
    if arms_swapped:
        recorded = f"QRS axis {angle:+d} degrees as recorded" if angle is not None else "QRS axis"
        return Finding(step=2, rule="axis", leads=["I", "II", "aVF"], evidence="axis not read",
                       statement=f"{recorded}: axis not read, lead I may be inverted by swapped arm electrodes.")
    nets = _polarity(features)
    signs = _sign_text(nets)
    if angle is not None:
        kind = axis_class(angle)
        label = _AXIS_LABELS[kind]
        conclusion = label or "normal axis"
        detail = _AXIS_RANGES[kind] + (f"; {signs}" if signs else "")
        return Finding(step=2, rule="axis", label=label, abnormal=label is not None, leads=["I", "II", "aVF"],
                       statement=f"QRS axis {angle:+d} degrees ({detail}): {conclusion}.",
                       evidence=f"qrs axis {angle:+d} degrees", values={"qrs_axis_deg": float(angle), **nets})
    kind_from_signs = axis_class_from_signs(nets["I"], nets["II"], nets["aVF"])
    if kind_from_signs is None:
        return not_measurable(2, "axis", "QRS axis", dict(nets))
    label = _AXIS_LABELS[kind_from_signs]
    conclusion = label or "normal axis"
    return Finding(step=2, rule="axis", label=label, abnormal=label is not None, leads=["I", "II", "aVF"],
                   statement=f"QRS axis angle not measured; QRS polarity {signs}: {conclusion}.",
                   evidence=conclusion, values=dict(nets))


def step2(features: GroundingFeatures, atrial_fibrillation: bool = False,
          wide_complex_tachycardia: bool = False, arms_swapped: bool = False) -> list[Finding]:
    return [pr_finding(features, atrial_fibrillation, wide_complex_tachycardia),
            qrs_finding(features, wide_complex_tachycardia),
            axis_finding(features, arms_swapped)]
