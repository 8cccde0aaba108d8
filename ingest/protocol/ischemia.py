"""Step 4 of the protocol: ischaemia, infarction and mimics.

    st_elevation_finding   ST (J + 60 ms) >= 0.1 mV in limb leads or >= 0.2 mV in precordial
                           leads, in >= 2 leads of one territory -> "st elevation (territory)"
    st_depression_finding  ST <= -0.1 mV in >= 2 leads of one territory -> "st depression (territory)"
    q_wave_finding         Q > 30 ms wide or > 0.1 mV deep in >= 2 leads of one territory

The territories (inferior II/III/aVF, lateral I/aVL/V5/V6, septal-anterior V1-V4) are the
contiguous lead groups of the ECG-R1 protocol; aVR belongs to none. Mimics (a bundle branch
block or LVH explaining ST changes, reciprocal depression) are weighed in step 6.
"""

from __future__ import annotations

from ingest.ecg import STANDARD_LEADS
from ingest.measure.measured import GroundingFeatures
from ingest.protocol import vocabulary as v
from ingest.protocol.findings import Finding, hundredths, mv, not_measurable, signed_mv, whole

ST_ELEVATION_LIMB_MV = 0.1
ST_ELEVATION_PRECORDIAL_MV = 0.2
ST_DEPRESSION_MV = 0.1
MIN_CONTIGUOUS_LEADS = 2
PATHOLOGICAL_Q_WIDER_THAN_MS = 30
PATHOLOGICAL_Q_DEEPER_THAN_MV = 0.1

PRECORDIAL_LEADS = frozenset(STANDARD_LEADS[6:])


def st_levels(features: GroundingFeatures) -> dict[str, float]:
    """ST level (mV, rounded as written) per measured lead, in the standard lead order."""
    levels = {}
    for lead in STANDARD_LEADS:
        value = features.st_deviation_mv.get(lead)
        if value is None and lead in features.leads:
            value = features.leads[lead].median.st_level_mv
        if value is not None:
            levels[lead] = hundredths(value)
    return levels


def st_elevation_threshold(lead: str) -> float:
    return ST_ELEVATION_PRECORDIAL_MV if lead in PRECORDIAL_LEADS else ST_ELEVATION_LIMB_MV


def st_elevated(lead: str, level: float) -> bool:
    return level >= st_elevation_threshold(lead)


def st_depressed(level: float) -> bool:
    return level <= -ST_DEPRESSION_MV


def pathological_q(q_dur_ms: int | None, q_amp_mv: float | None) -> bool:
    return ((q_dur_ms is not None and q_dur_ms > PATHOLOGICAL_Q_WIDER_THAN_MS)
            or (q_amp_mv is not None and q_amp_mv > PATHOLOGICAL_Q_DEEPER_THAN_MV))


def territories_with(leads: list[str]) -> dict[str, list[str]]:
    """The territories in which at least MIN_CONTIGUOUS_LEADS of `leads` lie, with those leads."""
    found = {}
    for territory, members in v.TERRITORIES.items():
        inside = [lead for lead in members if lead in leads]
        if len(inside) >= MIN_CONTIGUOUS_LEADS:
            found[territory] = inside
    return found


def _st_form(features: GroundingFeatures, lead: str) -> str:
    form = features.leads[lead].median.st_form if lead in features.leads else None
    return f", {form}" if form else ""


def st_elevation_finding(features: GroundingFeatures) -> list[Finding]:
    levels = st_levels(features)
    if not levels:
        return [not_measurable(4, "st_elevation", "ST segments")]
    elevated = [lead for lead, level in levels.items() if st_elevated(lead, level)]
    limits = f">= {mv(ST_ELEVATION_LIMB_MV)} limb, >= {mv(ST_ELEVATION_PRECORDIAL_MV)} precordial"
    territories = territories_with(elevated)
    if not territories:
        highest = max(levels, key=lambda lead: levels[lead])
        isolated = f"; isolated in {', '.join(elevated)}" if elevated else ""
        return [Finding(step=4, rule="st_elevation", evidence="no st elevation", values={"st_max_mv": levels[highest]},
                        statement=(f"No ST elevation in {MIN_CONTIGUOUS_LEADS} contiguous leads ({limits}); highest "
                                   f"ST level {signed_mv(levels[highest])} in {highest}{isolated}."))]
    findings = []
    for territory, leads in territories.items():
        label = v.territory_label(v.ST_ELEVATION, territory)
        cited = ", ".join(f"{lead} ({signed_mv(levels[lead])}{_st_form(features, lead)})" for lead in leads)
        findings.append(Finding(
            step=4, rule="st_elevation", label=label, abnormal=True, leads=leads,
            values={f"st_{lead}_mv": levels[lead] for lead in leads},
            statement=f"ST elevation in {cited} (contiguous {territory} leads; {limits}): {label}.",
            evidence=label))
    return findings


def st_depression_finding(features: GroundingFeatures) -> list[Finding]:
    levels = st_levels(features)
    if not levels:
        return [not_measurable(4, "st_depression", "ST depression")]
    depressed = [lead for lead, level in levels.items() if st_depressed(level) and lead != "aVR"]
    territories = territories_with(depressed)
    if not territories:
        lowest = min(levels, key=lambda lead: levels[lead])
        return [Finding(step=4, rule="st_depression", evidence="no st depression", values={"st_min_mv": levels[lowest]},
                        statement=(f"No ST depression in {MIN_CONTIGUOUS_LEADS} contiguous leads "
                                   f"(<= -{mv(ST_DEPRESSION_MV)}); lowest ST level {signed_mv(levels[lowest])} "
                                   f"in {lowest}."))]
    findings = []
    for territory, leads in territories.items():
        label = v.territory_label(v.ST_DEPRESSION, territory)
        cited = ", ".join(f"{lead} ({signed_mv(levels[lead])}{_st_form(features, lead)})" for lead in leads)
        findings.append(Finding(
            step=4, rule="st_depression", label=label, abnormal=True, leads=leads,
            values={f"st_{lead}_mv": levels[lead] for lead in leads},
            statement=f"ST depression in {cited} (contiguous {territory} leads; <= -{mv(ST_DEPRESSION_MV)}): {label}.",
            evidence=label))
    return findings


def q_wave_finding(features: GroundingFeatures) -> Finding:
    measured: dict[str, tuple[int | None, float | None]] = {}
    for lead in STANDARD_LEADS:
        if lead in features.leads:
            median = features.leads[lead].median
            width, depth = whole(median.q_dur_ms), hundredths(median.q_amp_mv)
            if width is not None or depth is not None:
                measured[lead] = (width, depth)
    if not measured:
        return not_measurable(4, "q_waves", "Q waves")
    limits = f"> {PATHOLOGICAL_Q_WIDER_THAN_MS} ms or > {mv(PATHOLOGICAL_Q_DEEPER_THAN_MV)} deep"
    pathological = [lead for lead, (width, depth) in measured.items() if pathological_q(width, depth)]
    territories = territories_with(pathological)
    if not territories:
        return Finding(step=4, rule="q_waves", evidence="no pathological q waves",
                       statement=f"No pathological Q waves ({limits}) in {MIN_CONTIGUOUS_LEADS} contiguous leads.")

    def cite(lead: str) -> str:
        width, depth = measured[lead]
        return f"{lead} (Q {'?' if width is None else width} ms, {'?' if depth is None else mv(depth)})"

    leads = [lead for members in territories.values() for lead in members]
    where = "; ".join(f"{territory}: {', '.join(cite(lead) for lead in members)}"
                      for territory, members in territories.items())
    return Finding(step=4, rule="q_waves", label=v.PATHOLOGICAL_Q_WAVES, abnormal=True, leads=leads,
                   values={f"q_{lead}_ms": None if measured[lead][0] is None else float(measured[lead][0])
                           for lead in leads},
                   statement=f"Q waves {limits} in contiguous leads ({where}): {v.PATHOLOGICAL_Q_WAVES}.",
                   evidence=v.PATHOLOGICAL_Q_WAVES)


def step4(features: GroundingFeatures) -> list[Finding]:
    return [*st_elevation_finding(features), *st_depression_finding(features), q_wave_finding(features)]
