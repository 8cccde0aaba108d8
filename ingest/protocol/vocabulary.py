"""The fixed label vocabulary of the protocol reader, and which labels are critical.

The labels are what goes between `<answer>` and `</answer>`: lower case, one finding each,
';'-separated by `ingest.report_format`. They are module constants so the HL7 builder, the
claim checks (`reports.verify`), the sign-off queue and the training rewards all compare
the same strings.

`CRITICAL_LABELS` are the findings the sign-off queue sorts first. Some of them are never
written by the protocol reader itself (a sustained ventricular tachycardia and complete heart
block need P-QRS dissociation analysis the measured features do not carry; the reader writes
"wide complex tachycardia" instead, and "non-sustained ventricular tachycardia" for a run of
three or more beats of another QRS shape at a tachycardia's rate), but ECG-R1 may write them,
so `critical_labels` also recognises common spellings of other interpreters' labels.
"""

from __future__ import annotations

import re

# --- rate and rhythm (step 1)
SINUS_RHYTHM = "sinus rhythm"
SINUS_BRADYCARDIA = "sinus bradycardia"
SINUS_TACHYCARDIA = "sinus tachycardia"
ATRIAL_FIBRILLATION = "atrial fibrillation"
ATRIAL_FLUTTER = "atrial flutter"
BRADYCARDIA = "bradycardia"  # a slow rate whose rhythm is not sinus
TACHYCARDIA = "tachycardia"  # a fast, narrow rate whose rhythm is not sinus
WIDE_COMPLEX_TACHYCARDIA = "wide complex tachycardia"
VENTRICULAR_TACHYCARDIA = "ventricular tachycardia"  # recognised, never written by the reader
# Three or more consecutive beats of another QRS shape at > 100 /min amid another rhythm (a run, not the rhythm).
NON_SUSTAINED_VT = "non-sustained ventricular tachycardia"
COMPLETE_HEART_BLOCK = "complete heart block"  # recognised, never written by the reader
UNDETERMINED_RHYTHM = "undetermined rhythm"
PACED_RHYTHM = "paced rhythm"  # pacemaker spikes before most beats (ventricular pacing)
ECTOPIC_BEATS = "ectopic beats"
LEAD_REVERSAL = "possible limb lead reversal"
# --- conduction and axis (step 2)
SHORT_PR = "short pr"
FIRST_DEGREE_AV_BLOCK = "first degree av block"
INCOMPLETE_BBB = "incomplete bundle branch block"
RBBB = "right bundle branch block"
LBBB = "left bundle branch block"
IVCD = "intraventricular conduction delay"
LEFT_AXIS_DEVIATION = "left axis deviation"
RIGHT_AXIS_DEVIATION = "right axis deviation"
EXTREME_AXIS_DEVIATION = "extreme axis deviation"
# --- hypertrophy and voltage (step 3)
LVH = "left ventricular hypertrophy"
LOW_QRS_VOLTAGE = "low qrs voltage"
POOR_R_PROGRESSION = "poor r wave progression"
RIGHT_ATRIAL_ABNORMALITY = "right atrial abnormality"
LEFT_ATRIAL_ABNORMALITY = "left atrial abnormality"
# --- ischaemia and infarction (step 4): the reader writes one label per territory,
# "st elevation (inferior)"; the plain forms are what other interpreters write.
ST_ELEVATION = "st elevation"
ST_DEPRESSION = "st depression"
PATHOLOGICAL_Q_WAVES = "pathological q waves"
# --- QT and T waves (step 5)
PROLONGED_QT = "prolonged qt"
MARKED_QT_PROLONGATION = "marked qt prolongation"  # QTc > 500 ms
PEAKED_T_WAVES = "peaked t waves"
FLAT_T_WAVES = "flat t waves"
# --- the whole reading
NORMAL_ECG = "normal ecg"
IMAGE_ONLY = "image only: measurements unavailable, requires cardiologist reading"
READ_FAILED = "protocol reading failed: requires cardiologist reading"
NOT_MEASURABLE = "signal not measurable: requires cardiologist reading"  # nothing else could be said

# The territories of contiguous leads (ECG-R1 protocol, phase 4), in the order they are reported.
TERRITORIES: dict[str, tuple[str, ...]] = {
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
    "septal-anterior": ("V1", "V2", "V3", "V4"),
}


def territory_label(finding: str, territory: str) -> str:
    """"st elevation (inferior)": a territorial finding's label."""
    return f"{finding} ({territory})"


ST_ELEVATION_LABELS: tuple[str, ...] = tuple(territory_label(ST_ELEVATION, t) for t in TERRITORIES)
ST_DEPRESSION_LABELS: tuple[str, ...] = tuple(territory_label(ST_DEPRESSION, t) for t in TERRITORIES)

LABELS: tuple[str, ...] = (
    SINUS_RHYTHM, SINUS_BRADYCARDIA, SINUS_TACHYCARDIA, ATRIAL_FIBRILLATION, ATRIAL_FLUTTER, BRADYCARDIA, TACHYCARDIA,
    WIDE_COMPLEX_TACHYCARDIA, VENTRICULAR_TACHYCARDIA, COMPLETE_HEART_BLOCK, UNDETERMINED_RHYTHM, PACED_RHYTHM,
    ECTOPIC_BEATS, NON_SUSTAINED_VT, LEAD_REVERSAL,
    SHORT_PR, FIRST_DEGREE_AV_BLOCK, INCOMPLETE_BBB, RBBB, LBBB, IVCD,
    LEFT_AXIS_DEVIATION, RIGHT_AXIS_DEVIATION, EXTREME_AXIS_DEVIATION,
    LVH, LOW_QRS_VOLTAGE, POOR_R_PROGRESSION, RIGHT_ATRIAL_ABNORMALITY, LEFT_ATRIAL_ABNORMALITY,
    ST_ELEVATION, *ST_ELEVATION_LABELS, ST_DEPRESSION, *ST_DEPRESSION_LABELS, PATHOLOGICAL_Q_WAVES,
    PROLONGED_QT, MARKED_QT_PROLONGATION, PEAKED_T_WAVES, FLAT_T_WAVES,
    NORMAL_ECG, IMAGE_ONLY, READ_FAILED, NOT_MEASURABLE,
)

# Labels that are normal findings: they do not stop a reading from being a "normal ecg".
NORMAL_LABELS: frozenset[str] = frozenset({SINUS_RHYTHM, NORMAL_ECG})

CRITICAL_LABELS: frozenset[str] = frozenset({
    ST_ELEVATION, *ST_ELEVATION_LABELS,
    VENTRICULAR_TACHYCARDIA, NON_SUSTAINED_VT, WIDE_COMPLEX_TACHYCARDIA, COMPLETE_HEART_BLOCK,
    MARKED_QT_PROLONGATION,
})

# Other interpreters' spellings of critical findings (matched in a lower-cased label).
_CRITICAL_PATTERN = re.compile(
    r"st[- ]?(?:segment )?elevation|\bstemi\b|^ste$|ventricular tachycardia|^vt$|ventricular fibrillation"
    r"|wide[- ]complex tachycardia|complete (?:heart|av|atrioventricular) block|third[- ]degree"
    r"|marked qtc? prolongation"
)
# ...unless the label denies the finding ("no st elevation").
_NEGATED = re.compile(r"^(?:no|not|without|absence of|negative for)\b")


def critical_labels(labels: list[str]) -> list[str]:
    """The labels (any interpreter's) that name a critical finding, in the order given."""
    found = []
    for label in labels:
        text = label.strip().lower()
        if text in CRITICAL_LABELS or (_CRITICAL_PATTERN.search(text) and not _NEGATED.search(text)):
            found.append(label)
    return found


def is_critical(labels: list[str]) -> bool:
    """True when any label names a critical finding: the sign-off queue sorts these first."""
    return bool(critical_labels(labels))
