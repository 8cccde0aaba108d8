"""The label mapping: reference codes to the protocol reader's vocabulary, nothing guessed."""

from __future__ import annotations

from ingest.protocol import vocabulary as v
from ingest.validation import labels as lb


def test_every_mapped_label_is_in_the_vocabulary_and_no_code_is_both_mapped_and_unmapped():
    for table, unmapped in ((lb.SNOMED, lb.SNOMED_UNMAPPED), (lb.SCP, lb.SCP_UNMAPPED), (lb.LUDB, lb.LUDB_UNMAPPED),
                            (lb.DEVICE, lb.DEVICE_UNMAPPED)):
        assert not set(table) & set(unmapped)
        for meaning in table.values():
            assert set(meaning.labels) <= set(v.LABELS)
            assert meaning.rhythm is None or meaning.rhythm in lb.RHYTHM_CLASSES
    for meaning in lb.LUDB_PREFIXES.values():
        assert set(meaning.labels) <= set(v.LABELS)


def test_a_sinus_rhythm_alone_is_a_normal_ecg_and_anything_unmapped_is_not():
    assert lb.reference_labels(["snomed:426783006"]).normal
    assert v.NORMAL_ECG in lb.reference_labels(["snomed:426783006"]).labels
    assert lb.reference_labels(["ludb:Rhythm: Sinus rhythm.", "ludb:Electric axis of the heart: normal."]).normal
    with_t = lb.reference_labels(["snomed:426783006", "snomed:59931005"])
    assert not with_t.normal and with_t.unmapped == ["snomed:59931005"]


def test_the_rhythm_class_follows_the_precedence():
    assert lb.reference_labels(["snomed:426783006", "snomed:164889003"]).rhythm == lb.AF
    assert lb.reference_labels(["snomed:426783006", "snomed:427084000"]).rhythm == lb.SINUS_TACHY
    assert lb.reference_labels(["ludb:Rhythm: Sinus rhythm.", "ludb:UNIpolar ventricular pacing."]).rhythm == lb.PACED
    # LUDB 72 states sinus rhythm and P-synchronous pacing only: a paced rhythm, not sinus
    assert lb.reference_labels(["ludb:Rhythm: Sinus rhythm.", "ludb:P-synchrony."]).rhythm == lb.PACED
    assert lb.reference_labels(["snomed:164865005"]).rhythm is None


def test_ludb_families_and_unknown_codes():
    assert lb.reference_labels(["ludb:STEMI: septal."]).labels == [v.ST_ELEVATION]
    assert lb.reference_labels(["ludb:Ventricular extrasystole, type: couplet."]).labels == [v.ECTOPIC_BEATS]
    assert lb.reference_labels(["ludb:Ischemia: apical."]).unmapped == ["ludb:Ischemia: apical."]
    assert lb.reference_labels(["snomed:1"]).unknown == ["snomed:1"]
    assert lb.reference_labels(["scp:AFIB"]).rhythm == lb.AF
    for flutter in ("snomed:164890007", "scp:AFLT", "ludb:Rhythm: Atrial flutter, typical."):
        stated = lb.reference_labels([flutter])
        assert (stated.rhythm, stated.labels) == (lb.FLUTTER, [v.ATRIAL_FLUTTER])


def test_reader_rhythm_classes_and_their_scoring():
    assert lb.reader_rhythm(["left axis deviation", "atrial fibrillation"]) == lb.AF
    assert lb.reader_rhythm(["st elevation (inferior)"]) == lb.NONE_STATED
    assert lb.reader_rhythm(["atrial flutter", "prolonged qt"]) == lb.FLUTTER
    assert lb.rhythm_correct(lb.FLUTTER, lb.OTHER) and not lb.rhythm_correct(lb.FLUTTER, lb.SINUS)
    assert lb.rhythm_correct(lb.FLUTTER, lb.FLUTTER) and not lb.rhythm_correct(lb.FLUTTER, lb.AF)
    assert not lb.rhythm_correct(lb.OTHER, lb.FLUTTER)  # an atrial tachycardia is not flutter
    assert not lb.rhythm_correct(lb.SINUS, lb.OTHER)
    assert lb.general_label("st elevation (inferior)") == v.ST_ELEVATION


def test_the_rhythm_mechanism_ignores_the_sinus_rate_class_and_nothing_else():
    assert lb.rhythm_mechanism_correct(lb.SINUS, lb.SINUS_BRADY) and lb.rhythm_mechanism_correct(lb.SINUS_TACHY, lb.SINUS)
    assert not lb.rhythm_correct(lb.SINUS, lb.SINUS_BRADY)  # the rhythm class itself still counts the rate
    assert not lb.rhythm_mechanism_correct(lb.SINUS, lb.AF) and not lb.rhythm_mechanism_correct(lb.AF, lb.SINUS_TACHY)
    assert not lb.rhythm_mechanism_correct(lb.SINUS_BRADY, lb.OTHER)
    assert lb.rhythm_mechanism_correct(lb.FLUTTER, lb.OTHER) and lb.rhythm_mechanism_correct(lb.PACED, lb.PACED)


def test_every_critical_finding_has_its_supporting_reference_labels():
    assert set(lb.CRITICAL_FINDINGS) <= set(lb.CRITICAL_SUPPORT)
    assert v.ST_ELEVATION in lb.CRITICAL_FINDINGS
