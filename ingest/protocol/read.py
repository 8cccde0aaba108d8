"""The protocol read: measured features in, an ECG-R1-format reading out.

    protocol_read(features, demographics=None) -> ProtocolRead

Steps 1-5 are the rules of `rhythm`, `conduction`, `voltage`, `ischemia` and
`repolarisation`; step 6 weighs them together (what is abnormal, what is critical, which
ST or Q changes a conduction defect or LVH may explain, what could not be measured).
"normal ecg" is written only when nothing abnormal was found AND the key values (rate,
rhythm, PR, QRS, axis, ST, QTc) were measured. The reading is deterministic: the same
features always give the same text.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ingest.ecg import Demographics, Sex
from ingest.measure.measured import GroundingFeatures
from ingest.protocol import vocabulary as v
from ingest.protocol.beat_pattern import rr_pattern
from ingest.protocol.conduction import step2
from ingest.protocol.findings import Finding, whole
from ingest.protocol.ischemia import step4
from ingest.protocol.repolarisation import qtc_finding, step5
from ingest.protocol.rhythm import WITHOUT_P_WAVES, arm_leads_set_aside, has_p_waves, is_paced, rhythm_class, step1
from ingest.protocol.voltage import step3
from ingest.report_format import format_output

# At most this many evidence phrases per step (the ECG-R1 evidence reward's reference size).
MAX_EVIDENCE_PER_STEP = 3
# Below this age the adult thresholds applied here are said to need paediatric reading.
ADULT_FROM_YEARS = 16
# The rules whose value must be measured for a "normal ecg".
KEY_RULES: tuple[str, ...] = ("rate", "rhythm", "pr_interval", "qrs_duration", "axis", "st_elevation", "qtc")
# Readable names of the key rules, for "not measurable" sentences.
RULE_NAMES = {"rate": "heart rate", "rhythm": "rhythm", "pr_interval": "PR interval", "qrs_duration": "QRS duration",
              "axis": "QRS axis", "st_elevation": "ST segments", "st_depression": "ST depression", "qtc": "QTc",
              "lvh": "LVH voltage", "low_voltage": "QRS voltage", "r_progression": "R wave in V3",
              "atria": "P wave morphology", "q_waves": "Q waves", "t_waves": "T waves"}
_COMPLETE_BLOCKS = (v.LBBB, v.RBBB, v.IVCD)


class ProtocolRead(BaseModel):
    """The reading: the text, its parts, the labels and the evidence the rewards look for."""

    text: str  # the full ECG-R1-format output
    steps: dict[int, str]
    narrative: str
    labels: list[str]
    evidence: dict[int, list[str]] = Field(default_factory=dict)  # step -> <= 3 lower-case phrases
    critical: bool = False
    findings: list[Finding] = Field(default_factory=list)


def _labels(findings: list[Finding]) -> list[str]:
    labels: list[str] = []
    for finding in findings:
        for label in finding.all_labels():
            if label not in labels:
                labels.append(label)
    return labels


def _abnormal_labels(labels: list[str]) -> list[str]:
    """Abnormal labels, critical ones first (the order step 6 and the narrative name them in)."""
    abnormal = [label for label in labels if label not in v.NORMAL_LABELS]
    return sorted(abnormal, key=lambda label: label not in v.CRITICAL_LABELS)


def _is_normal(findings: list[Finding]) -> tuple[bool, list[str]]:
    """(normal ecg?, the key values that were not measurable)."""
    unmeasured = [RULE_NAMES[f.rule] for f in findings if f.rule in KEY_RULES and not f.measurable]
    by_rule = {f.rule for f in findings}
    unmeasured += [RULE_NAMES[rule] for rule in KEY_RULES if rule not in by_rule]
    return not any(f.abnormal for f in findings) and not unmeasured, unmeasured


def _mimics(labels: list[str]) -> list[tuple[str, str]]:
    """Step 6's weighing of findings that explain or mimic others: (evidence phrase, sentence)."""
    notes = []
    st_up = [label for label in labels if label in v.ST_ELEVATION_LABELS]
    st_down = [label for label in labels if label in v.ST_DEPRESSION_LABELS]
    blocks = [label for label in labels if label in _COMPLETE_BLOCKS]
    if blocks and (st_up or st_down):
        notes.append(("concordant with the qrs",
                      f"With {blocks[0]} only ST deviation concordant with the QRS was counted (Sgarbossa); "
                      "discordant changes are secondary to the conduction defect: compare with a previous ECG."))
    if v.LVH in labels and st_down:
        notes.append(("strain pattern", f"ST depression with {v.LVH} voltage may be a strain pattern."))
    if st_up and st_down:
        notes.append(("reciprocal", "ST depression opposite the ST elevation may be reciprocal."))
    if v.WIDE_COMPLEX_TACHYCARDIA in labels:
        notes.append(("treated as ventricular tachycardia",
                      "A wide complex tachycardia is treated as ventricular tachycardia until proven otherwise."))
    if v.LEAD_REVERSAL in labels:
        notes.append(("repeat recording",
                      "With a possible limb lead reversal the axis and limb-lead findings need a repeat recording."))
    return notes


def _step6(findings: list[Finding], labels: list[str], normal: bool, unmeasured: list[str],
           demographics: Demographics | None) -> list[Finding]:
    out = []
    abnormal = _abnormal_labels(labels)
    if normal:
        out.append(Finding(step=6, rule="summary", label=v.NORMAL_ECG, evidence=v.NORMAL_ECG,
                           statement=("Rate, rhythm, PR, QRS, axis, voltage, ST segments and QTc within normal "
                                      f"limits: {v.NORMAL_ECG}.")))
    elif abnormal:
        out.append(Finding(step=6, rule="summary", evidence=abnormal[0],
                           statement=f"Abnormal findings: {'; '.join(abnormal)}."))
    else:
        out.append(Finding(step=6, rule="summary", evidence="no abnormality in what was measured",
                           statement="No abnormality in what was measured; normal ECG not called."))
    critical = [label for label in abnormal if label in v.CRITICAL_LABELS]
    if critical:
        out.append(Finding(step=6, rule="critical", evidence="critical", abnormal=True,
                           statement=f"Critical: {'; '.join(critical)}: urgent cardiologist review."))
    for evidence, note in _mimics(labels):
        out.append(Finding(step=6, rule="mimics", evidence=evidence, statement=note))
    if unmeasured:
        out.append(Finding(step=6, rule="unmeasured", evidence="not measurable", measurable=False,
                           statement=f"Not measurable, no conclusion drawn: {', '.join(unmeasured)}."))
    age = demographics.age_years if demographics else None
    if age is not None and age < ADULT_FROM_YEARS:
        out.append(Finding(step=6, rule="age", evidence="adult thresholds",
                           statement=f"Adult thresholds applied at age {age} years: paediatric norms differ."))
    return out


def _evidence(findings: list[Finding], step: int) -> list[str]:
    """Up to three phrases per step: abnormal findings first, then normal ones (negations kept)."""
    in_step = [f for f in findings if f.step == step]
    # Abnormal first; the lead count is the least telling normal phrase, so it comes last of those.
    normal = sorted((f for f in in_step if not f.abnormal and f.measurable), key=lambda f: f.rule == "technical")
    ordered = [f for f in in_step if f.abnormal] + normal + [f for f in in_step if not f.measurable]
    phrases: list[str] = []
    for finding in ordered:
        if finding.evidence not in phrases:
            phrases.append(finding.evidence)
    if step == 6:
        summary = next((f for f in in_step if f.rule == "summary"), None)
        abnormal = _abnormal_labels(_labels(findings))
        if summary is not None and abnormal:
            phrases = abnormal[:MAX_EVIDENCE_PER_STEP]  # each is written in the summary sentence
    return phrases[:MAX_EVIDENCE_PER_STEP]


def _narrative(features: GroundingFeatures, findings: list[Finding], labels: list[str], normal: bool,
               p_waves: bool, unmeasured: list[str], axis_read: bool = True) -> str:
    g = features.global_
    rhythm = next((f for f in findings if f.rule == "rhythm" and f.label), None)
    hr = whole(g.hr_bpm)
    if rhythm is not None:
        opening = rhythm.label.capitalize() + (f" at {hr} bpm." if hr is not None else ".")
    else:
        opening = "Rhythm not classified" + (f", heart rate {hr} bpm." if hr is not None else ".")
    pr = g.pr_ms if p_waves else None  # fibrillation, flutter: no P wave, no PR
    numbers = [f"{name} {whole(value)} ms" for name, value in (("PR", pr), ("QRS", g.qrs_ms), ("QTc", g.qtc_ms))
               if value is not None]
    if g.qrs_axis_deg is not None and axis_read:
        numbers.append(f"QRS axis {whole(g.qrs_axis_deg):+d} degrees")
    sentences = [opening]
    if numbers:
        sentences.append(", ".join(numbers) + ".")
    rhythm_labels = rhythm.all_labels() if rhythm is not None else []
    others = [label for label in _abnormal_labels(labels) if label not in rhythm_labels]
    if normal:
        sentences.append("Normal ECG.")
    elif others:
        sentences.append(f"Findings: {'; '.join(others)}.")
    if unmeasured:
        sentences.append(f"Not measurable: {', '.join(unmeasured)}.")
    sentences.append("Preliminary computer reading of the measured signal; requires cardiologist confirmation.")
    return " ".join(sentences)


# Under ventricular pacing the QRS, ST-T and QT are the pacemaker's: what steps 2-5 would read in
# them (bundle branch block, axis, hypertrophy, ischaemia, QT) is not said. Devices do the same.
PACED_STEPS: dict[int, str] = {
    2: "PR, QRS and axis are set by the pacemaker: conduction and axis not read under ventricular pacing.",
    3: "QRS voltages are the paced complexes': hypertrophy not read under ventricular pacing.",
    4: ("ST segments and Q waves of paced complexes are secondary to pacing: ischaemia and infarction not read "
        "(compare with a previous paced ECG)."),
    5: "QT and T waves of paced complexes are secondary to pacing: not read.",
}


def _paced_steps() -> list[Finding]:
    return [Finding(step=step, rule="paced", statement=statement, evidence="not read under pacing")
            for step, statement in PACED_STEPS.items()]


# A recording whose QRS is larger than hearts make it has a suspect gain (`Voltages.gain_suspect`): what rests
# on amplitudes (voltage, P wave size, ST levels, Q wave depth, T wave height) is not read; rate, rhythm,
# intervals, axis and QT do not depend on the gain. Read at five times their size, the ST segments of a left
# ventricular hypertrophy pass for an anterior ST elevation (PTB-XL HR20715 of a challenge release).
GAIN_NOT_READ = "not read: the recording's gain is suspect"


def _gain_suspect_steps(features: GroundingFeatures, sex: Sex | None, irregular: bool) -> list[Finding]:
    span = features.voltages.median_lead_qrs_mv
    why = f"the median lead's QRS spans {span:.1f} mV, more than hearts make" if span else "QRS larger than hearts make"
    not_read = [(3, "lvh", "QRS voltages and P wave size"), (4, "st_elevation", "ST segments and Q waves"),
                (5, "t_waves", "T wave height")]
    findings = [Finding(step=step, rule=rule, measurable=False, evidence=GAIN_NOT_READ,
                        statement=f"{what[0].upper() + what[1:]} {GAIN_NOT_READ} ({why}; check the recording's gain).")
                for step, rule, what in not_read]
    return findings + [qtc_finding(features, sex, irregular)]


def protocol_read(features: GroundingFeatures, demographics: Demographics | None = None) -> ProtocolRead:
    """Read one ECG's measured features by the protocol; never raises for missing values."""
    kind = rhythm_class(features)
    # Flutter's RR is irregular when its conduction varies, regular at a fixed ratio.
    irregular = kind == "atrial fibrillation" or (
        kind == "atrial flutter" and bool(rr_pattern(features.rhythm).irregular))
    first = step1(features)
    wide_tachycardia = any(f.label == v.WIDE_COMPLEX_TACHYCARDIA for f in first)
    p_waves = has_p_waves(features)  # none in fibrillation, flutter or a wide complex tachycardia
    paced = is_paced(features)
    arms_swapped = any(f.rule == "lead_reversal" for f in first)  # the axis, and Q/ST in I and aVL, not read
    sex = demographics.sex if demographics else None
    amplitudes = [
        *step3(features, p_waves=p_waves, wide_complex_tachycardia=wide_tachycardia),
        *step4(arm_leads_set_aside(features), demographics, wide_complex_tachycardia=wide_tachycardia),
        *step5(features, sex, irregular=irregular),
    ] if not features.voltages.gain_suspect else _gain_suspect_steps(features, sex, irregular)
    findings = [*first, *_paced_steps()] if paced else [
        *first,
        *step2(features, atrial_fibrillation=kind in WITHOUT_P_WAVES,
               wide_complex_tachycardia=wide_tachycardia, arms_swapped=arms_swapped),
        *amplitudes,
    ]
    normal, unmeasured = _is_normal(findings)
    if paced:  # steps 2-5 were not read, not unmeasurable
        unmeasured = [name for name in unmeasured if name in (RULE_NAMES["rate"], RULE_NAMES["rhythm"])]
    labels = _labels(findings)
    findings += _step6(findings, labels, normal, unmeasured, demographics)
    labels = _labels(findings) or [v.NOT_MEASURABLE]  # an answer always says something
    steps = {step: " ".join(f.statement for f in findings if f.step == step) for step in range(1, 7)}
    narrative = _narrative(features, findings, labels, normal, p_waves, unmeasured, axis_read=not arms_swapped)
    return ProtocolRead(
        text=format_output(steps, narrative, labels),
        steps=steps,
        narrative=narrative,
        labels=labels,
        evidence={step: _evidence(findings, step) for step in range(1, 7)},
        critical=v.is_critical(labels),
        findings=findings,
    )
