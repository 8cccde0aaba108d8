"""Step 4 of the protocol: ischaemia, infarction and mimics.

    st_elevation_finding   ST elevation by the fourth universal definition of myocardial
                           infarction (2018): >= 0.1 mV in every lead but V2-V3; in V2-V3
                           >= 0.2 mV for men of 40 or more, >= 0.25 mV for men under 40 and
                           >= 0.15 mV for women (the lowest, 0.15 mV, when the sex is unknown,
                           so a draft errs towards review); in >= 2 leads of one territory
                           -> "st elevation (territory)". Measured at the J point AND 60 ms
                           later (the lower of the two): an elevation gone by J + 60 ms is a
                           J point on the QRS slur or a J wave, not an elevated ST segment
    st_depression_finding  horizontal or downsloping ST (J + 60 ms) <= -0.1 mV in >= 2 leads of
                           one territory (aVR excluded) -> "st depression (territory)"; an
                           upsloping ST (junctional depression, as at fast rates) is not counted
    q_wave_finding         pathological Q waves by the same definition: Q >= 30 ms wide AND
                           >= 0.1 mV deep, or a QS complex >= 0.1 mV deep, in I, II, III, aVL,
                           aVF, V4-V6; in V2-V3 a Q >= 20 ms or such a QS; never aVR or V1; in >= 2 leads of one
                           territory (so never III alone, and a QS in V1-V2 counts only with
                           another lead: V1 never counts)

Secondary changes are not read as ischaemia: with a QRS of 120 ms or more (bundle branch
block, pacing, intraventricular delay) ST deviation discordant to the QRS (opposite its net
direction) is the expected secondary change and only concordant deviation counts (the first
two Sgarbossa criteria); Q waves are not read under a left-sided or non-specific wide QRS
(a right bundle branch block leaves the initial forces, and so the Q waves, readable); in a
wide complex tachycardia the ST segment is not assessed at all.

The territories (inferior II/III/aVF, lateral I/aVL/V5/V6, septal-anterior V1-V4) are the
contiguous lead groups of the ECG-R1 protocol; aVR belongs to none. Other mimics (LVH strain,
reciprocal depression) are weighed in step 6.
"""

from __future__ import annotations

from ingest.ecg import STANDARD_LEADS, Demographics, Sex
from ingest.measure.measured import GroundingFeatures
from ingest.protocol import vocabulary as v
from ingest.protocol.conduction import COMPLETE_BBB_FROM_MS, bundle_branch_pattern
from ingest.protocol.findings import Finding, hundredths, mv, not_measurable, signed_mv, whole

# Fourth universal definition of MI: ST elevation at the J point.
ST_ELEVATION_MV = 0.1  # every lead but V2-V3
ST_ELEVATION_V2_V3_MEN_MV = 0.2  # men of 40 or more
ST_ELEVATION_V2_V3_YOUNG_MEN_MV = 0.25  # men under 40
ST_ELEVATION_V2_V3_WOMEN_MV = 0.15  # women, and when the sex is unknown
YOUNG_MEN_BELOW_YEARS = 40
V2_V3 = frozenset({"V2", "V3"})
ST_DEPRESSION_MV = 0.1
MIN_CONTIGUOUS_LEADS = 2
# Pathological Q waves (same definition): wide AND deep, or QS; in V2-V3 any Q from 20 ms.
PATHOLOGICAL_Q_FROM_MS = 30
PATHOLOGICAL_Q_FROM_MV = 0.1
PATHOLOGICAL_Q_V2_V3_FROM_MS = 20
Q_EXCLUDED_LEADS = frozenset({"aVR", "V1"})
# A complex labelled QS whose initial r reaches this is an rS with a small r, not a QS.
QS_R_BELOW_MV = 0.05

PRECORDIAL_LEADS = frozenset(STANDARD_LEADS[6:])


def st_levels(features: GroundingFeatures) -> dict[str, float]:
    """ST level at J + 60 ms (mV, rounded as written) per measured lead, in the standard lead order."""
    levels = {}
    for lead in STANDARD_LEADS:
        value = features.st_deviation_mv.get(lead)
        if value is None and lead in features.leads:
            value = features.leads[lead].median.st_level_mv
        if value is not None:
            levels[lead] = hundredths(value)
    return levels


def elevation_levels(features: GroundingFeatures) -> dict[str, float]:
    """The ST elevation per lead (mV, as written): the lower of the levels at J and at J + 60 ms.

    The definition measures at the J point; an elevation that is gone 60 ms later is a J point
    on the slur of the QRS or a J wave (early repolarisation), not an elevated ST segment.
    Where the J point was not measured, the level at J + 60 ms alone.
    """
    levels = st_levels(features)
    for lead in STANDARD_LEADS:
        features_of = features.leads.get(lead)
        if lead in levels and features_of is not None and features_of.median.st_j_mv is not None:
            levels[lead] = min(levels[lead], hundredths(features_of.median.st_j_mv))
    return levels


def st_elevation_threshold(lead: str, sex: Sex | None = None, age_years: int | None = None) -> float:
    if lead not in V2_V3:
        return ST_ELEVATION_MV
    if sex == Sex.MALE:
        young = age_years is not None and age_years < YOUNG_MEN_BELOW_YEARS
        return ST_ELEVATION_V2_V3_YOUNG_MEN_MV if young else ST_ELEVATION_V2_V3_MEN_MV
    return ST_ELEVATION_V2_V3_WOMEN_MV


def st_elevated(lead: str, level: float, sex: Sex | None = None, age_years: int | None = None) -> bool:
    return level >= st_elevation_threshold(lead, sex, age_years)


def st_depressed(level: float, form: str | None = None) -> bool:
    return level <= -ST_DEPRESSION_MV and form != "upsloping"


def pathological_q(q_dur_ms: int | None, q_amp_mv: float | None, lead: str = "II", qs: bool = False) -> bool:
    """One lead's Q wave against the definition (the lead's name decides the V2-V3 and excluded cases).

    qs: the complex is a QS; q_amp_mv is then its depth, which must reach PATHOLOGICAL_Q_FROM_MV
    (a QS of a few hundredths of a millivolt is a lead perpendicular to the QRS, not a scar).
    """
    if lead in Q_EXCLUDED_LEADS:
        return False
    if qs:
        return q_amp_mv is not None and q_amp_mv >= PATHOLOGICAL_Q_FROM_MV
    if lead in V2_V3:
        return q_dur_ms is not None and q_dur_ms >= PATHOLOGICAL_Q_V2_V3_FROM_MS and bool(q_amp_mv)
    return (q_dur_ms is not None and q_dur_ms >= PATHOLOGICAL_Q_FROM_MS
            and q_amp_mv is not None and q_amp_mv >= PATHOLOGICAL_Q_FROM_MV)


def territories_with(leads: list[str]) -> dict[str, list[str]]:
    """The territories in which at least MIN_CONTIGUOUS_LEADS of `leads` lie, with those leads."""
    found = {}
    for territory, members in v.TERRITORIES.items():
        inside = [lead for lead in members if lead in leads]
        if len(inside) >= MIN_CONTIGUOUS_LEADS:
            found[territory] = inside
    return found


def elevated_leads(levels: dict[str, float], net_qrs: dict[str, float | None], wide: bool,
                   sex: Sex | None = None, age_years: int | None = None) -> tuple[list[str], list[str]]:
    """(leads with ST elevation that counts, leads whose elevation is secondary to a wide QRS).

    levels: ST elevation per lead (`elevation_levels`); net_qrs: the net QRS per lead; wide: QRS >= 120 ms.
    """
    elevated = [lead for lead, level in levels.items() if st_elevated(lead, level, sex, age_years)]
    if not wide:
        return elevated, []
    counted = [lead for lead in elevated if (net_qrs.get(lead) or 0.0) > 0]
    return counted, [lead for lead in elevated if lead not in counted]


def depressed_leads(levels: dict[str, float], forms: dict[str, str | None], net_qrs: dict[str, float | None],
                    wide: bool) -> list[str]:
    """Leads (aVR excluded) with ST depression that counts: concordant only under a wide QRS."""
    depressed = [lead for lead, level in levels.items() if lead != "aVR" and st_depressed(level, forms.get(lead))]
    return [lead for lead in depressed if not wide or (net_qrs.get(lead) or 0.0) < 0]


def q_wave_territories(q_by_lead: dict[str, tuple[int | None, float | None, bool]]) -> dict[str, list[str]]:
    """The territories with pathological Q waves; q_by_lead: lead -> (Q ms, Q mV, QS complex)."""
    return territories_with([lead for lead, (width, depth, qs) in q_by_lead.items()
                             if pathological_q(width, depth, lead, qs)])


def wide_qrs(features: GroundingFeatures) -> bool:
    qrs = whole(features.global_.qrs_ms)
    return qrs is not None and qrs >= COMPLETE_BBB_FROM_MS


def _qrs_net(features: GroundingFeatures, lead: str) -> float | None:
    features_of = features.leads.get(lead)
    return features_of.median.qrs_net_mv if features_of is not None else None


def net_qrs(features: GroundingFeatures) -> dict[str, float | None]:
    return {lead: features.leads[lead].median.qrs_net_mv for lead in features.leads}


def _st_form(features: GroundingFeatures, lead: str) -> str | None:
    return features.leads[lead].median.st_form if lead in features.leads else None


def _form_text(features: GroundingFeatures, lead: str) -> str:
    form = _st_form(features, lead)
    return f", {form}" if form else ""


def _demographics(demographics: Demographics | None) -> tuple[Sex | None, int | None]:
    if demographics is None:
        return None, None
    return demographics.sex, demographics.age_years


def _elevation_limits(sex: Sex | None, age_years: int | None) -> str:
    v2_v3 = st_elevation_threshold("V2", sex, age_years)
    who = {Sex.MALE: "men" + (f" under {YOUNG_MEN_BELOW_YEARS}" if v2_v3 == ST_ELEVATION_V2_V3_YOUNG_MEN_MV
                              else f" of {YOUNG_MEN_BELOW_YEARS} or more"),
           Sex.FEMALE: "women"}.get(sex, "sex unknown")  # type: ignore[arg-type]
    return f">= {mv(ST_ELEVATION_MV)}, V2-V3 >= {mv(v2_v3)} ({who})"


def st_elevation_finding(features: GroundingFeatures, demographics: Demographics | None = None) -> list[Finding]:
    levels = elevation_levels(features)
    if not levels:
        return [not_measurable(4, "st_elevation", "ST segments")]
    sex, age = _demographics(demographics)
    limits = _elevation_limits(sex, age)
    wide = wide_qrs(features)
    elevated, secondary = elevated_leads(levels, net_qrs(features), wide, sex, age)
    territories = territories_with(elevated)
    if not territories:
        highest = max(levels, key=lambda lead: levels[lead])
        isolated = f"; isolated in {', '.join(elevated)}" if elevated else ""
        discordant = (f"; discordant to the wide QRS (secondary) in {', '.join(secondary)}" if secondary else "")
        return [Finding(step=4, rule="st_elevation", evidence="no st elevation", values={"st_max_mv": levels[highest]},
                        statement=(f"No ST elevation at J and J + 60 ms in {MIN_CONTIGUOUS_LEADS} contiguous leads "
                                   f"({limits}); highest {signed_mv(levels[highest])} in {highest}"
                                   f"{isolated}{discordant}."))]
    findings = []
    concordance = "concordant with the wide QRS, " if wide else ""
    for territory, leads in territories.items():
        label = v.territory_label(v.ST_ELEVATION, territory)
        cited = ", ".join(f"{lead} ({signed_mv(levels[lead])}{_form_text(features, lead)})" for lead in leads)
        findings.append(Finding(
            step=4, rule="st_elevation", label=label, abnormal=True, leads=leads,
            values={f"st_{lead}_mv": levels[lead] for lead in leads},
            statement=(f"ST elevation at J and J + 60 ms in {cited} ({concordance}contiguous {territory} leads; "
                       f"{limits}): {label}."),
            evidence=label))
    return findings


def st_depression_finding(features: GroundingFeatures) -> list[Finding]:
    levels = st_levels(features)
    if not levels:
        return [not_measurable(4, "st_depression", "ST depression")]
    forms = {lead: _st_form(features, lead) for lead in levels}
    territories = territories_with(depressed_leads(levels, forms, net_qrs(features), wide_qrs(features)))
    limit = f"<= -{mv(ST_DEPRESSION_MV)}, horizontal or downsloping"
    if not territories:
        lowest = min(levels, key=lambda lead: levels[lead])
        secondary = "; discordant ST-T of the wide QRS is secondary" if wide_qrs(features) else ""
        return [Finding(step=4, rule="st_depression", evidence="no st depression", values={"st_min_mv": levels[lowest]},
                        statement=(f"No ST depression in {MIN_CONTIGUOUS_LEADS} contiguous leads ({limit}); lowest "
                                   f"ST level {signed_mv(levels[lowest])} in {lowest}{secondary}."))]
    findings = []
    for territory, leads in territories.items():
        label = v.territory_label(v.ST_DEPRESSION, territory)
        cited = ", ".join(f"{lead} ({signed_mv(levels[lead])}{_form_text(features, lead)})" for lead in leads)
        findings.append(Finding(
            step=4, rule="st_depression", label=label, abnormal=True, leads=leads,
            values={f"st_{lead}_mv": levels[lead] for lead in leads},
            statement=f"ST depression in {cited} (contiguous {territory} leads; {limit}): {label}.",
            evidence=label))
    return findings


def _q_readable(features: GroundingFeatures) -> bool:
    """Q waves are read unless the QRS is wide with a left-sided or no bundle branch pattern."""
    return not wide_qrs(features) or bundle_branch_pattern(features) == "right"


def q_wave_finding(features: GroundingFeatures) -> Finding:
    measured: dict[str, tuple[int | None, float | None, bool]] = {}
    for lead in STANDARD_LEADS:
        if lead in features.leads:
            lead_features = features.leads[lead]
            median = lead_features.median
            qs = lead_features.qrs_morphology == "QS" and (median.r_amp_mv or 0.0) < QS_R_BELOW_MV
            width, depth = whole(median.q_dur_ms), hundredths(median.q_amp_mv)
            if qs:  # the depth of a QS is its one deflection's, whether measured as Q, S or below the r
                below_r = (median.qrs_amp_mv or 0.0) - (median.r_amp_mv or 0.0)
                depth = hundredths(max(median.q_amp_mv or 0.0, median.s_amp_mv or 0.0, below_r))
            if width is not None or depth is not None:
                measured[lead] = (width, depth, qs)
    if not measured:
        return not_measurable(4, "q_waves", "Q waves")
    if not _q_readable(features):
        return Finding(step=4, rule="q_waves", evidence="q waves not assessed",
                       statement=(f"Q waves not assessed: a QRS of {whole(features.global_.qrs_ms)} ms without a "
                                  "right bundle branch pattern changes the initial forces."))
    limits = (f">= {PATHOLOGICAL_Q_FROM_MS} ms and >= {mv(PATHOLOGICAL_Q_FROM_MV)} deep, or a QS "
              f">= {mv(PATHOLOGICAL_Q_FROM_MV)} deep; in V2-V3 >= {PATHOLOGICAL_Q_V2_V3_FROM_MS} ms; not aVR or V1")
    territories = q_wave_territories(measured)
    if not territories:
        return Finding(step=4, rule="q_waves", evidence="no pathological q waves",
                       statement=f"No pathological Q waves ({limits}) in {MIN_CONTIGUOUS_LEADS} contiguous leads.")

    def cite(lead: str) -> str:
        width, depth, qs = measured[lead]
        if qs:
            return f"{lead} (QS, {'?' if depth is None else mv(depth)})"
        return f"{lead} (Q {'?' if width is None else width} ms, {'?' if depth is None else mv(depth)})"

    leads = [lead for members in territories.values() for lead in members]
    where = "; ".join(f"{territory}: {', '.join(cite(lead) for lead in members)}"
                      for territory, members in territories.items())
    return Finding(step=4, rule="q_waves", label=v.PATHOLOGICAL_Q_WAVES, abnormal=True, leads=leads,
                   values={f"q_{lead}_ms": None if measured[lead][0] is None else float(measured[lead][0])
                           for lead in leads},
                   statement=f"Q waves ({limits}) in contiguous leads ({where}): {v.PATHOLOGICAL_Q_WAVES}.",
                   evidence=v.PATHOLOGICAL_Q_WAVES)


def step4(features: GroundingFeatures, demographics: Demographics | None = None,
          wide_complex_tachycardia: bool = False) -> list[Finding]:
    if wide_complex_tachycardia:
        return [Finding(step=4, rule="st_elevation", evidence="st segments not assessed",
                        statement="ST segments not assessed in a wide complex tachycardia."),
                q_wave_finding(features)]
    return [*st_elevation_finding(features, demographics), *st_depression_finding(features),
            q_wave_finding(features)]
