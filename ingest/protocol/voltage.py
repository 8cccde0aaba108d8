"""Step 3 of the protocol: chamber hypertrophy and voltage (10 mm = 1 mV on standard paper).

    lvh_finding          Sokolow-Lyon S(V1) + R(V5 or V6) > 3.5 mV, R(I) > 1.5 mV, R(aVL) > 1.1 mV
    low_voltage_finding  every limb lead's QRS < 0.5 mV, or every precordial lead's < 1.0 mV
    r_progression_finding  R in V3 < 0.3 mV that does not grow from V2 or stays < 0.3 mV in V4
                         (a small R in V3 before a tall one in V4 is a late normal transition)
    atrial_finding       P in II > 0.25 mV (right); notched P in II > 120 ms, or a terminal
                         negative P in V1 >= 0.1 mV deep (left): the negative part of a biphasic
                         P, or of a P negative throughout that is at least 80 ms wide (its
                         terminal half then >= 40 ms: the P terminal force criterion, AHA/ACCF/HRS
                         2009 part V)
"""

from __future__ import annotations

from ingest.measure.measured import GroundingFeatures, LeadFeatures
from ingest.protocol import vocabulary as v
from ingest.protocol.findings import Finding, hundredths, mv, not_measurable, whole

SOKOLOW_LYON_ABOVE_MV = 3.5
R_I_ABOVE_MV = 1.5
R_AVL_ABOVE_MV = 1.1
LOW_LIMB_QRS_BELOW_MV = 0.5
LOW_PRECORDIAL_QRS_BELOW_MV = 1.0
POOR_R_PROGRESSION_V3_BELOW_MV = 0.3
RAA_P_II_ABOVE_MV = 0.25
LAA_P_II_ABOVE_MS = 120
LAA_V1_TERMINAL_P_FROM_MV = 0.1
LAA_V1_TERMINAL_P_FROM_MS = 40


def sokolow_lyon_mv(s_v1: float | None, r_v5: float | None, r_v6: float | None) -> float | None:
    lateral = [r for r in (r_v5, r_v6) if r is not None]
    if s_v1 is None or not lateral:
        return None
    return hundredths(s_v1 + max(lateral))


def lvh_criteria(sokolow: float | None, r_i: float | None, r_avl: float | None) -> list[str]:
    """The names of the voltage criteria met (an empty list: none met, or none measurable)."""
    met = []
    if sokolow is not None and sokolow > SOKOLOW_LYON_ABOVE_MV:
        met.append("Sokolow-Lyon")
    if r_i is not None and r_i > R_I_ABOVE_MV:
        met.append("R(I)")
    if r_avl is not None and r_avl > R_AVL_ABOVE_MV:
        met.append("R(aVL)")
    return met


def low_voltage(limb_max: float | None, precordial_max: float | None) -> list[str]:
    """Where the QRS voltage is low: "limb" and/or "precordial" (empty when normal or unmeasured)."""
    low = []
    if limb_max is not None and limb_max < LOW_LIMB_QRS_BELOW_MV:
        low.append("limb")
    if precordial_max is not None and precordial_max < LOW_PRECORDIAL_QRS_BELOW_MV:
        low.append("precordial")
    return low


def lvh_finding(features: GroundingFeatures) -> Finding:
    volts = features.voltages
    s_v1, r_v5, r_v6, r_i, r_avl = (hundredths(x) for x in (volts.s_v1_mv, volts.r_v5_mv, volts.r_v6_mv,
                                                             volts.r_i_mv, volts.r_avl_mv))
    sokolow = sokolow_lyon_mv(s_v1, r_v5, r_v6)
    values: dict[str, float | str | None] = {"sokolow_lyon_mv": sokolow, "r_i_mv": r_i, "r_avl_mv": r_avl}
    if sokolow is None and r_i is None and r_avl is None:
        return not_measurable(3, "lvh", "LVH voltage", values)
    lateral = "V5" if r_v6 is None or (r_v5 is not None and r_v5 >= r_v6) else "V6"
    parts = [
        ("Sokolow-Lyon", f"S(V1) + R({lateral}) ", sokolow, SOKOLOW_LYON_ABOVE_MV),
        ("R(I)", "R(I) ", r_i, R_I_ABOVE_MV),
        ("R(aVL)", "R(aVL) ", r_avl, R_AVL_ABOVE_MV),
    ]
    met = lvh_criteria(sokolow, r_i, r_avl)
    cited = []
    for name, head, value, limit in parts:
        if value is None:
            cited.append(f"{head}not measurable")
        else:
            cited.append(f"{head}{mv(value)} ({'>' if name in met else '<='} {mv(limit)})")
    if met:
        return Finding(step=3, rule="lvh", label=v.LVH, abnormal=True, values=values, leads=["V1", lateral, "I", "aVL"],
                       statement=f"{'; '.join(cited)}: {v.LVH} by voltage ({', '.join(met)}).",
                       evidence=v.LVH)
    return Finding(step=3, rule="lvh", values=values, leads=["V1", lateral, "I", "aVL"],
                   statement=f"{'; '.join(cited)}: no voltage criterion for {v.LVH} met.",
                   evidence="no voltage criterion for left ventricular hypertrophy")


def low_voltage_finding(features: GroundingFeatures) -> Finding:
    limb, precordial = (hundredths(x) for x in (features.voltages.limb_qrs_max_mv,
                                                 features.voltages.precordial_qrs_max_mv))
    values: dict[str, float | str | None] = {"limb_qrs_max_mv": limb, "precordial_qrs_max_mv": precordial}
    if limb is None and precordial is None:
        return not_measurable(3, "low_voltage", "QRS voltage", values)
    low = low_voltage(limb, precordial)
    cited = []
    for name, value, limit in (("limb", limb, LOW_LIMB_QRS_BELOW_MV),
                               ("precordial", precordial, LOW_PRECORDIAL_QRS_BELOW_MV)):
        if value is None:
            cited.append(f"{name} leads not measurable")
        else:
            cited.append(f"{name} leads {mv(value)} ({'<' if name in low else '>='} {mv(limit)})")
    head = "Largest QRS amplitude: " + ", ".join(cited)
    if low:
        return Finding(step=3, rule="low_voltage", label=v.LOW_QRS_VOLTAGE, abnormal=True, values=values,
                       statement=f"{head}: {v.LOW_QRS_VOLTAGE} ({' and '.join(low)} leads).",
                       evidence=v.LOW_QRS_VOLTAGE)
    return Finding(step=3, rule="low_voltage", values=values, statement=f"{head}: no low voltage.",
                   evidence="no low voltage")


def poor_r_progression(r_v2: float | None, r_v3: float | None, r_v4: float | None) -> bool:
    """R in V3 under 0.3 mV that does not grow from V2 (flat or reversed), or is still under 0.3 mV in V4.

    A small R in V3 followed by a tall one in V4 is a late but normal transition.
    """
    if r_v3 is None or r_v3 >= POOR_R_PROGRESSION_V3_BELOW_MV:
        return False
    no_growth = r_v2 is not None and r_v3 <= r_v2
    late = r_v4 is not None and r_v4 < POOR_R_PROGRESSION_V3_BELOW_MV
    return no_growth or late


def r_progression_finding(features: GroundingFeatures) -> Finding:
    r_v2, r_v3, r_v4 = (hundredths(features.leads[lead].median.r_amp_mv) if lead in features.leads else None
                        for lead in ("V2", "V3", "V4"))
    if r_v3 is None:
        return not_measurable(3, "r_progression", "R wave in V3")
    values: dict[str, float | str | None] = {"r_v2_mv": r_v2, "r_v3_mv": r_v3, "r_v4_mv": r_v4}
    cited = ", ".join(f"{lead} {'not measured' if r is None else mv(r)}"
                      for lead, r in (("V2", r_v2), ("V3", r_v3), ("V4", r_v4)))
    if poor_r_progression(r_v2, r_v3, r_v4):
        return Finding(step=3, rule="r_progression", label=v.POOR_R_PROGRESSION, abnormal=True,
                       leads=["V2", "V3", "V4"], values=values, evidence=v.POOR_R_PROGRESSION,
                       statement=(f"R wave {cited} (V3 < {mv(POOR_R_PROGRESSION_V3_BELOW_MV)}, not growing from V2 "
                                  f"or still small in V4): {v.POOR_R_PROGRESSION}."))
    return Finding(step=3, rule="r_progression", leads=["V2", "V3", "V4"], values=values,
                   evidence="normal r wave progression",
                   statement=f"R wave {cited}: normal R wave progression.")


def v1_negative_p_mv(lead_v1: LeadFeatures | None) -> float | None:
    """Depth (mV, as written) of V1's terminal negative P: the negative part of a biphasic P, or a P
    negative throughout whose terminal half is at least LAA_V1_TERMINAL_P_FROM_MS wide (a P of twice
    that); None when V1's P was not measured."""
    if lead_v1 is None:
        return None
    terminal, amplitude, duration = (lead_v1.p_terminal_negative_mv, lead_v1.median.p_amp_mv,
                                     lead_v1.median.p_dur_ms)
    if terminal is None and amplitude is None:
        return None
    negative_throughout = -(amplitude or 0.0) if (duration or 0.0) >= 2 * LAA_V1_TERMINAL_P_FROM_MS else 0.0
    return hundredths(max(terminal or 0.0, negative_throughout))


def atrial_finding(features: GroundingFeatures, p_waves: bool = True) -> Finding:
    """Atrial abnormality from the P wave's size and shape. Without P waves (`p_waves` False: atrial
    fibrillation or flutter, a wide complex tachycardia) a P-like wave the median beat holds is no
    P wave, and its size says nothing of the atria."""
    if not p_waves:
        return Finding(step=3, rule="atria", evidence="p wave morphology not applicable",
                       statement="P wave morphology not assessed: no sinus P waves.")
    lead_ii, lead_v1 = features.leads.get("II"), features.leads.get("V1")
    p_amp = hundredths(lead_ii.median.p_amp_mv) if lead_ii else None
    p_dur = whole(lead_ii.median.p_dur_ms) if lead_ii else None
    notched = lead_ii.p_notched if lead_ii else None
    terminal = v1_negative_p_mv(lead_v1)
    values: dict[str, float | str | None] = {"p_ii_mv": p_amp, "p_ii_ms": None if p_dur is None else float(p_dur),
                                             "p_v1_terminal_mv": terminal}
    if p_amp is None and p_dur is None and terminal is None:
        return not_measurable(3, "atria", "P wave morphology", values)
    labels, cited = [], []
    if p_amp is not None:
        right = p_amp > RAA_P_II_ABOVE_MV
        cited.append(f"P in II {mv(p_amp)} ({'>' if right else '<='} {mv(RAA_P_II_ABOVE_MV)})")
        if right:
            labels.append(v.RIGHT_ATRIAL_ABNORMALITY)
    left_ii = p_dur is not None and p_dur > LAA_P_II_ABOVE_MS and bool(notched)
    if p_dur is not None:
        shape = "notched" if notched else "not notched"
        cited.append(f"P in II {p_dur} ms wide, {shape} ({'>' if p_dur > LAA_P_II_ABOVE_MS else '<='} "
                     f"{LAA_P_II_ABOVE_MS} ms)")
    left_v1 = terminal is not None and terminal >= LAA_V1_TERMINAL_P_FROM_MV
    if terminal is not None:
        cited.append(f"negative P in V1 (terminal or throughout) {mv(terminal)} ({'>=' if left_v1 else '<'} "
                     f"{mv(LAA_V1_TERMINAL_P_FROM_MV)})")
    if left_ii or left_v1:
        labels.append(v.LEFT_ATRIAL_ABNORMALITY)
    if not labels:
        return Finding(step=3, rule="atria", values=values, leads=["II", "V1"], evidence="no atrial abnormality",
                       statement=f"{'; '.join(cited)}: no atrial abnormality.")
    return Finding(step=3, rule="atria", label=labels[0], labels=labels, abnormal=True, values=values,
                   leads=["II", "V1"], evidence=labels[0],
                   statement=f"{'; '.join(cited)}: {' and '.join(labels)}.")


def step3(features: GroundingFeatures, p_waves: bool = True, wide_complex_tachycardia: bool = False) -> list[Finding]:
    # The voltage criteria of hypertrophy hold for beats conducted down the bundle branches; a wide complex
    # tachycardia's complexes are not, and their size says nothing of the wall (as its ST segments in step 4).
    lvh = Finding(step=3, rule="lvh", evidence="lvh voltage not assessed",
                  statement="LVH voltage criteria not assessed in a wide complex tachycardia.") \
        if wide_complex_tachycardia else lvh_finding(features)
    return [lvh, low_voltage_finding(features), r_progression_finding(features), atrial_finding(features, p_waves)]
