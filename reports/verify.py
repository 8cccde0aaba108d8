"""Claim checks: what an interpreter SAYS against what was MEASURED on the same ECG.

    verify(parsed_or_text, features) -> list[Flag]

An interpreter (the protocol reader, or ECG-R1, which reads the image and the signal but
measures nothing) writes numbers and labels. Two kinds of disagreement are flagged for the
cardiologist who signs the report:

- value: a number in the text (heart rate in bpm; PR, QRS, QT, QTc in ms or s; axes in
  degrees) further from the measured value than `TOLERANCES` allows; a bound ("QRS duration
  is normal at less than 100 ms", "a QTc value below 440 ms") is contradicted by a measurement
  beyond it by more than the tolerance;
- label: an answer label (or a label phrase in the narrative) that contradicts a measured
  value by the protocol's own thresholds (`ingest.protocol`): "sinus bradycardia" at
  85 bpm, "first degree av block" with PR 160 ms, "left bundle branch block" with QRS 90 ms.
  Label thresholds are applied with a margin of half the value tolerance, so a measurement
  a few ms from a threshold does not raise a flag.

Beside them, `recording_flags(features)` says what the recording itself puts in doubt, whatever the
interpreter claims: muscle artefact (a fuzzy trace) and a suspect gain (a QRS larger than hearts make).

Only the `<answer>` labels and the narrative are read for label claims: the `<think>` steps
weigh differentials ("consider LBBB") that are not claims. Numbers are read everywhere.
A value that was not measured is never flagged: there is nothing to compare with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel

from ingest.measure.measured import GroundingFeatures
from ingest.protocol import conduction, ischemia, repolarisation, rhythm, voltage
from ingest.protocol import vocabulary as vocab
from ingest.protocol.beat_pattern import locked_p_waves
from ingest.protocol.flutter import flutter_waves
from ingest.protocol.read import protocol_read
from ingest.report_format import ParsedOutput, parse_output

HR_TOLERANCE_BPM = 5.0
INTERVAL_TOLERANCE_MS = 20.0
AXIS_TOLERANCE_DEG = 20.0
# Label checks use half the value tolerance as margin beyond the threshold.
LABEL_MARGIN_FRACTION = 0.5
VOLTAGE_MARGIN_MV = 0.1
# A claimed ST elevation/depression is contradicted only when no lead concerned deviates this much.
ST_CLAIM_MIN_MV = 0.05
# Atrial fibrillation is contradicted by P waves before this share of beats, or by RR this regular.
AF_CONTRADICTED_P_FRACTION = 0.7
AF_CONTRADICTED_RR_CV = 0.05
# A sinus rhythm is contradicted by P waves before less than this share of beats.
SINUS_CONTRADICTED_P_FRACTION = 0.3


class Flag(BaseModel):
    """One disagreement between a claim and a measurement."""

    kind: Literal["value", "label"]
    field: str  # the measured field it was checked against, e.g. "pr_ms"; "findings" for "normal ecg"
    claimed: str  # what the text said: "PR interval is 0.18 s", "first degree av block"
    measured: float | None  # the measured value (None for a "normal ecg" claim: several values)
    tolerance: float | None  # for values: the allowed difference; for labels: the margin used
    message: str


class ValueClaim(BaseModel):
    """A number the text gives for a measured field, in the field's unit (ms, bpm, degrees)."""

    field: str
    value: float
    upper: float | None = None  # the top of a claimed range ("70-75 bpm")
    bound: Literal["<", ">"] | None = None  # "less than 100 ms": the value is a bound, not the value
    text: str


@dataclass(frozen=True)
class FieldSpec:
    name: str  # how the message names it
    unit: str
    kind: Literal["time", "rate", "angle"]
    tolerance: float


FIELDS: dict[str, FieldSpec] = {
    "hr_bpm": FieldSpec("heart rate", "bpm", "rate", HR_TOLERANCE_BPM),
    "pr_ms": FieldSpec("PR", "ms", "time", INTERVAL_TOLERANCE_MS),
    "qrs_ms": FieldSpec("QRS", "ms", "time", INTERVAL_TOLERANCE_MS),
    "qt_ms": FieldSpec("QT", "ms", "time", INTERVAL_TOLERANCE_MS),
    "qtc_ms": FieldSpec("QTc", "ms", "time", INTERVAL_TOLERANCE_MS),
    "qtc_fridericia_ms": FieldSpec("QTc (Fridericia)", "ms", "time", INTERVAL_TOLERANCE_MS),
    "qrs_axis_deg": FieldSpec("QRS axis", "degrees", "angle", AXIS_TOLERANCE_DEG),
    "p_axis_deg": FieldSpec("P axis", "degrees", "angle", AXIS_TOLERANCE_DEG),
    "t_axis_deg": FieldSpec("T axis", "degrees", "angle", AXIS_TOLERANCE_DEG),
}

# --- reading numbers ---------------------------------------------------------------------------

# A field's name; the group name is the field (qt_qtc: the device style "QT/QTc 400/456 ms").
_KEYWORD = re.compile(r"""
    (?P<qt_qtc>\bqt\s*/\s*qtc\b)
  | (?P<qtc_fridericia_ms>\bqtcf\b|\bqtc\s*\(fridericia\)|\bfridericia(?:[- ]corrected)?\s+qtc?\b)
  | (?P<qtc_ms>\bqtcb?\b(?:\s*\(bazett\))?|\bcorrected\s+qt\b)
  | (?P<qt_ms>\bqt\b)
  | (?P<pr_ms>\bp-?r\b)
  | (?P<qrs_axis_deg>\bqrs\s+axis\b|\b(?:electrical|frontal(?:\s+plane)?|mean|cardiac)\s+axis\b)
  | (?P<qrs_ms>\bqrs\b)
  | (?P<p_axis_deg>\bp[- ](?:wave\s+)?axis\b)
  | (?P<t_axis_deg>\bt[- ](?:wave\s+)?axis\b)
  | (?P<axis>\baxis\b)
  | (?P<rate_strong>\bheart\s+rate\b|\bventricular\s+rate\b|\bhr\b|(?<!atrial\s)\brate\b|\bpulse\b)
  | (?P<rate_weak>\bbradycardia\b|\btachycardia\b|\brhythm\b|\bfibrillation\b)
""", re.IGNORECASE | re.VERBOSE)
# The words allowed between a field's name and its number ("heart rate of", "PR interval is").
_GAP = re.compile(r"""(?:\s+|\(\s*(?:qtc[bf]?|qt|pr|qrs|hr)\s*\)|[:=~(,]|\b(?:
    of|is|was|were|at|about|approximately|approx|around|roughly|near|nearly|measured|measures|measuring
  | interval|intervals|duration|width|calculated|corrected|value|estimated|prolonged|normal|short|shortened
  | long|borderline|slightly|mildly|moderately|markedly|be|to|appears|seems|a|an|the|rate|with|deviation
  | now|still|only|ventricular|average|mean|within|limits|complex|complexes|narrow|wide|broad|when|are
  )\b\.?)*""", re.IGNORECASE | re.VERBOSE)
# A bound instead of a value: "normal at less than 100 ms", "a QTc value below 440 ms". In words
# only: "(< 200 ms)" after a field's name is the threshold being applied, not a claim.
_BOUND = re.compile(r"(?:(?P<lt>less\s+than|below|under|shorter\s+than)|(?P<gt>greater\s+than|more\s+than|above"
                    r"|over|longer\s+than|exceeding))\s+", re.IGNORECASE)
_NUMBER = r"(?P<sign>[+-])?\s?(?P<num>\d+(?:\.\d+)?)"
_VALUE = re.compile(_NUMBER + r"""
    (?:\s*(?:-|to)\s*(?P<sign2>[+-])?(?P<num2>\d+(?:\.\d+)?))?
    \s*(?P<unit>ms\b|msec\b|milliseconds?\b|s\b|secs?\b|seconds?\b|bpm\b|beats?\s*(?:per|/)\s*min(?:ute)?\b
       |/\s*min\b|per\s+min(?:ute)?\b|degrees?\b|deg\b|°)?""", re.IGNORECASE | re.VERBOSE)
_PAIR = re.compile(r"\s*[:=]?\s*(?P<qt>\d+(?:\.\d+)?)\s*/\s*(?P<qtc>\d+(?:\.\d+)?)\s*(?P<unit>ms\b|msec\b|s\b)",
                   re.IGNORECASE)


def _unit_kind(unit: str | None) -> str | None:
    if not unit:
        return None
    unit = unit.lower()
    if unit in ("ms", "msec") or unit.startswith("millisecond"):
        return "ms"
    if unit in ("s", "sec", "secs") or unit.startswith("second"):
        return "s"
    if unit in ("deg", "°") or unit.startswith("degree"):
        return "angle"
    return "rate"


def _in_unit(value: float, unit: str | None, spec: FieldSpec, strong_rate: bool) -> float | None:
    """The value in the field's unit, or None when the unit does not fit the field."""
    kind = _unit_kind(unit)
    if spec.kind == "time":
        if kind == "ms":
            return value
        if kind == "s" and value < 10:
            return value * 1000.0
        return None
    if spec.kind == "rate":
        if kind == "rate" or (kind is None and strong_rate and 20 <= value <= 300):
            return value
        return None
    return value if kind in ("angle", None) else None


def _normalised(text: str) -> str:
    """Unicode minus and dashes as '-', so signs and ranges read alike."""
    return text.replace("\u2212", "-").replace("\u2013", "-").replace("\u2014", "-")


def extract_values(text: str) -> list[ValueClaim]:
    """Every number the text gives for a measured field, in the field's unit."""
    text = _normalised(text)
    claims: list[ValueClaim] = []
    taken: set[int] = set()  # where numbers already read start: "tachycardia with a rate of 110" is one claim
    for keyword in _KEYWORD.finditer(text):
        group = keyword.lastgroup or ""
        after = _GAP.match(text, keyword.end()).end()
        if group == "qt_qtc":
            pair = _PAIR.match(text, keyword.end())
            if pair:
                scale = 1000.0 if _unit_kind(pair.group("unit")) == "s" else 1.0
                words = text[keyword.start():pair.end()]
                claims += [ValueClaim(field="qt_ms", value=float(pair.group("qt")) * scale, text=words),
                           ValueClaim(field="qtc_ms", value=float(pair.group("qtc")) * scale, text=words)]
            continue
        bound_words = _BOUND.match(text, after)
        bound = None if bound_words is None else ("<" if bound_words.group("lt") else ">")
        found = _VALUE.match(text, after if bound_words is None else bound_words.end())
        if not found or found.start() in taken:
            continue
        field = {"axis": "qrs_axis_deg", "rate_strong": "hr_bpm", "rate_weak": "hr_bpm"}.get(group, group)
        spec = FIELDS[field]
        low = _signed(found.group("sign"), found.group("num"))
        high = _signed(found.group("sign2"), found.group("num2")) if found.group("num2") else None
        unit = found.group("unit")
        value = _in_unit(low, unit, spec, strong_rate=group == "rate_strong")
        if value is None or (spec.kind != "angle" and low < 0):
            continue
        upper = None if high is None else _in_unit(high, unit, spec, strong_rate=True)
        if (upper is not None and upper < value and spec.kind != "angle") or bound is not None:
            upper = None
        taken.add(found.start())
        claims.append(ValueClaim(field=field, value=value, upper=upper, bound=bound,
                                 text=text[keyword.start():found.end()].strip()))
    return claims


def _signed(sign: str | None, number: str) -> float:
    return -float(number) if sign == "-" else float(number)


def _difference(claim: ValueClaim, measured: float, angle: bool) -> float:
    """How far the measurement lies from the claimed value (or outside the claimed range or bound)."""
    if claim.bound == "<":
        return max(0.0, measured - claim.value)
    if claim.bound == ">":
        return max(0.0, claim.value - measured)
    ends = [claim.value] if claim.upper is None else [claim.value, claim.upper]
    if claim.upper is not None and min(ends) <= measured <= max(ends):
        return 0.0
    if angle:
        return min(abs((end - measured + 180.0) % 360.0 - 180.0) for end in ends)
    return min(abs(end - measured) for end in ends)


def claim_distance(claim: ValueClaim, measured: float) -> float:
    """How far a measurement lies from what the claim says (0 inside a claimed range or bound),
    in the field's unit: what the review page compares with the field's tolerance."""
    return _difference(claim, measured, FIELDS[claim.field].kind == "angle")


def claim_display(claim: ValueClaim) -> str:
    """The claim as a reader would write it: "160 ms", "70-75 bpm", "< 100 ms"."""
    unit = FIELDS[claim.field].unit
    if claim.bound is not None:
        return f"{claim.bound} {claim.value:.0f} {unit}"
    return f"{claim.value:.0f}" + (f"-{claim.upper:.0f}" if claim.upper is not None else "") + f" {unit}"


def check_values(claims: list[ValueClaim], features: GroundingFeatures) -> list[Flag]:
    flags = []
    for claim in claims:
        measured = getattr(features.global_, claim.field)
        if measured is None:
            continue
        spec = FIELDS[claim.field]
        if _difference(claim, measured, spec.kind == "angle") > spec.tolerance:
            flags.append(Flag(kind="value", field=claim.field, claimed=claim.text, measured=measured,
                              tolerance=spec.tolerance,
                              message=(f"says '{claim.text}' but the measured {spec.name} is {measured:.0f} "
                                       f"{spec.unit} (tolerance {spec.tolerance:.0f} {spec.unit})")))
    return flags


# --- reading labels ------------------------------------------------------------------------------

_NEGATION_BEFORE = re.compile(r"\b(?:no|not|without|absence of|absent|negative for|rule out|ruled out|r/o|exclude[sd]?"
                              r"|cannot|nor|neither|resolved|free of)\b")
_NEGATION_AFTER = re.compile(r"\b(?:not|absent|excluded|ruled out|unlikely)\b")


def claimed_phrases(parsed: ParsedOutput) -> list[str]:
    """The label claims of an output: each answer label, and each clause of the narrative (lower case)."""
    phrases = [label.lower() for label in parsed.labels]
    phrases += [part.strip().lower() for part in re.split(r"[.;,\n]", parsed.narrative) if part.strip()]
    return phrases


def _affirmed(pattern: re.Pattern[str], phrase: str) -> bool:
    """The phrase names the finding and does not deny it ("no st elevation", "lvh not met")."""
    for found in pattern.finditer(phrase):
        if not _NEGATION_BEFORE.search(phrase[:found.start()]) and not _NEGATION_AFTER.search(phrase[found.end():]):
            return True
    return False


class Contradiction(NamedTuple):
    field: str  # the measured field that contradicts the claim
    measured: float | None
    reason: str


# A check reads the features and the claiming phrase (the ST checks read its territory).
Check = Callable[[GroundingFeatures, str], Contradiction | None]


@dataclass(frozen=True)
class LabelCheck:
    """A family of labels and the measurement that would contradict it."""

    name: str
    pattern: re.Pattern[str]
    margin: float | None  # how far past the threshold a measurement must be to contradict
    contradicted: Check
    exclude: re.Pattern[str] | None = None  # phrases that look alike but claim something else


_HR_MARGIN = HR_TOLERANCE_BPM * LABEL_MARGIN_FRACTION
_MS_MARGIN = INTERVAL_TOLERANCE_MS * LABEL_MARGIN_FRACTION
_AXIS_MARGIN = AXIS_TOLERANCE_DEG * LABEL_MARGIN_FRACTION


def _hr(f: GroundingFeatures, contradicts: Callable[[float], bool], limit: str) -> Contradiction | None:
    hr = f.global_.hr_bpm
    if hr is None or not contradicts(hr):
        return None
    return Contradiction("hr_bpm", hr, f"the measured heart rate is {hr:.0f} bpm ({limit})")


def _bradycardia(f: GroundingFeatures, _: str) -> Contradiction | None:
    return _hr(f, lambda hr: hr >= rhythm.BRADYCARDIA_BELOW_BPM + _HR_MARGIN,
               f"not < {rhythm.BRADYCARDIA_BELOW_BPM} bpm")


def _tachycardia(f: GroundingFeatures, _: str) -> Contradiction | None:
    return _hr(f, lambda hr: hr <= rhythm.TACHYCARDIA_ABOVE_BPM - _HR_MARGIN,
               f"not > {rhythm.TACHYCARDIA_ABOVE_BPM} bpm")


def _normal_rate(f: GroundingFeatures, _: str) -> Contradiction | None:
    return _hr(f, lambda hr: not (rhythm.BRADYCARDIA_BELOW_BPM - _HR_MARGIN <= hr
                                  <= rhythm.TACHYCARDIA_ABOVE_BPM + _HR_MARGIN),
               f"outside {rhythm.BRADYCARDIA_BELOW_BPM}-{rhythm.TACHYCARDIA_ABOVE_BPM} bpm")


def _sinus(f: GroundingFeatures, _: str) -> Contradiction | None:
    share = f.rhythm.p_wave_fraction
    # A P wave locked to the QRS over all beats (the protocol reader's own rule) is a P wave the single-beat
    # search missed: the sinus claim stands on it.
    if share is not None and share < SINUS_CONTRADICTED_P_FRACTION and not locked_p_waves(f.rhythm):
        return Contradiction("p_wave_fraction", share, f"P waves were found before only {share:.0%} of beats")
    if "II" in f.rhythm.p_negative_in:
        return Contradiction("p_wave_fraction", share, "the P wave is inverted in II")
    if (pr := rhythm.wave_too_close_to_wide_qrs(f)) is not None:
        return Contradiction("pr_ms", float(pr), f"the wave before each wide QRS stands {pr} ms before it, under "
                                                 f"{conduction.SHORT_PR_BELOW_MS} ms: no sinus P wave "
                                                 "(wide complex tachycardia)")
    return None


def _atrial_fibrillation(f: GroundingFeatures, _: str) -> Contradiction | None:
    share, cv = f.rhythm.p_wave_fraction, f.rhythm.rr_cv
    if share is not None and share >= AF_CONTRADICTED_P_FRACTION:
        return Contradiction("p_wave_fraction", share, f"P waves were found before {share:.0%} of beats")
    if cv is not None and cv < AF_CONTRADICTED_RR_CV:
        return Contradiction("rr_cv", cv, f"the RR intervals are regular (coefficient of variation {cv:.2f})")
    locked = locked_p_waves(f.rhythm)  # the protocol reader's own rule: a P wave at a fixed place before every QRS
    if locked:
        return Contradiction("p_lock", min(locked.values()),
                             f"an upright P wave stands at the same place before every QRS "
                             f"({rhythm.locked_shares_text(locked)} of the signal "
                             "there repeats beat to beat): organised atrial activity, not fibrillation")
    flutter = flutter_waves(f)  # the protocol reader's own rule: one organised wave in every atrial lead
    if flutter is not None:
        return Contradiction("atrial_waves", float(flutter.rate_per_min),
                             f"the atrial leads ({', '.join(flutter.leads)}) show one organised wave at "
                             f"{flutter.rate_per_min}/min: flutter waves, not fibrillation")
    return None


def _interval(f: GroundingFeatures, field: str, contradicts: Callable[[float], bool],
              limit: str) -> Contradiction | None:
    value = getattr(f.global_, field)
    if value is None or not contradicts(value):
        return None
    return Contradiction(field, value, f"the measured {FIELDS[field].name} is {value:.0f} ms ({limit})")


def _long_pr(f: GroundingFeatures, _: str) -> Contradiction | None:
    limit = conduction.FIRST_DEGREE_AV_BLOCK_ABOVE_MS
    return _interval(f, "pr_ms", lambda pr: pr <= limit - _MS_MARGIN, f"not > {limit} ms")


def _short_pr(f: GroundingFeatures, _: str) -> Contradiction | None:
    limit = conduction.SHORT_PR_BELOW_MS
    return _interval(f, "pr_ms", lambda pr: pr >= limit + _MS_MARGIN, f"not < {limit} ms")


def _complete_block(side: Literal["right", "left"]) -> Check:
    def contradicted(f: GroundingFeatures, _: str) -> Contradiction | None:
        limit = conduction.COMPLETE_BBB_FROM_MS
        narrow = _interval(f, "qrs_ms", lambda qrs: qrs < limit - _MS_MARGIN, f"not >= {limit} ms")
        if narrow is not None:
            return narrow
        other = conduction.bundle_branch_pattern(f)
        if other is not None and other != side:
            return Contradiction("qrs_morphology", None, f"V1, V6 and I show a {other} bundle branch pattern")
        return None
    return contradicted


def _incomplete_block(f: GroundingFeatures, _: str) -> Contradiction | None:
    low, high = conduction.INCOMPLETE_BBB_FROM_MS, conduction.COMPLETE_BBB_FROM_MS
    return (_interval(f, "qrs_ms", lambda qrs: qrs < low - _MS_MARGIN, f"< {low} ms")
            or _interval(f, "qrs_ms", lambda qrs: qrs >= high + _MS_MARGIN, f">= {high} ms: complete"))


def _conduction_delay(f: GroundingFeatures, _: str) -> Contradiction | None:
    low = conduction.INCOMPLETE_BBB_FROM_MS
    return _interval(f, "qrs_ms", lambda qrs: qrs < low - _MS_MARGIN, f"< {low} ms")


def _wide_complex(f: GroundingFeatures, _: str) -> Contradiction | None:
    limit = conduction.COMPLETE_BBB_FROM_MS
    return _interval(f, "qrs_ms", lambda qrs: qrs < limit - _MS_MARGIN, f"narrow, < {limit} ms")


def _ventricular_run(f: GroundingFeatures, _: str) -> Contradiction | None:
    """A run of ventricular tachycardia needs beats of another QRS shape than the dominant one; the dominant
    QRS itself may be narrow (the run is amid another rhythm), so its width is no contradiction."""
    count = f.rhythm.ectopic_count
    if count is None or count > 0 or not f.rhythm.beat_count:
        return None
    return Contradiction("ectopic_count", 0.0, f"every one of the {f.rhythm.beat_count} measured beats has the "
                                                "dominant QRS shape")


def _axis(f: GroundingFeatures, contradicts: Callable[[float], bool], limit: str) -> Contradiction | None:
    axis = f.global_.qrs_axis_deg
    if axis is None or not contradicts(axis):
        return None
    return Contradiction("qrs_axis_deg", axis, f"the measured QRS axis is {axis:+.0f} degrees ({limit})")


def _left_axis(f: GroundingFeatures, _: str) -> Contradiction | None:
    limit = conduction.LEFT_AXIS_BELOW_DEG
    return _axis(f, lambda axis: axis > limit + _AXIS_MARGIN, f"not < {limit}")


def _right_axis(f: GroundingFeatures, _: str) -> Contradiction | None:
    limit = conduction.RIGHT_AXIS_ABOVE_DEG
    return _axis(f, lambda axis: conduction.EXTREME_AXIS_BELOW_DEG <= axis < limit - _AXIS_MARGIN,
                 f"not > +{limit}")


def _normal_axis(f: GroundingFeatures, _: str) -> Contradiction | None:
    low, high = conduction.LEFT_AXIS_BELOW_DEG, conduction.RIGHT_AXIS_ABOVE_DEG
    return _axis(f, lambda axis: not (low - _AXIS_MARGIN <= axis <= high + _AXIS_MARGIN), f"outside {low} to +{high}")


def _lvh(f: GroundingFeatures, _: str) -> Contradiction | None:
    vo = f.voltages
    sokolow = voltage.sokolow_lyon_mv(vo.s_v1_mv, vo.r_v5_mv, vo.r_v6_mv)
    if sokolow is None:
        return None
    below = (sokolow <= voltage.SOKOLOW_LYON_ABOVE_MV - VOLTAGE_MARGIN_MV
             and (vo.r_i_mv is None or vo.r_i_mv <= voltage.R_I_ABOVE_MV - VOLTAGE_MARGIN_MV)
             and (vo.r_avl_mv is None or vo.r_avl_mv <= voltage.R_AVL_ABOVE_MV - VOLTAGE_MARGIN_MV))
    if not below:
        return None
    return Contradiction("sokolow_lyon_mv", sokolow,
                         f"no measured voltage criterion is met (Sokolow-Lyon {sokolow:.2f} mV, "
                         f"limit {voltage.SOKOLOW_LYON_ABOVE_MV:.2f} mV)")


def _low_voltage(f: GroundingFeatures, _: str) -> Contradiction | None:
    limb, precordial = f.voltages.limb_qrs_max_mv, f.voltages.precordial_qrs_max_mv
    if limb is None or precordial is None:
        return None
    if (limb >= voltage.LOW_LIMB_QRS_BELOW_MV + VOLTAGE_MARGIN_MV
            and precordial >= voltage.LOW_PRECORDIAL_QRS_BELOW_MV + VOLTAGE_MARGIN_MV):
        return Contradiction("limb_qrs_max_mv", limb, f"the largest QRS is {limb:.2f} mV in the limb and "
                                                      f"{precordial:.2f} mV in the precordial leads")
    return None


_TERRITORY_WORDS = (("inferior", "inferior"), ("lateral", "lateral"), ("anterior", "septal-anterior"),
                    ("septal", "septal-anterior"))


def _claimed_leads(phrase: str) -> list[str]:
    """The leads an ST claim concerns: its territories, or every territory's leads when none is named."""
    leads: list[str] = []
    for word, territory in _TERRITORY_WORDS:
        if word in phrase:
            leads += [lead for lead in vocab.TERRITORIES[territory] if lead not in leads]
    return leads or [lead for members in vocab.TERRITORIES.values() for lead in members]


def _st(direction: Literal[1, -1]) -> Check:
    def contradicted(f: GroundingFeatures, phrase: str) -> Contradiction | None:
        levels = ischemia.st_levels(f)
        concerned = [levels[lead] * direction for lead in _claimed_leads(phrase) if lead in levels]
        if not concerned or max(concerned) >= ST_CLAIM_MIN_MV:
            return None
        most = max(concerned) * direction
        word = "elevation" if direction > 0 else "depression"
        return Contradiction("st_deviation_mv", most, f"no lead concerned shows ST {word} of "
                                                      f"{ST_CLAIM_MIN_MV:.2f} mV (the most is {most:+.2f} mV)")
    return contradicted


def _prolonged_qt(limit: int) -> Check:
    """A QT claim against the QTc the protocol decides with (Framingham; `repolarisation`)."""
    def contradicted(f: GroundingFeatures, _: str) -> Contradiction | None:
        decided = repolarisation.deciding_qtc(f)
        if decided is None or decided > limit - _MS_MARGIN:
            return None
        return Contradiction("qtc_ms", f.global_.qtc_ms,
                             f"the rate-corrected QTc (Framingham) is {decided} ms, not above {limit} ms")
    return contradicted


def _normal_ecg(f: GroundingFeatures, _: str) -> Contradiction | None:
    abnormal = [label for finding in protocol_read(f).findings if finding.abnormal and finding.step < 6
                for label in finding.all_labels()]
    if not abnormal:
        return None
    return Contradiction("findings", None, "the measured values give: " + "; ".join(abnormal))


def _premature(kind: str) -> Check:
    """Premature beats claimed, none measured: every RR of the record was on time."""
    def contradicted(f: GroundingFeatures, _: str) -> Contradiction | None:
        finding = rhythm.ectopic_finding(f)
        if finding is None or finding.values.get("ectopic_count") != 0.0:
            return None
        return Contradiction("ectopic_count", 0.0, f"none of the {f.rhythm.beat_count} measured beats was premature "
                                                   f"(no {kind} premature beat)")
    return contradicted


def _abnormal_ecg(f: GroundingFeatures, _: str) -> Contradiction | None:
    abnormal = [finding for finding in protocol_read(f).findings if finding.abnormal and finding.step < 6]
    if abnormal:
        return None
    return Contradiction("findings", None, "no measured value is abnormal by the protocol's thresholds")


def _p(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_TACHY_BRADY = r"tachy-?(?:cardia-?)?brady"
# A run of ventricular tachycardia amid another rhythm, not the rhythm itself.
_VT_RUN = r"non-?sustained (?:ventricular tachycardia|vt)\b|\bnsvt\b|runs? of (?:ventricular tachycardia|vt)\b"
LABEL_CHECKS: tuple[LabelCheck, ...] = (
    LabelCheck("bradycardia", _p(r"bradycardia"), _HR_MARGIN, _bradycardia, exclude=_p(_TACHY_BRADY)),
    LabelCheck("tachycardia", _p(r"tachycardia|\bsvt\b|\bvt\b"), _HR_MARGIN, _tachycardia,
               exclude=_p(r"non-?sustained|\bnsvt\b|runs? of|" + _TACHY_BRADY)),
    LabelCheck("normal sinus rhythm", _p(r"normal sinus rhythm|\bnsr\b"), _HR_MARGIN, _normal_rate),
    LabelCheck("sinus", _p(r"\bsinus (?:rhythm|bradycardia|tachycardia|arrhythmia)\b|\bnsr\b"), None, _sinus),
    LabelCheck("atrial fibrillation", _p(r"atrial fibrillation|\ba-?fib\b|^af$"), None, _atrial_fibrillation),
    LabelCheck("first degree av block",
               _p(r"(?:first|1st)[- ]degree (?:av |atrio-?ventricular |heart )?block|\b1davb\b|\bi-?avb\b"
                  r"|prolonged pr\b"), _MS_MARGIN, _long_pr),
    LabelCheck("short pr", _p(r"short pr\b|pre-?excitation|wolff|\bwpw\b"), _MS_MARGIN, _short_pr),
    LabelCheck("right bundle branch block", _p(r"(?<!incomplete )right bundle branch block|\brbbb\b"), _MS_MARGIN,
               _complete_block("right")),
    LabelCheck("left bundle branch block", _p(r"(?<!incomplete )left bundle branch block|\blbbb\b"), _MS_MARGIN,
               _complete_block("left")),
    LabelCheck("incomplete bundle branch block",
               _p(r"incomplete (?:right |left )?bundle branch block|\birbbb\b|\bilbbb\b"), _MS_MARGIN,
               _incomplete_block),
    LabelCheck("intraventricular conduction delay", _p(r"intraventricular conduction (?:delay|defect)|\bivcd\b"),
               _MS_MARGIN, _conduction_delay),
    LabelCheck("ventricular tachycardia", _p(r"\bventricular tachycardia|\bvt\b|wide[- ]complex tachycardia"),
               _MS_MARGIN, _wide_complex, exclude=_p(_VT_RUN)),
    LabelCheck("non-sustained ventricular tachycardia", _p(_VT_RUN), None, _ventricular_run),
    LabelCheck("left axis deviation",
               _p(r"left axis deviation|left anterior (?:fascicular block|hemiblock)|\blafb\b|\blahb\b"),
               _AXIS_MARGIN, _left_axis),
    LabelCheck("right axis deviation",
               _p(r"right axis deviation|left posterior (?:fascicular block|hemiblock)|\blpfb\b"),
               _AXIS_MARGIN, _right_axis),
    LabelCheck("normal axis", _p(r"normal (?:qrs |electrical )?axis"), _AXIS_MARGIN, _normal_axis),
    LabelCheck("left ventricular hypertrophy", _p(r"left ventricular hypertrophy|\blvh\b"), VOLTAGE_MARGIN_MV, _lvh),
    LabelCheck("low qrs voltage", _p(r"low (?:qrs )?voltage"), VOLTAGE_MARGIN_MV, _low_voltage),
    LabelCheck("prolonged qt", _p(r"(?:prolonged|long) qtc?\b|qtc? prolongation"), _MS_MARGIN,
               _prolonged_qt(repolarisation.QTC_PROLONGED_MALE_FROM_MS)),
    LabelCheck("marked qt prolongation", _p(r"marked(?:ly)? (?:prolonged )?qtc?\b|marked qtc? prolongation"),
               _MS_MARGIN, _prolonged_qt(repolarisation.QTC_MARKED_ABOVE_MS)),
    LabelCheck("st elevation", _p(r"\bst[- ]?(?:segment )?elevation|\bstemi\b|^ste$"), ST_CLAIM_MIN_MV, _st(1)),
    LabelCheck("st depression", _p(r"\bst[- ]?(?:segment )?depression|^std$"), ST_CLAIM_MIN_MV, _st(-1)),
    LabelCheck("normal ecg", _p(r"\bnormal (?:ecg|ekg|electrocardiogram)\b|^norm$|within normal limits"), None,
               _normal_ecg),
    # The release's labels (MIMIC-IV-ECG report statements): "Atrial premature complexes", "Abnormal ECG".
    LabelCheck("atrial premature complexes",
               _p(r"(?:atrial|supraventricular) premature (?:complex|beat|contraction|depolarization)s?"
                  r"|premature (?:atrial|supraventricular) (?:complex|beat|contraction|depolarization)s?"
                  r"|\b(?:apc|pac|spb|svpb|pabs?)s?\b"), None, _premature("atrial")),
    LabelCheck("ventricular premature complexes",
               _p(r"ventricular premature (?:complex|beat|contraction|depolarization)s?"
                  r"|premature ventricular (?:complex|beat|contraction|depolarization)s?|\b(?:pvc|vpc|vpb)s?\b"),
               None, _premature("ventricular")),
    LabelCheck("abnormal ecg", _p(r"\babnormal (?:ecg|ekg|electrocardiogram|tracing)\b|^abnormal$"), None,
               _abnormal_ecg),
)
# Labels the release writes that name no measured value this module can check (shape of the ST-T,
# morphology): recognised, so that an unmapped label is told apart from one that cannot be checked.
UNCHECKED_LABELS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("repolarization abnormality", _p(r"repolari[sz]ation (?:abnormalit(?:y|ies)|changes?)")),
    ("st-t changes", _p(r"\bst-?t\b|t[- ]wave (?:abnormalit|inversion|changes?)|nonspecific (?:st|t)")),
    ("infarction", _p(r"infarct|\bmi\b|q waves?")),
    ("atrial abnormality", _p(r"atrial (?:abnormality|enlargement)")),
    ("right ventricular hypertrophy", _p(r"right ventricular hypertrophy|\brvh\b")),
    ("atrial flutter", _p(r"atrial flutter")),
    ("pacing", _p(r"\bpac(?:ed|ing|emaker)\b")),
    ("poor r wave progression", _p(r"poor r[- ]wave progression")),
)


def label_families(label: str) -> list[str]:
    """The claim families a label belongs to: the label checks that read it, then any unchecked
    family it names ("unchecked: ..."). Empty: the label is not recognised at all."""
    phrase = label.strip().lower()
    checked = [check.name for check in LABEL_CHECKS if _affirmed(check.pattern, phrase)
               and not (check.exclude and check.exclude.search(phrase))]
    unchecked = [f"unchecked: {name}" for name, pattern in UNCHECKED_LABELS if pattern.search(phrase)]
    return checked + unchecked


def check_labels(phrases: list[str], features: GroundingFeatures) -> list[Flag]:
    """At most one flag per label family: the first claiming phrase that the measurements contradict."""
    flags = []
    for check in LABEL_CHECKS:
        for phrase in phrases:
            if not _affirmed(check.pattern, phrase) or (check.exclude and check.exclude.search(phrase)):
                continue
            contradiction = check.contradicted(features, phrase)
            if contradiction is not None:
                flags.append(Flag(kind="label", field=contradiction.field, claimed=phrase,
                                  measured=contradiction.measured, tolerance=check.margin,
                                  message=f"says '{phrase}' but {contradiction.reason}"))
                break
    return flags


def verify(parsed_or_text: ParsedOutput | str, features: GroundingFeatures | None) -> list[Flag]:
    """Flags where the output's numbers or labels disagree with the measured features.

    No features (an image-only study): nothing was measured, so nothing can disagree.
    """
    if features is None:
        return []
    parsed = parse_output(parsed_or_text) if isinstance(parsed_or_text, str) else parsed_or_text
    text = "\n".join([*(parsed.steps[n] for n in sorted(parsed.steps)), parsed.narrative])
    return check_values(extract_values(text), features) + check_labels(claimed_phrases(parsed), features)


def recording_flags(features: GroundingFeatures | None) -> list[str]:
    """What the recording puts in doubt, for the cardiologist beside the claim checks (and in the draft's
    "Check:" notes): a trace with muscle artefact, a suspect gain. Nothing for an image-only study."""
    if features is None:
        return []
    flags = []
    noise = features.quality.median_lead_hf_noise_uv
    if features.quality.muscle_artefact and noise is not None:
        flags.append(f"the recording has muscle artefact (noise above 40 Hz {noise:.0f} uV RMS in the median lead): "
                     "small waves and ST levels may be misread; a repeat recording is advised")
    span = features.voltages.median_lead_qrs_mv
    if features.voltages.gain_suspect and span is not None:
        flags.append(f"the recording's gain is suspect (the median lead's QRS spans {span:.1f} mV, more than hearts "
                     "make): amplitudes were not read")
    return flags
