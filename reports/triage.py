"""Urgency from the evidence: is a study critical, and who found it.

    triage(features, demographics, interpretation, second_reading, configured) -> Triage

Three readers of one ECG, any one of which makes it critical (sorted first, marked red):

- the measured values (`measured_findings`): the ST levels at J and J + 60 ms by the fourth
  universal definition in two contiguous leads (`ingest.protocol.ischemia`, the protocol
  reader's own rule: concordant only under a QRS >= 120 ms, not assessed in a wide complex
  tachycardia; leads I and aVL set aside when the arm electrodes may be swapped, and none read
  where the recording's gain is suspect, as the reader does); a wide complex tachycardia (QRS
  >= 120 ms at > 100 /min: VT until shown otherwise, and a sinus P wave before most beats at a
  consistent PR of 120 ms or more, the protocol reader's sinus rule, shows a sinus tachycardia
  with a bundle branch block); a run of three or more beats of another QRS shape at > 100 /min
  amid another rhythm (non-sustained ventricular tachycardia, `ingest.protocol.beat_pattern.other_shape_run`,
  the protocol reader's own rule; not under pacing, nor where the rhythm itself is a wide
  complex tachycardia); AV dissociation at a slow regular rate (P waves found before most beats but at
  no consistent PR, no P wave locked to the QRS over all beats and no four beats running at one PR, a
  regular ventricular rhythm under 60 /min: complete heart block); marked QT prolongation (the QTc that decides,
  Framingham's of the QRS-adjusted QT, above 500 ms, AHA/ACCF/HRS 2009 part IV; or Bazett's of
  the same QRS-adjusted QT above 500 ms at a rate of 60-100 /min, where the two agree: a bundle
  branch block or a paced rhythm lengthens the QT by its QRS; not where flutter waves are found, whose
  waves run through the T end, as the protocol reader does not judge it there); extreme bradycardia (under 40 /min) and extreme tachycardia (over 150 /min), the
  limits at which adult guidelines call a rate itself an emergency to be seen now. On a trace with
  muscle artefact (`TraceQuality.muscle_artefact`) each is still raised, and its detail says so;
- the protocol reader (`ingest.protocol`), which reads every study with a signal as a
  second reader beside a model, so a model that calls an inferior STEMI "normal ecg" does
  not make it routine;
- the interpreter that wrote the draft (a model, or the protocol reader itself).

A study without a signal (a scanned PDF the digitiser could not trust) has only the model's
reading: `has_signal` is False and the page shows "no signal: not measured".

The site's list of critical labels (`ECGWL_REVIEW_CRITICAL_LABELS`, `reports.review.config.
critical_in`) decides which labels of the readers count; the measured findings always count.
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from pydantic import BaseModel, Field

from ingest.ecg import Demographics
from ingest.interpretation import Interpretation
from ingest.measure.measured import GroundingFeatures
from ingest.protocol import vocabulary as v
from ingest.protocol.beat_pattern import PR_CONSISTENT_MS, atrial_activity, other_shape_run, per_beat_pr, rr_pattern
from ingest.protocol.conduction import COMPLETE_BBB_FROM_MS
from ingest.protocol.flutter import flutter_waves
from ingest.protocol.ischemia import elevated_leads, elevation_levels, net_qrs, territories_with
from ingest.protocol.reader import PROTOCOL_READER_NAME
from ingest.protocol.rhythm import arm_leads_set_aside, rhythm_class
from ingest.protocol.repolarisation import WIDE_QRS_FROM_MS, deciding_qtc_ms, qrs_adjusted_qt_ms
from reports.measurements import (
    EXTREME_BRADYCARDIA_BELOW_BPM,
    EXTREME_TACHYCARDIA_ABOVE_BPM,
    MARKED_QTC_ABOVE_MS,
)

MEASURED = "measured values"
PROTOCOL_READER = "protocol reader"
WIDE_TACHYCARDIA_ABOVE_BPM = 100.0
# Complete heart block: a regular ventricular rhythm this slow with P waves at no consistent PR.
AV_DISSOCIATION_BELOW_BPM = 60.0
P_FOUND_FROM = 0.5  # P waves before at least half the beats: atrial activity is there...
PR_CONSISTENT_AT_MOST = 0.5  # ...but at a consistent PR before at most half of them
# In complete heart block the P waves march through at their own rate: from one beat to the next the PR
# changes by the difference of the two cycles (P at 80 /min through QRS at 45 /min: 167 ms a beat). This
# many consecutive beats with their PRs within PR_CONSISTENT_MS of their median were conducted, and the
# block is not complete. LUDB 12, a sinus bradycardia at 53 /min whose low P waves were timed at 250-340 ms in
# its first three beats (on a wandering baseline) and 118-133 ms in its last five, was marked complete heart
# block. P waves at independent PRs, spread over a 750 ms atrial cycle, line up so by chance about once in 2,000
# runs of 4 beats.
CONDUCTED_RUN_BEATS = 4

Who = Literal["measured values", "protocol reader", "model"]


class TriageFinding(BaseModel):
    finding: str  # what, in the vocabulary's words: "st elevation (inferior)"
    by: str  # "measured values", "protocol reader", or the interpreter's name
    detail: str = ""  # the evidence in a few words: "measured ST elevation II, III, aVF"

    def text(self) -> str:
        return f"{self.detail or self.finding} ({self.by})"


class Triage(BaseModel):
    """Why a study is (or is not) critical, reader by reader; stored in studies.triage."""

    critical: bool = False
    findings: list[TriageFinding] = Field(default_factory=list)
    has_signal: bool = True
    interpreter: str = ""
    second_reading: list[str] | None = None  # the protocol reader's labels beside a model's

    def summary(self) -> str:
        """ "critical: measured ST elevation II, III, aVF (measured values); ..." or "routine"."""
        if not self.critical:
            return "routine" + ("" if self.has_signal else " (no signal: not measured)")
        return "critical: " + "; ".join(finding.text() for finding in self.findings)


def _lead_names(leads: list[str]) -> str:
    return ", ".join(leads)


def st_elevation_findings(features: GroundingFeatures, demographics: Demographics | None) -> list[TriageFinding]:
    levels = elevation_levels(features)
    if not levels:
        return []
    qrs = features.global_.qrs_ms
    wide = qrs is not None and qrs >= COMPLETE_BBB_FROM_MS
    sex = demographics.sex if demographics else None
    age = demographics.age_years if demographics else None
    counted, _secondary = elevated_leads(levels, net_qrs(features), wide, sex, age)
    return [TriageFinding(finding=v.territory_label(v.ST_ELEVATION, territory), by=MEASURED,
                          detail=f"measured ST elevation {_lead_names(leads)}")
            for territory, leads in territories_with(counted).items()]


def _av_dissociation(features: GroundingFeatures) -> TriageFinding | None:
    rhythm = features.rhythm
    hr = features.global_.hr_bpm
    if hr is None or hr >= AV_DISSOCIATION_BELOW_BPM or not rhythm.p_present:
        return None
    known = [present for present in rhythm.p_present if present is not None]
    if not known or sum(known) / len(known) < P_FOUND_FROM:
        return None
    if rr_pattern(rhythm).irregular is not False:
        return None
    activity = atrial_activity(features)
    # A P wave locked to the QRS over all beats (the protocol reader's own rule) conducts: no dissociation,
    # though single beats' P waves were timed at scattered PRs.
    if activity.share is None or activity.share > PR_CONSISTENT_AT_MOST or activity.locked:
        return None
    if _conducted_run(per_beat_pr(features, len(rhythm.p_present)), rhythm.ectopic_beats):
        return None
    return TriageFinding(finding=v.COMPLETE_HEART_BLOCK, by=MEASURED,
                         detail=f"measured AV dissociation: P waves at no consistent PR, regular QRS at {round(hr)} /min")


def _conducted_run(beat_pr_ms: list[float | None], ectopic: list[bool]) -> bool:
    """Whether CONDUCTED_RUN_BEATS consecutive dominant beats have a timed PR within PR_CONSISTENT_MS of their median."""
    run: list[float] = []
    for n, pr in enumerate(beat_pr_ms):
        if pr is None or (n < len(ectopic) and ectopic[n]):
            run = []
            continue
        run.append(pr)
        window = run[-CONDUCTED_RUN_BEATS:]
        if len(window) == CONDUCTED_RUN_BEATS:
            middle = statistics.median(window)
            if all(abs(value - middle) <= PR_CONSISTENT_MS for value in window):
                return True
    return False


def measured_findings(features: GroundingFeatures | None, demographics: Demographics | None = None) -> list[TriageFinding]:
    """The critical findings the measured values support on their own (see the module docstring)."""
    if features is None:
        return []
    found: list[TriageFinding] = []
    measured = features.global_
    hr, qrs = measured.hr_bpm, measured.qrs_ms
    # A sinus tachycardia with a bundle branch block is wide and fast too; a sinus P wave before most beats at
    # a consistent PR of 120 ms or more (the protocol reader's own sinus rule) tells it from a ventricular one.
    wide_tachycardia = hr is not None and qrs is not None and hr > WIDE_TACHYCARDIA_ABOVE_BPM \
        and qrs >= COMPLETE_BBB_FROM_MS and rhythm_class(features) != "sinus"
    if wide_tachycardia:
        found.append(TriageFinding(finding=v.WIDE_COMPLEX_TACHYCARDIA, by=MEASURED,
                                   detail=f"measured QRS {round(qrs)} ms at {round(hr)} /min: wide complex tachycardia"))
    else:
        if not features.voltages.gain_suspect:  # ST levels at a suspect gain are not read, as the reader does
            found += st_elevation_findings(arm_leads_set_aside(features), demographics)
        run = None if features.rhythm.paced else other_shape_run(features.rhythm)
        if run is not None:
            found.append(TriageFinding(finding=v.NON_SUSTAINED_VT, by=MEASURED,
                                       detail=(f"measured run of {run.beats} beats of another QRS shape at "
                                               f"{run.rate_per_min} /min: non-sustained ventricular tachycardia")))
    if hr is not None and round(hr) < EXTREME_BRADYCARDIA_BELOW_BPM:
        found.append(TriageFinding(finding="extreme bradycardia", by=MEASURED,
                                   detail=f"measured heart rate {round(hr)} /min (< {EXTREME_BRADYCARDIA_BELOW_BPM:.0f})"))
    if hr is not None and round(hr) > EXTREME_TACHYCARDIA_ABOVE_BPM:
        found.append(TriageFinding(finding="extreme tachycardia", by=MEASURED,
                                   detail=f"measured heart rate {round(hr)} /min (> {EXTREME_TACHYCARDIA_ABOVE_BPM:.0f})"))
    block = _av_dissociation(features)
    if block is not None:
        found.append(block)
    qtc = _marked_qtc(features)
    if qtc is not None:
        found.append(TriageFinding(finding=v.MARKED_QT_PROLONGATION, by=MEASURED, detail=qtc))
    if features.quality.muscle_artefact:
        # Still raised (a STEMI under tremor is a STEMI), but the reviewer is told what the values stand on.
        found = [finding.model_copy(update={"detail": f"{finding.detail}, on a trace with muscle artefact"})
                 for finding in found]
    return found


def _marked_qtc(features: GroundingFeatures) -> str | None:
    if flutter_waves(features) is not None:  # the T end measured on flutter waves is theirs (the reader's rule)
        return None
    measured = features.global_
    rr = measured.rr_ms or (60000.0 / measured.hr_bpm if measured.hr_bpm else None)
    if measured.qt_ms is not None and rr:
        deciding = deciding_qtc_ms(measured.qt_ms, rr, measured.qrs_ms)
        if deciding > MARKED_QTC_ABOVE_MS:
            return f"measured QTc {round(deciding)} ms (Framingham) > {MARKED_QTC_ABOVE_MS:.0f}"
    hr = measured.hr_bpm
    if hr is None or not 60 <= hr <= 100:
        return None
    bazett, adjusted = _bazett_qtc(measured.qt_ms, rr, measured.qrs_ms, measured.qtc_ms)
    if bazett is not None and bazett > MARKED_QTC_ABOVE_MS:
        basis = f", of the QT adjusted for the QRS of {round(measured.qrs_ms or 0)} ms" if adjusted else ""
        return f"measured QTc {round(bazett)} ms (Bazett{basis}) > {MARKED_QTC_ABOVE_MS:.0f}"
    return None


def _bazett_qtc(qt_ms: float | None, rr_ms: float | None, qrs_ms: float | None,
                qtc_ms: float | None) -> tuple[float | None, bool]:
    """(Bazett's QTc of the QT adjusted for a wide QRS as the protocol reader adjusts it, whether it was
    adjusted): a bundle branch block or a paced rhythm lengthens the QT by its QRS, not by its
    repolarisation. Without a QT to adjust, the QTc as measured, and only for a QRS not known to be wide."""
    if qt_ms is not None and rr_ms:
        adjusted_qt = qrs_adjusted_qt_ms(qt_ms, qrs_ms)
        return adjusted_qt / math.sqrt(rr_ms / 1000.0), adjusted_qt != qt_ms
    if qtc_ms is not None and (qrs_ms is None or qrs_ms < WIDE_QRS_FROM_MS):
        return qtc_ms, False
    return None, False


def _label_findings(labels: list[str], by: str, configured: list[str] | None) -> list[TriageFinding]:
    from reports.review.config import critical_in

    return [TriageFinding(finding=label, by=by) for label in critical_in(labels, configured)]


def triage(
    features: GroundingFeatures | None, demographics: Demographics | None, interpretation: Interpretation,
    second_reading: list[str] | None = None, configured: list[str] | None = None,
) -> Triage:
    """Every reader's critical findings; critical when any reader found one.

    `second_reading`: the protocol reader's labels when another interpreter wrote the draft
    (None when the protocol reader wrote it, or when there is no signal to read).
    """
    drafted_by = PROTOCOL_READER if interpretation.interpreter == PROTOCOL_READER_NAME else interpretation.interpreter
    findings = measured_findings(features, demographics)
    findings += _label_findings(interpretation.parsed.labels, drafted_by, configured)
    if second_reading is not None:
        findings += _label_findings(second_reading, PROTOCOL_READER, configured)
    return Triage(critical=bool(findings), findings=findings, has_signal=features is not None,
                  interpreter=f"{interpretation.interpreter} {interpretation.interpreter_version}".strip(),
                  second_reading=second_reading)


def critical_now(triage_json: dict | None, labels: list[str] | None, configured: list[str] | None) -> bool:
    """Whether a stored study is critical under the site's list `configured`: its measured findings
    always count; the draft's labels and the protocol reader's second reading by that list."""
    from reports.review.config import critical_in

    stored = Triage.model_validate(triage_json) if triage_json else Triage()
    if any(finding.by == MEASURED for finding in stored.findings):
        return True
    return bool(critical_in(labels, configured) or critical_in(stored.second_reading, configured))


def stored_summary(triage_json: dict | None) -> str | None:
    """The one-line summary of a stored triage (studies.triage), None for a study without one."""
    if not triage_json:
        return None
    return Triage.model_validate(triage_json).summary()
