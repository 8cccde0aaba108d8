"""Evaluation metrics against hand-computed values: label spaces, F1, AUC, Hamming, BLEU-4, ROUGE-L."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (CODE_15, CPSC_2018, ECGBENCH_SPACES, PTBXL_SUPER, bleu4, consistency, exact_match,
                              hamming_loss, lcs_length, macro_auc, macro_f1, mean, protocol_space, rouge_l,
                              space_metrics)

# Four samples in the CODE-15% space (see test_code15_space_by_hand for the arithmetic).
REFERENCE = [["sinus bradycardia", "first degree av block"], ["atrial fibrillation"],
             ["sinus rhythm", "normal ecg"], ["sinus tachycardia"]]
PREDICTED = [["sinus bradycardia"], ["atrial fibrillation", "right bundle branch block"],
             ["sinus rhythm", "normal ecg"], [" Sinus Tachycardia "]]


def test_code15_space_by_hand() -> None:
    m = space_metrics(CODE_15, PREDICTED, REFERENCE)
    assert m.labels == ["1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"] and m.samples == 4
    assert m.support == {"1dAVb": 1, "RBBB": 0, "LBBB": 0, "SB": 1, "ST": 1, "AF": 1}
    # Samples 3 (both empty in this space) and 4 (case and spaces ignored) match; 1 and 2 do not.
    assert m.exact_match == pytest.approx(0.5)
    # 24 cells, two wrong: the missed 1dAVb of sample 1, the extra RBBB of sample 2.
    assert m.hamming_loss == pytest.approx(2 / 24)
    # F1 over 1dAVb (0), RBBB (0, predicted only), SB, ST, AF (1 each); LBBB is neither present nor predicted.
    assert (m.macro_f1, m.f1_labels) == (pytest.approx(3 / 5), 5)
    # AUC over the labels with both classes: 1dAVb (never predicted: all ties, 0.5), SB, ST, AF (1.0 each).
    assert (m.macro_auc, m.auc_labels) == (pytest.approx(3.5 / 4), 4)


def test_a_space_without_positives_has_no_auc() -> None:
    m = space_metrics(CPSC_2018, [["left bundle branch block"], ["sinus rhythm"]],
                      [["sinus rhythm"], ["sinus bradycardia"]])
    assert m.macro_auc is None and m.auc_labels == 0
    assert (m.macro_f1, m.f1_labels) == (0.0, 1)  # LBBB predicted, never present
    assert m.exact_match == pytest.approx(0.5)
    assert m.hamming_loss == pytest.approx(1 / 18)


def test_a_label_present_in_every_sample_has_no_auc() -> None:
    m = space_metrics(CODE_15, [["atrial fibrillation"], []], [["atrial fibrillation"], ["atrial fibrillation"]])
    assert m.macro_auc is None and m.auc_labels == 0
    assert m.macro_f1 == pytest.approx(2 / 3)  # TP 1, FN 1


def test_nothing_present_or_predicted_has_no_f1() -> None:
    m = space_metrics(PTBXL_SUPER, [["sinus rhythm"]], [["sinus rhythm"]])
    assert m.macro_f1 is None and m.f1_labels == 0
    assert m.exact_match == 1.0 and m.hamming_loss == 0.0


def test_ptbxl_super_mapping() -> None:
    assert PTBXL_SUPER.project(["normal ecg", "sinus rhythm"]) == {"NORM"}
    assert PTBXL_SUPER.project(["st elevation (inferior)", "prolonged qt"]) == {"STTC"}
    assert PTBXL_SUPER.project(["right bundle branch block", "first degree av block"]) == {"CD"}
    assert PTBXL_SUPER.project(["Left Ventricular Hypertrophy", "pathological q waves"]) == {"HYP", "MI"}
    assert PTBXL_SUPER.project(["left axis deviation", "ectopic beats", "atrial fibrillation"]) == set()


def test_cpsc_mapping_keeps_st_direction_and_leaves_ectopy_out() -> None:
    assert CPSC_2018.project(["st depression (lateral)", "st elevation"]) == {"STD", "STE"}
    assert CPSC_2018.project(["ectopic beats"]) == set()  # PAC vs PVC is not in the vocabulary


def test_every_mapping_targets_a_label_of_its_space() -> None:
    for space in ECGBENCH_SPACES:
        assert set(space.mapping.values()) <= set(space.labels), space.name
        assert all(key == key.lower() for key in space.mapping), space.name


def test_protocol_space_is_the_sorted_reference_labels() -> None:
    space = protocol_space([["sinus rhythm", "Normal ECG"], ["atrial fibrillation", " sinus rhythm"], []])
    assert space.labels == ["atrial fibrillation", "normal ecg", "sinus rhythm"]
    m = space_metrics(space, [["sinus rhythm", "normal ecg"], ["atrial fibrillation"], ["made-up label"]],
                      [["sinus rhythm", "normal ecg"], ["atrial fibrillation", "sinus rhythm"], []])
    # Sample 2 misses "sinus rhythm"; sample 3's label outside the space vanishes in it, so it matches.
    assert m.exact_match == pytest.approx(2 / 3)
    assert m.hamming_loss == pytest.approx(1 / 9)
    assert m.macro_f1 == pytest.approx((1 + 1 + 2 / 3) / 3)


def test_matrix_level_functions() -> None:
    y_true = np.array([[1, 0], [0, 0], [1, 1]])
    y_pred = np.array([[1, 0], [1, 0], [0, 1]])
    # Label 0: positives score {1, 0}, the negative scores 1: (0.5 tie + 0) / 2 = 0.25; label 1: 1.0.
    assert macro_auc(y_true, y_pred) == (pytest.approx(0.625), 2)
    # Label 0: TP 1, FP 1, FN 1 -> 0.5; label 1: 1.0.
    assert macro_f1(y_true, y_pred) == (pytest.approx(0.75), 2)
    assert hamming_loss(y_true, y_pred) == pytest.approx(2 / 6)
    assert hamming_loss(np.zeros((0, 3)), np.zeros((0, 3))) is None


def test_exact_match_edges() -> None:
    assert exact_match([], []) is None
    with pytest.raises(ValueError):
        exact_match([frozenset()], [])


def test_bleu4_by_hand() -> None:
    # n-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (no brevity penalty): (1/12) ** 0.25.
    assert bleu4("the cat sat on a mat", "the cat sat on the mat") == pytest.approx((1 / 12) ** 0.25)
    assert bleu4("sinus rhythm at 72 bpm", "sinus rhythm at 72 bpm") == pytest.approx(1.0)
    assert bleu4("", "sinus rhythm") == 0.0


@pytest.mark.parametrize(("candidate", "reference", "expected"), [
    ("the cat sat on the mat", "the cat is on the mat", 5 / 6),  # LCS 5 of 6 and 6
    ("a b c d", "a c e", 4 / 7),  # LCS 2: P 1/2, R 2/3
    ("Sinus rhythm, 72 bpm.", "sinus RHYTHM 72 bpm", 1.0),  # case and punctuation are not tokens
    ("a b", "c d", 0.0),
    ("", "a", 0.0),
    ("", "", 0.0),
])
def test_rouge_l_by_hand(candidate: str, reference: str, expected: float) -> None:
    assert rouge_l(candidate, reference) == pytest.approx(expected)


def test_lcs_length() -> None:
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0


def test_consistency_means_over_pairs() -> None:
    c = consistency(["a b c d", "x y"], ["a c e", "x y"])
    assert c.pairs == 2
    assert c.rouge_l == pytest.approx((4 / 7 + 1.0) / 2)
    assert c.bleu4 == pytest.approx((bleu4("a b c d", "a c e") + 1.0) / 2)
    empty = consistency([], [])
    assert (empty.pairs, empty.bleu4, empty.rouge_l) == (0, None, None)


def test_mean_of_nothing_is_none() -> None:
    assert mean([]) is None
    assert mean([1.0, 0.0]) == 0.5
