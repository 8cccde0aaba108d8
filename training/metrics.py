"""Evaluation metrics: multi-label diagnosis figures per label space, and text consistency.

Pure functions over label sets and texts; `training.evaluate` feeds them an interpreter's
outputs on a held-out corpus. Definitions (also in training/README.md):

- A *label space* is an ordered list of labels plus a mapping from our label strings to
  them: the protocol vocabulary itself (the labels present in the held-out references),
  and the ECGBench spaces (PTB-XL super classes, CPSC 2018, CODE-15%) through
  `ECGBENCH_SPACES`, which maps only the vocabulary labels that name the same finding.
  A sample's labels in a space are the mapped images of its labels; unmapped labels vanish.
- `exact_match`: the fraction of samples whose predicted label set in the space equals the
  reference set in the space (subset accuracy). Over the whole answer (no mapping) it is
  the "label accuracy" the evaluation report headlines.
- `hamming_loss`: the fraction of (sample, label) cells of the space that are wrong;
  per-label accuracy is 1 - hamming_loss.
- `macro_f1`: the mean over labels of F1 = 2TP / (2TP + FP + FN), over the labels of the
  space that occur in the references or the predictions (a label that is neither present nor
  predicted has no defined F1 and is left out); None when no label qualifies.
- `macro_auc`: the mean over labels of the ROC AUC, over the labels with at least one positive
  and one negative reference; None (not a number) when no label qualifies. Generated
  outputs give no probabilities, so the score is the binary prediction itself (1 predicted,
  0 not); the AUC of a binary score is (sensitivity + specificity) / 2, i.e. balanced accuracy.
- `bleu4`: sentence BLEU-4 of sacrebleu (13a tokenisation, exponential smoothing, effective
  order for short texts), scaled to [0, 1].
- `rouge_l`: the ROUGE-L F-measure (beta 1) on lower-cased alphanumeric tokens, written here:
  F = 2PR / (P + R) with P = LCS / |candidate|, R = LCS / |reference|; 0 when either is empty.

F1, AUC and Hamming loss come from scikit-learn (the reference implementations ECG
benchmarks use); BLEU from sacrebleu (its tokenisation and smoothing are the standard
that makes BLEU figures comparable); ROUGE-L is a small exact dynamic programme, which
spares the rouge-score package and its nltk dependency for a stemmer we do not use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from ingest.protocol import vocabulary as v


class LabelSpace(BaseModel):
    """A benchmark's labels and which of our labels stand for each of them."""

    name: str
    labels: list[str]
    mapping: dict[str, str]  # our (lower-case) label -> the space's label

    def project(self, labels: Iterable[str]) -> frozenset[str]:
        """A sample's labels in this space (lower-cased, stripped; unmapped ones dropped)."""
        return frozenset(self.mapping[key] for key in (label.strip().lower() for label in labels)
                         if key in self.mapping)


def _all(labels: Iterable[str], target: str) -> dict[str, str]:
    return {label: target for label in labels}


# Our vocabulary -> the ECGBench label spaces, only where the finding is the same thing.
# Left out on purpose: "ectopic beats" (CPSC splits PAC from PVC, the reader does not),
# axis deviations and short PR (not PTB-XL diagnostic statements), rhythm labels in the
# PTB-XL super classes (PTB-XL keeps rhythm statements outside them).
PTBXL_SUPER = LabelSpace(name="PTB-XL super", labels=["NORM", "MI", "STTC", "CD", "HYP"], mapping={
    v.NORMAL_ECG: "NORM",
    v.PATHOLOGICAL_Q_WAVES: "MI",  # PTB-XL's infarction statements (IMI, AMI, ...) are Q-wave/territory reads
    **_all((v.ST_ELEVATION, *v.ST_ELEVATION_LABELS, v.ST_DEPRESSION, *v.ST_DEPRESSION_LABELS,
            v.PROLONGED_QT, v.MARKED_QT_PROLONGATION, v.FLAT_T_WAVES, v.PEAKED_T_WAVES), "STTC"),
    **_all((v.FIRST_DEGREE_AV_BLOCK, v.COMPLETE_HEART_BLOCK, v.RBBB, v.LBBB, v.INCOMPLETE_BBB, v.IVCD), "CD"),
    **_all((v.LVH, v.RIGHT_ATRIAL_ABNORMALITY, v.LEFT_ATRIAL_ABNORMALITY), "HYP"),
})
CPSC_2018 = LabelSpace(name="CPSC 2018", labels=["NORM", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"],
                       mapping={
    v.NORMAL_ECG: "NORM", v.ATRIAL_FIBRILLATION: "AF", v.FIRST_DEGREE_AV_BLOCK: "I-AVB",
    v.LBBB: "LBBB", v.RBBB: "RBBB",
    **_all((v.ST_DEPRESSION, *v.ST_DEPRESSION_LABELS), "STD"),
    **_all((v.ST_ELEVATION, *v.ST_ELEVATION_LABELS), "STE"),
})
CODE_15 = LabelSpace(name="CODE-15%", labels=["1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"], mapping={
    v.FIRST_DEGREE_AV_BLOCK: "1dAVb", v.RBBB: "RBBB", v.LBBB: "LBBB",
    v.SINUS_BRADYCARDIA: "SB", v.SINUS_TACHYCARDIA: "ST", v.ATRIAL_FIBRILLATION: "AF",
})
ECGBENCH_SPACES: tuple[LabelSpace, ...] = (PTBXL_SUPER, CPSC_2018, CODE_15)
PROTOCOL_SPACE_NAME = "protocol"


def protocol_space(references: Iterable[Iterable[str]]) -> LabelSpace:
    """The protocol vocabulary as it occurs in the references: each label present, mapped to itself.

    Reference labels outside the vocabulary (e.g. from a reference report) are kept too:
    the space is what the held-out set asks for. Sorted for a stable report.
    """
    present = sorted({label.strip().lower() for labels in references for label in labels if label.strip()})
    return LabelSpace(name=PROTOCOL_SPACE_NAME, labels=present, mapping={label: label for label in present})


class SpaceMetrics(BaseModel):
    """The multi-label figures of one interpreter in one label space (None where undefined)."""

    space: str
    labels: list[str]
    samples: int
    support: dict[str, int] = Field(default_factory=dict)  # label -> reference positives
    exact_match: float | None
    hamming_loss: float | None
    macro_f1: float | None
    f1_labels: int  # how many labels the macro F1 averages over
    macro_auc: float | None
    auc_labels: int  # how many labels the macro AUC averages over


def indicator_matrix(samples: Sequence[frozenset[str]], labels: Sequence[str]) -> np.ndarray:
    """(samples x labels) 0/1 matrix of which labels each sample has."""
    matrix = np.zeros((len(samples), len(labels)), dtype=np.int8)
    index = {label: j for j, label in enumerate(labels)}
    for i, sample in enumerate(samples):
        for label in sample:
            if label in index:
                matrix[i, index[label]] = 1
    return matrix


def exact_match(predicted: Sequence[frozenset[str]], reference: Sequence[frozenset[str]]) -> float | None:
    """Fraction of samples whose predicted set equals the reference set; None for no samples."""
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predictions for {len(reference)} references")
    if not reference:
        return None
    return sum(p == r for p, r in zip(predicted, reference, strict=True)) / len(reference)


def hamming_loss(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Fraction of wrong (sample, label) cells; None when the matrix is empty."""
    if y_true.size == 0:
        return None
    from sklearn.metrics import hamming_loss as sk_hamming_loss

    return float(sk_hamming_loss(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float | None, int]:
    """(mean F1 over the labels present in y_true or y_pred, how many such labels)."""
    columns = [j for j in range(y_true.shape[1]) if y_true[:, j].any() or y_pred[:, j].any()]
    if not columns:
        return None, 0
    from sklearn.metrics import f1_score

    # One binary F1 per column: a single-column matrix given whole would be read as two classes.
    scores = [f1_score(y_true[:, j], y_pred[:, j], average="binary", pos_label=1, zero_division=0.0)
              for j in columns]
    return float(np.mean(scores)), len(columns)


def macro_auc(y_true: np.ndarray, y_score: np.ndarray) -> tuple[float | None, int]:
    """(mean ROC AUC over the labels with both classes in y_true, how many such labels)."""
    columns = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < y_true.shape[0]]
    if not columns:
        return None, 0
    from sklearn.metrics import roc_auc_score

    scores = [roc_auc_score(y_true[:, j], y_score[:, j]) for j in columns]
    return float(np.mean(scores)), len(columns)


def space_metrics(space: LabelSpace, predicted: Sequence[Iterable[str]],
                  reference: Sequence[Iterable[str]]) -> SpaceMetrics:
    """Every multi-label figure of one label space for paired predicted/reference label lists."""
    pred_sets = [space.project(labels) for labels in predicted]
    ref_sets = [space.project(labels) for labels in reference]
    y_pred = indicator_matrix(pred_sets, space.labels)
    y_true = indicator_matrix(ref_sets, space.labels)
    f1, f1_labels = macro_f1(y_true, y_pred)
    # Generated text has no probabilities: the binary prediction is the score (see module doc).
    auc, auc_labels = macro_auc(y_true, y_pred)
    return SpaceMetrics(space=space.name, labels=list(space.labels), samples=len(ref_sets),
                        support={label: int(y_true[:, j].sum()) for j, label in enumerate(space.labels)},
                        exact_match=exact_match(pred_sets, ref_sets), hamming_loss=hamming_loss(y_true, y_pred),
                        macro_f1=f1, f1_labels=f1_labels, macro_auc=auc, auc_labels=auc_labels)


# -- text consistency --------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased runs of letters and digits (the usual ROUGE tokenisation, without stemming)."""
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) of two texts; 0.0 when either has no tokens."""
    cand, ref = rouge_tokens(candidate), rouge_tokens(reference)
    if not cand or not ref:
        return 0.0
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu4(candidate: str, reference: str) -> float:
    """Sentence BLEU-4 (sacrebleu, exponential smoothing, effective order) in [0, 1]."""
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True).sentence_score(candidate, [reference]).score / 100.0


class Consistency(BaseModel):
    """Agreement of paired outputs (image-only vs signal-only), mean over the pairs."""

    pairs: int
    bleu4: float | None
    rouge_l: float | None


def consistency(candidates: Sequence[str], references: Sequence[str]) -> Consistency:
    """Mean sentence BLEU-4 and ROUGE-L over (candidate, reference) pairs; None for no pairs."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
    if not candidates:
        return Consistency(pairs=0, bleu4=None, rouge_l=None)
    pairs = list(zip(candidates, references, strict=True))
    return Consistency(pairs=len(pairs),
                       bleu4=float(np.mean([bleu4(c, r) for c, r in pairs])),
                       rouge_l=float(np.mean([rouge_l(c, r) for c, r in pairs])))


def mean(values: Iterable[float]) -> float | None:
    """The mean, or None for no values (a report never shows a made-up 0)."""
    values = list(values)
    return float(np.mean(values)) if values else None


__all__ = ["CODE_15", "CPSC_2018", "Consistency", "ECGBENCH_SPACES", "LabelSpace", "PROTOCOL_SPACE_NAME",
           "PTBXL_SUPER", "SpaceMetrics", "bleu4", "consistency", "exact_match", "hamming_loss", "indicator_matrix",
           "lcs_length", "macro_auc", "macro_f1", "mean", "protocol_space", "rouge_l", "rouge_tokens",
           "space_metrics"]
