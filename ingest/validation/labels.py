"""Reference statements to the protocol reader's vocabulary: one table per coding system.

The references of the real-data set carry their datasets' own codes, namespaced:

    snomed:426783006                SNOMED CT (PhysioNet/CinC 2020/2021 challenge headers, "#Dx:")
    scp:NORM                        SCP-ECG statements as PTB-XL uses them
    ludb:Rhythm: Sinus rhythm.      LUDB's diagnosis lines, verbatim
    device:RITMO SINUSALE           a recording device's own statements (the Mortara file)

Each code either has a `Meaning` (the vocabulary labels it supports, the rhythm class it
states, whether it is compatible with a normal ECG) or is listed in an `UNMAPPED` table
with the reason. Nothing is guessed: a finding with no vocabulary label (T-wave inversion,
non-specific ST-T change, fascicular blocks...) is listed, and a record's figures then say
nothing about it. Infarction statements are taken as the reference for "pathological q
waves" (the closest statement the datasets make), and "left ventricular high voltage" for
"left ventricular hypertrophy" (our label is voltage-based too).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from ingest.protocol import vocabulary as v

# --- rhythm classes: what "rhythm right" is judged on ------------------------------------------
SINUS = "sinus rhythm"
SINUS_BRADY = "sinus bradycardia"
SINUS_TACHY = "sinus tachycardia"
AF = "atrial fibrillation"
FLUTTER = "atrial flutter"
PACED = "paced rhythm"
OTHER = "other rhythm"  # atrial/junctional/ventricular tachycardias, wandering pacemaker...
NONE_STATED = "no rhythm stated"

RHYTHM_CLASSES: tuple[str, ...] = (SINUS, SINUS_BRADY, SINUS_TACHY, AF, FLUTTER, PACED, OTHER)
# When a record states several (sinus rhythm and sinus tachycardia; paced with sinus), the
# first of these names its rhythm.
RHYTHM_PRECEDENCE: tuple[str, ...] = (AF, FLUTTER, PACED, OTHER, SINUS_TACHY, SINUS_BRADY, SINUS)

# The reader's rhythm labels to a rhythm class: any other non-sinus, non-AF, non-flutter, non-paced
# rhythm label it writes is "other rhythm".
_READER_RHYTHM: dict[str, str] = {
    v.SINUS_RHYTHM: SINUS, v.SINUS_BRADYCARDIA: SINUS_BRADY, v.SINUS_TACHYCARDIA: SINUS_TACHY,
    v.ATRIAL_FIBRILLATION: AF, v.ATRIAL_FLUTTER: FLUTTER,
    v.BRADYCARDIA: OTHER, v.TACHYCARDIA: OTHER, v.WIDE_COMPLEX_TACHYCARDIA: OTHER,
    v.VENTRICULAR_TACHYCARDIA: OTHER, v.COMPLETE_HEART_BLOCK: OTHER, v.UNDETERMINED_RHYTHM: OTHER,
    v.PACED_RHYTHM: PACED,
}


@dataclass(frozen=True)
class Meaning:
    """What one reference statement says, in our terms."""

    labels: tuple[str, ...] = ()
    rhythm: str | None = None
    normal: bool = False  # compatible with a "normal ecg" (sinus rhythm, a normal axis)


def _m(*labels: str, rhythm: str | None = None, normal: bool = False) -> Meaning:
    return Meaning(labels=labels, rhythm=rhythm, normal=normal)


_Q = v.PATHOLOGICAL_Q_WAVES
_ECTOPIC = v.ECTOPIC_BEATS

# --- SNOMED CT (the CinC 2020/2021 challenge's diagnosis codes) ----------------------------------
SNOMED: dict[str, Meaning] = {
    "426783006": _m(v.SINUS_RHYTHM, rhythm=SINUS, normal=True),  # sinus rhythm
    "427393009": _m(v.SINUS_RHYTHM, rhythm=SINUS, normal=True),  # sinus arrhythmia (a sinus rhythm)
    "426177001": _m(v.SINUS_BRADYCARDIA, rhythm=SINUS_BRADY),  # sinus bradycardia
    "427084000": _m(v.SINUS_TACHYCARDIA, rhythm=SINUS_TACHY),  # sinus tachycardia
    "164889003": _m(v.ATRIAL_FIBRILLATION, rhythm=AF),  # atrial fibrillation
    "164890007": _m(v.ATRIAL_FLUTTER, rhythm=FLUTTER),  # atrial flutter
    "10370003": _m(v.PACED_RHYTHM, rhythm=PACED),  # pacing rhythm
    "713422000": _m(rhythm=OTHER),  # atrial tachycardia
    "233897008": _m(rhythm=OTHER),  # atrioventricular re-entrant tachycardia
    "425856008": _m(v.VENTRICULAR_TACHYCARDIA, rhythm=OTHER),  # paroxysmal ventricular tachycardia
    "164895002": _m(v.VENTRICULAR_TACHYCARDIA, rhythm=OTHER),  # ventricular tachycardia
    "284470004": _m(_ECTOPIC),  # premature atrial contraction
    "63593006": _m(_ECTOPIC),  # supraventricular premature beats
    "251170000": _m(_ECTOPIC),  # blocked premature atrial contraction
    "427172004": _m(_ECTOPIC),  # premature ventricular contractions
    "17338001": _m(_ECTOPIC),  # ventricular premature beats
    "164884008": _m(_ECTOPIC),  # ventricular ectopics
    "270492004": _m(v.FIRST_DEGREE_AV_BLOCK),  # 1st degree AV block
    "164947007": _m(v.FIRST_DEGREE_AV_BLOCK),  # prolonged PR interval
    "27885002": _m(v.COMPLETE_HEART_BLOCK),  # complete heart block
    "59118001": _m(v.RBBB),  # right bundle branch block
    "713427006": _m(v.RBBB),  # complete right bundle branch block
    "713426002": _m(v.INCOMPLETE_BBB),  # incomplete right bundle branch block
    "164909002": _m(v.LBBB),  # left bundle branch block
    "733534002": _m(v.LBBB),  # complete left bundle branch block
    "698252002": _m(v.IVCD),  # non-specific intraventricular conduction disorder
    "39732003": _m(v.LEFT_AXIS_DEVIATION),  # left axis deviation
    "47665007": _m(v.RIGHT_AXIS_DEVIATION),  # right axis deviation
    "164873001": _m(v.LVH),  # left ventricular hypertrophy
    "55827005": _m(v.LVH),  # left ventricular high voltage (our LVH is voltage-based)
    "251146004": _m(v.LOW_QRS_VOLTAGE),  # low QRS voltages
    "253352002": _m(v.LEFT_ATRIAL_ABNORMALITY),  # left atrial abnormality
    "67741000119109": _m(v.LEFT_ATRIAL_ABNORMALITY),  # left atrial enlargement
    "446358003": _m(v.RIGHT_ATRIAL_ABNORMALITY),  # right atrial hypertrophy
    "164931005": _m(v.ST_ELEVATION),  # ST elevation
    "429622005": _m(v.ST_DEPRESSION),  # ST depression
    "164865005": _m(_Q),  # myocardial infarction
    "164867002": _m(_Q),  # old myocardial infarction
    "164917005": _m(_Q),  # Q wave abnormal
    "111975006": _m(v.PROLONGED_QT),  # prolonged QT interval
}
SNOMED_UNMAPPED: dict[str, str] = {
    "426627000": "bradycardia, origin not stated: no rhythm class",
    "106068003": "meaning not confirmed from the challenge's tables: left out",
    "251187003": "meaning not confirmed from the challenge's tables: left out",
    "365413008": "R wave abnormal: no vocabulary label",
    "13640000": "fusion beats: no vocabulary label",
    "233917008": "AV block, degree not stated: no vocabulary label",
    "195042002": "2nd degree AV block: no vocabulary label",
    "89792004": "right ventricular hypertrophy: no vocabulary label",
    "445118002": "left anterior fascicular block: no vocabulary label",
    "164934002": "T wave abnormal: no vocabulary label",
    "59931005": "T wave inversion: no vocabulary label",
    "251259000": "high T voltage: not the same finding as peaked T waves",
    "428750005": "non-specific ST-T abnormality: no vocabulary label",
    "55930002": "ST changes, direction not stated: no vocabulary label",
    "164930006": "ST interval abnormal, direction not stated: no vocabulary label",
    "164861001": "myocardial ischaemia, ST direction not stated: no vocabulary label",
    "413844008": "chronic myocardial ischaemia: no vocabulary label",
    "426434006": "anterior ischaemia, ST direction not stated: no vocabulary label",
    "425623009": "lateral ischaemia, ST direction not stated: no vocabulary label",
    "164951009": "QRS complex abnormal: no vocabulary label",
}

# --- SCP-ECG statements as PTB-XL uses them -----------------------------------------------------
SCP: dict[str, Meaning] = {
    "NORM": _m(v.NORMAL_ECG, normal=True), "SR": _m(v.SINUS_RHYTHM, rhythm=SINUS, normal=True),
    "SARRH": _m(v.SINUS_RHYTHM, rhythm=SINUS, normal=True), "SBRAD": _m(v.SINUS_BRADYCARDIA, rhythm=SINUS_BRADY),
    "STACH": _m(v.SINUS_TACHYCARDIA, rhythm=SINUS_TACHY), "AFIB": _m(v.ATRIAL_FIBRILLATION, rhythm=AF),
    "AFLT": _m(v.ATRIAL_FLUTTER, rhythm=FLUTTER), "PACE": _m(v.PACED_RHYTHM, rhythm=PACED), "SVTAC": _m(rhythm=OTHER), "PSVT": _m(rhythm=OTHER),
    "SVARR": _m(rhythm=OTHER),
    "PAC": _m(_ECTOPIC), "PVC": _m(_ECTOPIC), "PRC(S)": _m(_ECTOPIC), "BIGU": _m(_ECTOPIC), "TRIGU": _m(_ECTOPIC),
    "1AVB": _m(v.FIRST_DEGREE_AV_BLOCK), "LPR": _m(v.FIRST_DEGREE_AV_BLOCK), "3AVB": _m(v.COMPLETE_HEART_BLOCK),
    "CRBBB": _m(v.RBBB), "CLBBB": _m(v.LBBB), "IRBBB": _m(v.INCOMPLETE_BBB), "ILBBB": _m(v.INCOMPLETE_BBB),
    "IVCD": _m(v.IVCD),
    "LVH": _m(v.LVH), "VCLVH": _m(v.LVH), "LAO/LAE": _m(v.LEFT_ATRIAL_ABNORMALITY),
    "RAO/RAE": _m(v.RIGHT_ATRIAL_ABNORMALITY), "LVOLT": _m(v.LOW_QRS_VOLTAGE), "LNGQT": _m(v.PROLONGED_QT),
    "STE_": _m(v.ST_ELEVATION), "STD_": _m(v.ST_DEPRESSION),
    **{code: _m(_Q) for code in ("IMI", "AMI", "ASMI", "ALMI", "ILMI", "LMI", "IPLMI", "IPMI", "PMI", "QWAVE")},
}
SCP_UNMAPPED: dict[str, str] = {
    "2AVB": "2nd degree AV block: no vocabulary label",
    "LAFB": "left anterior fascicular block: no vocabulary label",
    "LPFB": "left posterior fascicular block: no vocabulary label",
    "WPW": "Wolff-Parkinson-White: no vocabulary label",
    "RVH": "right ventricular hypertrophy: no vocabulary label",
    "SEHYP": "septal hypertrophy: no vocabulary label",
    "HVOLT": "high QRS voltage without a hypertrophy statement: left out",
    "ABQRS": "abnormal QRS: no vocabulary label",
    "ANEUR": "ST-T suggesting aneurysm: no vocabulary label",
    "EL": "electrolyte disturbance or drug effect: no vocabulary label",
    "DIG": "digitalis effect: no vocabulary label",
    "NST_": "non-specific ST change: no vocabulary label",
    "NDT": "non-diagnostic T abnormality: no vocabulary label",
    "NT_": "non-specific T change: no vocabulary label",
    "LOWT": "low T amplitude: not the same finding as flat T waves",
    "INVT": "inverted T waves: no vocabulary label",
    "TAB_": "T wave abnormality: no vocabulary label",
    **{code: "ischaemia or injury, ST direction not stated: no vocabulary label"
       for code in ("ISC_", "ISCAL", "ISCAS", "ISCIN", "ISCIL", "ISCAN", "ISCLA",
                    "INJAS", "INJAL", "INJIN", "INJLA", "INJIL")},
}

# --- LUDB's diagnosis lines ---------------------------------------------------------------------
LUDB: dict[str, Meaning] = {
    "Rhythm: Sinus rhythm.": _m(v.SINUS_RHYTHM, rhythm=SINUS, normal=True),
    "Rhythm: Sinus arrhythmia.": _m(v.SINUS_RHYTHM, rhythm=SINUS, normal=True),
    "Rhythm: Irregular sinus rhythm.": _m(v.SINUS_RHYTHM, rhythm=SINUS),
    "Rhythm: Sinus bradycardia.": _m(v.SINUS_BRADYCARDIA, rhythm=SINUS_BRADY),
    "Rhythm: Sinus tachycardia.": _m(v.SINUS_TACHYCARDIA, rhythm=SINUS_TACHY),
    "Rhythm: Atrial fibrillation.": _m(v.ATRIAL_FIBRILLATION, rhythm=AF),
    "Rhythm: Atrial flutter, typical.": _m(v.ATRIAL_FLUTTER, rhythm=FLUTTER),
    "Wandering atrial pacemaker.": _m(rhythm=OTHER),
    "UNIpolar ventricular pacing.": _m(v.PACED_RHYTHM, rhythm=PACED),
    "BIpolar ventricular pacing.": _m(v.PACED_RHYTHM, rhythm=PACED),
    "Biventricular pacing.": _m(v.PACED_RHYTHM, rhythm=PACED),
    "UNIpolar atrial pacing.": _m(v.PACED_RHYTHM, rhythm=PACED),
    # P-synchronous ventricular pacing (VDD/VAT): the ventricles paced after each sensed P wave.
    "P-synchrony.": _m(v.PACED_RHYTHM, rhythm=PACED),
    "Electric axis of the heart: normal.": _m(normal=True),
    "Electric axis of the heart: vertical.": _m(normal=True),
    "Electric axis of the heart: horizontal.": _m(normal=True),
    "Electric axis of the heart: left axis deviation.": _m(v.LEFT_AXIS_DEVIATION),
    "Electric axis of the heart: right axis deviation.": _m(v.RIGHT_AXIS_DEVIATION),
    "Left ventricular hypertrophy.": _m(v.LVH),
    "Left atrial hypertrophy.": _m(v.LEFT_ATRIAL_ABNORMALITY),
    "Left atrial overload.": _m(v.LEFT_ATRIAL_ABNORMALITY),
    "Right atrial hypertrophy.": _m(v.RIGHT_ATRIAL_ABNORMALITY),
    "Right atrial overload.": _m(v.RIGHT_ATRIAL_ABNORMALITY),
    "I degree AV block.": _m(v.FIRST_DEGREE_AV_BLOCK),
    "III degree AV-block.": _m(v.COMPLETE_HEART_BLOCK),
    "Complete right bundle branch block.": _m(v.RBBB),
    "Complete left bundle branch block.": _m(v.LBBB),
    "Incomplete right bundle branch block.": _m(v.INCOMPLETE_BBB),
    "Incomplete left bundle branch block.": _m(v.INCOMPLETE_BBB),
    "Non-specific intravintricular conduction delay.": _m(v.IVCD),
}
# Families of LUDB lines that differ only in the wall or the kind of extrasystole.
LUDB_PREFIXES: dict[str, Meaning] = {
    "STEMI:": _m(v.ST_ELEVATION),
    "Scar formation:": _m(_Q),
    "Ventricular extrasystole": _m(_ECTOPIC),
    "Atrial extrasystole": _m(_ECTOPIC),
}
LUDB_UNMAPPED: dict[str, str] = {
    "Left ventricular overload.": "strain pattern: no vocabulary label",
    "Left anterior hemiblock.": "left anterior fascicular block: no vocabulary label",
    "Right ventricular hypertrophy.": "no vocabulary label",
    "Early repolarization syndrome.": "no vocabulary label",
    "Sinoatrial blockade, undefined.": "no vocabulary label",
    "Aberrant conduction.": "no vocabulary label",
    "Non-specific repolarization abnormalities:": "no vocabulary label (every wall)",
    "Undefined ischemia/scar/supp.NSTEMI:": "ST direction not stated: no vocabulary label (every wall)",
    "Ischemia:": "ST direction not stated: no vocabulary label (every wall)",
}

# --- recording devices' own statements (the Mortara ELI 250 file, Italian) ------------------------
DEVICE: dict[str, Meaning] = {
    "RITMO SINUSALE": _m(v.SINUS_RHYTHM, rhythm=SINUS, normal=True),
    "ECG NORMALE": _m(v.NORMAL_ECG, normal=True),
}
DEVICE_UNMAPPED: dict[str, str] = {}


class ReferenceLabels(BaseModel):
    """What a record's reference statements say, in our vocabulary."""

    labels: list[str] = Field(default_factory=list)  # sorted vocabulary labels
    rhythm: str | None = None  # one of RHYTHM_CLASSES, None when no rhythm is stated
    normal: bool = False  # a sinus rhythm and nothing but normal statements
    unmapped: list[str] = Field(default_factory=list)  # codes listed in an UNMAPPED table
    unknown: list[str] = Field(default_factory=list)  # codes in no table at all (should not occur)


def meaning(code: str) -> Meaning | str | None:
    """A namespaced code's Meaning, the reason it is unmapped (a str), or None if it is in no table."""
    system, _, value = code.partition(":")
    value = value.strip()
    if system == "snomed":
        return SNOMED.get(value) or SNOMED_UNMAPPED.get(value)
    if system == "scp":
        return SCP.get(value) or SCP_UNMAPPED.get(value)
    if system == "device":
        return DEVICE.get(value) or DEVICE_UNMAPPED.get(value)
    if system == "ludb":
        if value in LUDB:
            return LUDB[value]
        for prefix, found in LUDB_PREFIXES.items():
            if value.startswith(prefix):
                return found
        for prefix, reason in LUDB_UNMAPPED.items():
            if value.startswith(prefix):
                return reason
    return None


def reference_labels(codes: list[str]) -> ReferenceLabels:
    """The vocabulary labels, rhythm class and normality that a record's codes state."""
    labels: set[str] = set()
    rhythms: set[str] = set()
    unmapped, unknown = [], []
    all_normal = True
    for code in codes:
        found = meaning(code)
        if found is None:
            unknown.append(code)
            all_normal = False
        elif isinstance(found, str):
            unmapped.append(code)
            all_normal = False
        else:
            labels.update(found.labels)
            if found.rhythm:
                rhythms.add(found.rhythm)
            all_normal = all_normal and found.normal
    rhythm = next((name for name in RHYTHM_PRECEDENCE if name in rhythms), None)
    normal = all_normal and rhythm == SINUS
    if normal:
        labels.add(v.NORMAL_ECG)
    return ReferenceLabels(labels=sorted(labels), rhythm=rhythm, normal=normal, unmapped=unmapped, unknown=unknown)


# Reader labels scored as the reference statement they are a form of: the references say "ventricular
# tachycardia" (paroxysmal or not) for a run as for a sustained rhythm.
SCORED_AS: dict[str, str] = {v.NON_SUSTAINED_VT: v.VENTRICULAR_TACHYCARDIA}


def general_label(label: str) -> str:
    """A reader label without its territory, as it is scored: "st elevation (inferior)" -> "st elevation",
    "non-sustained ventricular tachycardia" -> "ventricular tachycardia" (`SCORED_AS`)."""
    general = label.split(" (", 1)[0].strip().lower()
    return SCORED_AS.get(general, general)


def reader_rhythm(labels: list[str]) -> str:
    """The rhythm class of the reader's labels (NONE_STATED when it wrote none)."""
    for label in labels:
        found = _READER_RHYTHM.get(general_label(label))
        if found is not None:
            return found
    return NONE_STATED


def rhythm_correct(reference: str, predicted: str) -> bool:
    """Whether the reader's rhythm class matches the reference's.

    A flutter reference is right as "atrial flutter", and as a rhythm the reader left undetermined
    ("undetermined rhythm", "tachycardia"...: flutter at 2:1 hides its waves in the QRS and T, and
    saying no rhythm is not a wrong claim); an "other rhythm" reference only as such a rhythm.
    A paced reference is right as "paced rhythm", and as a rhythm left undetermined (bipolar
    pacing leaves spikes too small to see at 500 Hz: not a wrong claim).
    """
    if reference == PACED:
        return predicted in (PACED, OTHER)
    if reference == FLUTTER:
        return predicted in (FLUTTER, OTHER)
    if reference == OTHER:
        return predicted == OTHER
    return predicted == reference


def rhythm_mechanism(rhythm: str) -> str:
    """The rhythm class without its sinus rate qualifier: sinus bradycardia and tachycardia are sinus.

    The references do not agree on where sinus rhythm ends: LUDB calls 20 records at 54-59 bpm
    "sinus rhythm" and 14 at 50-57 bpm "sinus bradycardia"; the other sources follow 60 and 100
    bpm, as the reader does. Scored this way, a record's rhythm is right when the reader named
    the same mechanism (sinus, fibrillation, flutter or other, paced) at whatever rate: a second
    figure beside the rhythm class, never instead of it.
    """
    return SINUS if rhythm in (SINUS_BRADY, SINUS_TACHY) else rhythm


def rhythm_mechanism_correct(reference: str, predicted: str) -> bool:
    """`rhythm_correct` with sinus bradycardia and tachycardia taken as sinus on both sides."""
    return rhythm_correct(rhythm_mechanism(reference), rhythm_mechanism(predicted))


# Labels that rest on amplitudes or on ratios between leads: not scored on a record whose leads
# were each scaled to 1 mV (LUDB as published). "normal ecg" needs them all, so it is not either.
AMPLITUDE_LABELS: frozenset[str] = frozenset({
    v.LVH, v.LOW_QRS_VOLTAGE, v.LEFT_ATRIAL_ABNORMALITY, v.RIGHT_ATRIAL_ABNORMALITY, v.LEFT_AXIS_DEVIATION,
    v.RIGHT_AXIS_DEVIATION, v.EXTREME_AXIS_DEVIATION, v.ST_ELEVATION, v.ST_DEPRESSION, v.PATHOLOGICAL_Q_WAVES,
    v.POOR_R_PROGRESSION, v.PEAKED_T_WAVES, v.FLAT_T_WAVES, v.NORMAL_ECG, v.LEAD_REVERSAL,
})

# A predicted critical label is not a false alarm when the reference states one of these.
CRITICAL_SUPPORT: dict[str, frozenset[str]] = {
    v.ST_ELEVATION: frozenset({v.ST_ELEVATION}),
    v.WIDE_COMPLEX_TACHYCARDIA: frozenset({v.VENTRICULAR_TACHYCARDIA, v.WIDE_COMPLEX_TACHYCARDIA}),
    v.VENTRICULAR_TACHYCARDIA: frozenset({v.VENTRICULAR_TACHYCARDIA}),
    v.COMPLETE_HEART_BLOCK: frozenset({v.COMPLETE_HEART_BLOCK}),
    v.MARKED_QT_PROLONGATION: frozenset({v.PROLONGED_QT, v.MARKED_QT_PROLONGATION}),
}
# The critical findings, each once (territorial ST elevation labels fold into "st elevation").
CRITICAL_FINDINGS: tuple[str, ...] = tuple(sorted({general_label(label) for label in v.CRITICAL_LABELS}))
