"""Every protocol rule on both sides of its threshold, from hand-made features.

Each row changes the values one rule reads on an otherwise normal ECG and says which labels
the reading must and must not carry. Values sit exactly on and just past each threshold.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingest.ecg import Demographics, Sex
from ingest.measure.measured import GroundingFeatures
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from tests.protocol import builders as b
from tests.protocol.builders import (
    normal_features, with_global, with_median, with_q, with_qs, with_qt, with_rhythm, with_st, with_t,
    with_voltages,
)

N = normal_features
NO_P = dict(p_wave_fraction=0.1, p_positive_in=[], p_negative_in=[])


def _q_free(features: GroundingFeatures) -> GroundingFeatures:
    return with_q(features, list(features.leads), 0.0, 0.0)


# (id, features, labels that must be present, labels that must be absent)
CASES: list[tuple[str, Callable[[], GroundingFeatures], set[str], set[str]]] = [
    # rate (with sinus P waves the rate is part of the rhythm label)
    ("hr 59 bradycardia", lambda: with_global(N(), hr_bpm=59.0), {v.SINUS_BRADYCARDIA}, {v.SINUS_RHYTHM}),
    ("hr 60 normal", lambda: with_global(N(), hr_bpm=60.0), {v.SINUS_RHYTHM}, {v.SINUS_BRADYCARDIA}),
    ("hr 59.5 written 60 normal", lambda: with_global(N(), hr_bpm=59.5), {v.SINUS_RHYTHM}, {v.SINUS_BRADYCARDIA}),
    ("hr 100 normal", lambda: with_global(N(), hr_bpm=100.0), {v.SINUS_RHYTHM}, {v.SINUS_TACHYCARDIA}),
    ("hr 101 tachycardia", lambda: with_global(N(), hr_bpm=101.0), {v.SINUS_TACHYCARDIA}, {v.SINUS_RHYTHM}),
    # sinus: P before most beats, upright in II, not upright in aVR
    ("p before 51% sinus", lambda: with_rhythm(N(), p_wave_fraction=0.51), {v.SINUS_RHYTHM}, {v.UNDETERMINED_RHYTHM}),
    ("p before 50% not sinus", lambda: with_rhythm(N(), p_wave_fraction=0.5), {v.UNDETERMINED_RHYTHM},
     {v.SINUS_RHYTHM}),
    ("p not upright in II", lambda: with_rhythm(N(), p_positive_in=["I", "aVF"], p_negative_in=["II", "aVR"]),
     {v.UNDETERMINED_RHYTHM}, {v.SINUS_RHYTHM}),
    ("p upright in aVR", lambda: with_rhythm(N(), p_positive_in=["I", "II", "aVR"], p_negative_in=[]),
     {v.UNDETERMINED_RHYTHM}, {v.SINUS_RHYTHM}),
    ("irregular sinus stays sinus", lambda: with_rhythm(N(), regular=False, rr_cv=0.15), {v.SINUS_RHYTHM},
     {v.ATRIAL_FIBRILLATION}),
    # atrial fibrillation: irregular without P waves
    ("irregular without p: af", lambda: with_rhythm(N(), regular=False, rr_cv=0.2, **NO_P),
     {v.ATRIAL_FIBRILLATION}, {v.SINUS_RHYTHM, v.UNDETERMINED_RHYTHM}),
    ("irregular, p before 50%: af", lambda: with_rhythm(N(), regular=False, rr_cv=0.15, p_wave_fraction=0.5),
     {v.ATRIAL_FIBRILLATION}, set()),
    ("regular without p: not af", lambda: with_rhythm(N(), regular=True, **NO_P), {v.UNDETERMINED_RHYTHM},
     {v.ATRIAL_FIBRILLATION}),
    ("slow rhythm without p", lambda: with_global(with_rhythm(N(), **NO_P), hr_bpm=45.0),
     {v.UNDETERMINED_RHYTHM, v.BRADYCARDIA}, {v.SINUS_BRADYCARDIA}),
    # wide complex tachycardia: > 100 bpm, QRS >= 120 ms, no sinus P waves
    ("wide complex tachycardia", lambda: with_global(with_rhythm(N(), **NO_P), hr_bpm=101.0, qrs_ms=120.0),
     {v.WIDE_COMPLEX_TACHYCARDIA}, {v.TACHYCARDIA}),
    ("qrs 119 narrow tachycardia", lambda: with_global(with_rhythm(N(), **NO_P), hr_bpm=150.0, qrs_ms=119.0),
     {v.TACHYCARDIA, v.UNDETERMINED_RHYTHM}, {v.WIDE_COMPLEX_TACHYCARDIA}),
    ("wide qrs at 100 bpm", lambda: with_global(with_rhythm(N(), **NO_P), hr_bpm=100.0, qrs_ms=140.0),
     {v.UNDETERMINED_RHYTHM}, {v.WIDE_COMPLEX_TACHYCARDIA}),
    # ... and with sinus-looking P waves whose PR is under 120 ms (the previous T, or pre-excitation)
    ("wide fast, 'p' 119 ms before: wct", lambda: with_global(N(), hr_bpm=170.0, qrs_ms=150.0, pr_ms=119.0),
     {v.WIDE_COMPLEX_TACHYCARDIA}, {v.SINUS_TACHYCARDIA, v.SHORT_PR}),
    ("wide fast, pr 120: sinus", lambda: with_global(N(), hr_bpm=170.0, qrs_ms=150.0, pr_ms=120.0),
     {v.SINUS_TACHYCARDIA}, {v.WIDE_COMPLEX_TACHYCARDIA}),
    ("narrow fast, pr 100: sinus, short pr", lambda: with_global(N(), hr_bpm=170.0, qrs_ms=119.0, pr_ms=100.0),
     {v.SINUS_TACHYCARDIA, v.SHORT_PR}, {v.WIDE_COMPLEX_TACHYCARDIA}),
    ("wide at 100 bpm, pr 100: sinus", lambda: with_global(N(), hr_bpm=100.0, qrs_ms=150.0, pr_ms=100.0),
     {v.SINUS_RHYTHM, v.SHORT_PR}, {v.WIDE_COMPLEX_TACHYCARDIA}),
    # technical
    ("lead I all negative", lambda: with_median(N(), "I", p_amp_mv=-0.08, qrs_net_mv=-0.6, t_amp_mv=-0.2),
     {v.LEAD_REVERSAL}, {v.NORMAL_ECG}),
    # P and QRS negative in I are enough: a T inverted in I before the swap is upright after it
    ("lead I P and QRS negative, T upright", lambda: with_median(N(), "I", p_amp_mv=-0.08, qrs_net_mv=-0.6,
                                                                 t_amp_mv=0.2), {v.LEAD_REVERSAL}, set()),
    ("lead I P and QRS negative, T flat", lambda: with_median(N(), "I", p_amp_mv=-0.08, qrs_net_mv=-0.6,
                                                              t_amp_mv=-0.02), {v.LEAD_REVERSAL}, set()),
    ("lead I P upright, QRS negative: a right axis", lambda: with_median(N(), "I", p_amp_mv=0.08, qrs_net_mv=-0.6,
                                                                         t_amp_mv=-0.2), set(), {v.LEAD_REVERSAL}),
    ("lead I P -0.004 written 0.00", lambda: with_median(N(), "I", p_amp_mv=-0.004, qrs_net_mv=-0.6),
     set(), {v.LEAD_REVERSAL}),
    ("lead I P -0.01: within the noise", lambda: with_median(N(), "I", p_amp_mv=-0.01, qrs_net_mv=-0.6),
     set(), {v.LEAD_REVERSAL}),
    ("lead I P -0.02", lambda: with_median(N(), "I", p_amp_mv=-0.02, qrs_net_mv=-0.6), {v.LEAD_REVERSAL}, set()),
    ("lead I all negative, paced: a paced QRS's own direction", lambda: with_rhythm(
        with_median(N(), "I", p_amp_mv=-0.08, qrs_net_mv=-0.6, t_amp_mv=-0.2), paced=True, paced_beats=10,
        pacing_assessed_beats=10), {v.PACED_RHYTHM}, {v.LEAD_REVERSAL}),
    ("lead I QRS net 0.00", lambda: with_median(N(), "I", p_amp_mv=-0.08, qrs_net_mv=0.0), set(), {v.LEAD_REVERSAL}),
    # without a P wave in I (atrial fibrillation): QRS negative in I and upright in aVR, T inverted in I
    ("no P in I; QRS - in I, + in aVR, T - in I", lambda: with_median(
        with_median(N(), "I", p_amp_mv=None, qrs_net_mv=-0.6, t_amp_mv=-0.05), "aVR", qrs_net_mv=0.5),
     {v.LEAD_REVERSAL}, set()),
    ("no P in I; T -0.04 in I", lambda: with_median(
        with_median(N(), "I", p_amp_mv=None, qrs_net_mv=-0.6, t_amp_mv=-0.04), "aVR", qrs_net_mv=0.5),
     set(), {v.LEAD_REVERSAL}),
    ("no P in I; QRS negative in aVR", lambda: with_median(N(), "I", p_amp_mv=None, qrs_net_mv=-0.6, t_amp_mv=-0.2),
     set(), {v.LEAD_REVERSAL}),
    ("one ectopic beat", lambda: with_rhythm(N(), ectopic_count=1), {v.ECTOPIC_BEATS}, {v.NORMAL_ECG}),
    # PR
    ("pr 119 short", lambda: with_global(N(), pr_ms=119.0), {v.SHORT_PR}, {v.NORMAL_ECG}),
    ("pr 120 normal", lambda: with_global(N(), pr_ms=120.0), {v.NORMAL_ECG}, {v.SHORT_PR}),
    ("pr 200 normal", lambda: with_global(N(), pr_ms=200.0), {v.NORMAL_ECG}, {v.FIRST_DEGREE_AV_BLOCK}),
    ("pr 201 first degree", lambda: with_global(N(), pr_ms=201.0), {v.FIRST_DEGREE_AV_BLOCK}, {v.NORMAL_ECG}),
    # QRS and bundle branch patterns (AHA/ACCF/HRS 2009 part III)
    ("qrs 109 normal", lambda: with_global(N(), qrs_ms=109.0), {v.NORMAL_ECG}, {v.INCOMPLETE_BBB, v.IVCD}),
    ("qrs 100 rSr' in V1: normal variant", lambda: with_global(with_median(N(), "V1", qrs_morphology="rSr'"),
                                                               qrs_ms=100.0), {v.NORMAL_ECG}, {v.INCOMPLETE_BBB}),
    ("qrs 110 rSR' in V1: incomplete", lambda: with_global(with_median(N(), "V1", qrs_morphology="rSR'"),
                                                           qrs_ms=110.0), {v.INCOMPLETE_BBB}, {v.NORMAL_ECG, v.IVCD}),
    ("qrs 119 rSr' in V2: incomplete", lambda: with_global(with_median(N(), "V2", qrs_morphology="rSr'"),
                                                           qrs_ms=119.0), {v.INCOMPLETE_BBB}, {v.RBBB}),
    ("qrs 115 rS in V1, septal q: non-specific ivcd", lambda: with_global(N(), qrs_ms=115.0), {v.IVCD},
     {v.INCOMPLETE_BBB, v.NORMAL_ECG}),
    # A non-specific delay is a QRS OVER 110 ms: at 110 without a pattern, normal; at 111, a delay.
    ("qrs 110 rS in V1, septal q: normal conduction", lambda: with_global(N(), qrs_ms=110.0), {v.NORMAL_ECG},
     {v.IVCD, v.INCOMPLETE_BBB}),
    ("qrs 111 rS in V1, septal q: non-specific ivcd", lambda: with_global(N(), qrs_ms=111.0), {v.IVCD},
     {v.INCOMPLETE_BBB, v.NORMAL_ECG}),
    ("qrs 120 rSR' in V1: rbbb", lambda: with_global(with_median(N(), "V1", qrs_morphology="rSR'"), qrs_ms=120.0),
     {v.RBBB}, {v.INCOMPLETE_BBB, v.LBBB}),
    ("qrs 130 dominant R in V1: rbbb",
     lambda: with_global(with_median(N(), "V1", qrs_morphology=None, r_amp_mv=0.9, s_amp_mv=0.2), qrs_ms=130.0),
     {v.RBBB}, {v.LBBB}),
    ("qrs 150 QS in V1, R in V6 and I: lbbb",
     lambda: with_global(with_median(with_median(with_median(N(), "V1", qrs_morphology="QS", r_amp_mv=0.0,
                                                             s_amp_mv=1.5), "V6", qrs_morphology="R"),
                                     "I", qrs_morphology="R"), qrs_ms=150.0), {v.LBBB}, {v.RBBB, v.IVCD}),
    ("qrs 150 rS in V1, notched R without q in I and V6: lbbb",
     lambda: with_global(with_median(with_median(N(), "I", qrs_morphology="rsR'"), "V6", qrs_morphology="RS"),
                         qrs_ms=150.0), {v.LBBB}, {v.RBBB}),
    ("qrs 150 rS in V1, R in V6 but septal q in I: ivcd",
     lambda: with_global(with_median(N(), "V6", qrs_morphology="R"), qrs_ms=150.0), {v.IVCD}, {v.LBBB, v.RBBB}),
    ("qrs 150 rS in V1, septal q in I and V6: ivcd", lambda: with_global(N(), qrs_ms=150.0), {v.IVCD},
     {v.LBBB, v.RBBB}),
    # axis
    ("axis -30 normal", lambda: with_global(N(), qrs_axis_deg=-30.0), {v.NORMAL_ECG}, {v.LEFT_AXIS_DEVIATION}),
    ("axis -31 left", lambda: with_global(N(), qrs_axis_deg=-31.0), {v.LEFT_AXIS_DEVIATION}, {v.NORMAL_ECG}),
    ("axis -90 left", lambda: with_global(N(), qrs_axis_deg=-90.0), {v.LEFT_AXIS_DEVIATION},
     {v.EXTREME_AXIS_DEVIATION}),
    ("axis -91 extreme", lambda: with_global(N(), qrs_axis_deg=-91.0), {v.EXTREME_AXIS_DEVIATION},
     {v.LEFT_AXIS_DEVIATION}),
    ("axis 90 normal", lambda: with_global(N(), qrs_axis_deg=90.0), {v.NORMAL_ECG}, {v.RIGHT_AXIS_DEVIATION}),
    ("axis 91 right", lambda: with_global(N(), qrs_axis_deg=91.0), {v.RIGHT_AXIS_DEVIATION}, {v.NORMAL_ECG}),
    ("no angle, I+ aVF+: normal", lambda: with_global(N(), qrs_axis_deg=None), {v.NORMAL_ECG}, set()),
    ("no angle, I+ II- aVF-: left",
     lambda: with_global(with_median(with_median(N(), "II", qrs_net_mv=-0.3), "aVF", qrs_net_mv=-0.5),
                         qrs_axis_deg=None), {v.LEFT_AXIS_DEVIATION}, set()),
    ("no angle, I- aVF+: right", lambda: with_global(with_median(N(), "I", qrs_net_mv=-0.4), qrs_axis_deg=None),
     {v.RIGHT_AXIS_DEVIATION}, set()),
    ("no angle, I- aVF-: extreme",
     lambda: with_global(with_median(with_median(N(), "I", qrs_net_mv=-0.4), "aVF", qrs_net_mv=-0.5),
                         qrs_axis_deg=None), {v.EXTREME_AXIS_DEVIATION}, set()),
    # LVH (Sokolow-Lyon uses the larger of R(V5), R(V6))
    ("sokolow 3.50 no lvh", lambda: with_voltages(N(), s_v1_mv=2.0, r_v5_mv=1.5, r_v6_mv=1.2), {v.NORMAL_ECG},
     {v.LVH}),
    ("sokolow 3.51 lvh", lambda: with_voltages(N(), s_v1_mv=2.0, r_v5_mv=1.2, r_v6_mv=1.51), {v.LVH},
     {v.NORMAL_ECG}),
    ("R(I) 1.50 no lvh", lambda: with_voltages(N(), r_i_mv=1.5), {v.NORMAL_ECG}, {v.LVH}),
    ("R(I) 1.51 lvh", lambda: with_voltages(N(), r_i_mv=1.51), {v.LVH}, set()),
    ("R(aVL) 1.10 no lvh", lambda: with_voltages(N(), r_avl_mv=1.1), {v.NORMAL_ECG}, {v.LVH}),
    ("R(aVL) 1.11 lvh", lambda: with_voltages(N(), r_avl_mv=1.11), {v.LVH}, set()),
    # low voltage
    ("limb 0.49 low", lambda: with_voltages(N(), limb_qrs_max_mv=0.49), {v.LOW_QRS_VOLTAGE}, {v.NORMAL_ECG}),
    ("limb 0.50 not low", lambda: with_voltages(N(), limb_qrs_max_mv=0.5), {v.NORMAL_ECG}, {v.LOW_QRS_VOLTAGE}),
    ("precordial 0.99 low", lambda: with_voltages(N(), precordial_qrs_max_mv=0.99), {v.LOW_QRS_VOLTAGE}, set()),
    ("precordial 1.00 not low", lambda: with_voltages(N(), precordial_qrs_max_mv=1.0), {v.NORMAL_ECG},
     {v.LOW_QRS_VOLTAGE}),
    # R wave progression
    ("R(V3) 0.29 poor", lambda: with_median(N(), "V3", r_amp_mv=0.29), {v.POOR_R_PROGRESSION}, {v.NORMAL_ECG}),
    ("R(V3) 0.30 normal", lambda: with_median(N(), "V3", r_amp_mv=0.3), {v.NORMAL_ECG}, {v.POOR_R_PROGRESSION}),
    ("R(V3) 0.25 after V2 0.20, V4 1.40: late normal transition",
     lambda: with_median(with_median(N(), "V2", r_amp_mv=0.2), "V3", r_amp_mv=0.25), {v.NORMAL_ECG},
     {v.POOR_R_PROGRESSION}),
    ("R(V3) 0.25 after V2 0.20, V4 0.29: poor",
     lambda: with_median(with_median(with_median(N(), "V2", r_amp_mv=0.2), "V3", r_amp_mv=0.25), "V4",
                         r_amp_mv=0.29), {v.POOR_R_PROGRESSION}, {v.NORMAL_ECG}),
    # atria
    ("P(II) 0.25 normal", lambda: with_median(N(), "II", p_amp_mv=0.25), {v.NORMAL_ECG},
     {v.RIGHT_ATRIAL_ABNORMALITY}),
    ("P(II) 0.26 right atrial", lambda: with_median(N(), "II", p_amp_mv=0.26), {v.RIGHT_ATRIAL_ABNORMALITY}, set()),
    ("P(II) 121 ms notched: left atrial", lambda: with_median(N(), "II", p_dur_ms=121.0, p_notched=True),
     {v.LEFT_ATRIAL_ABNORMALITY}, set()),
    ("P(II) 120 ms notched: normal", lambda: with_median(N(), "II", p_dur_ms=120.0, p_notched=True),
     {v.NORMAL_ECG}, {v.LEFT_ATRIAL_ABNORMALITY}),
    ("P(II) 140 ms not notched: normal", lambda: with_median(N(), "II", p_dur_ms=140.0), {v.NORMAL_ECG},
     {v.LEFT_ATRIAL_ABNORMALITY}),
    ("V1 terminal P 0.10: left atrial", lambda: with_median(N(), "V1", p_terminal_negative_mv=0.1),
     {v.LEFT_ATRIAL_ABNORMALITY}, set()),
    ("V1 terminal P 0.09: normal", lambda: with_median(N(), "V1", p_terminal_negative_mv=0.09), {v.NORMAL_ECG},
     {v.LEFT_ATRIAL_ABNORMALITY}),
    # ST elevation (fourth universal definition, sex unknown: V2-V3 >= 0.15 mV, other leads >= 0.1 mV)
    # at J and J + 60 ms, in >= 2 leads of one territory
    ("II, III 0.10: inferior", lambda: with_st(N(), {"II": 0.1, "III": 0.1}), {"st elevation (inferior)"},
     {v.NORMAL_ECG}),
    ("II 0.10, III 0.09: none", lambda: with_st(N(), {"II": 0.1, "III": 0.09}), {v.NORMAL_ECG},
     {"st elevation (inferior)"}),
    ("V2, V3 0.15: septal-anterior", lambda: with_st(N(), {"V2": 0.15, "V3": 0.15}),
     {"st elevation (septal-anterior)"}, set()),
    ("V2 0.15, V3 0.14: none", lambda: with_st(N(), {"V2": 0.15, "V3": 0.14}), {v.NORMAL_ECG},
     {"st elevation (septal-anterior)"}),
    ("V3 0.14, V4 0.10: none (V3 by its own limit)", lambda: with_st(N(), {"V3": 0.14, "V4": 0.1}), {v.NORMAL_ECG},
     {"st elevation (septal-anterior)"}),
    ("II 0.30 alone: none", lambda: with_st(N(), {"II": 0.3}), {v.NORMAL_ECG}, {"st elevation (inferior)"}),
    ("II and V2 (two territories): none", lambda: with_st(N(), {"II": 0.3, "V2": 0.3}), {v.NORMAL_ECG}, set()),
    ("I 0.10, V5 0.10: lateral", lambda: with_st(N(), {"I": 0.1, "V5": 0.1}), {"st elevation (lateral)"}, set()),
    ("I 0.10, V5 0.09: none", lambda: with_st(N(), {"I": 0.1, "V5": 0.09}), {v.NORMAL_ECG},
     {"st elevation (lateral)"}),
    ("J 0.20 in II, III but 0.05 at J + 60: none", lambda: with_st(N(), {"II": 0.05, "III": 0.05},
                                                                   {"II": 0.2, "III": 0.2}),
     {v.NORMAL_ECG}, {"st elevation (inferior)"}),
    ("0.25 at J + 60 but 0.05 at J in V2, V3: none", lambda: with_st(N(), {"V2": 0.25, "V3": 0.25},
                                                                     {"V2": 0.05, "V3": 0.05}),
     {v.NORMAL_ECG}, {"st elevation (septal-anterior)"}),
    # with a wide QRS only ST deviation concordant with the QRS counts (Sgarbossa)
    ("LBBB, V1-V2 0.30 discordant: none", lambda: with_st(b.left_bundle_branch_block(), {"V1": 0.3, "V2": 0.3}),
     {v.LBBB}, {"st elevation (septal-anterior)"}),
    ("LBBB, I and aVL 0.15 concordant: lateral", lambda: with_st(b.left_bundle_branch_block(),
                                                                 {"I": 0.15, "aVL": 0.15}),
     {v.LBBB, "st elevation (lateral)"}, set()),
    ("RBBB, V1-V2 -0.20 discordant: none", lambda: with_st(b.right_bundle_branch_block(), {"V1": -0.2, "V2": -0.2}),
     {v.RBBB}, {"st depression (septal-anterior)"}),
    # ST depression: horizontal or downsloping <= -0.1 mV in >= 2 leads of one territory (aVR in none)
    ("V5, V6 -0.10: lateral depression", lambda: with_st(N(), {"V5": -0.1, "V6": -0.1}),
     {"st depression (lateral)"}, {v.NORMAL_ECG}),
    ("V5, V6 -0.10 downsloping: lateral depression", lambda: with_st(N(), {"V5": -0.1, "V6": -0.1},
                                                                     form="downsloping"),
     {"st depression (lateral)"}, {v.NORMAL_ECG}),
    ("V5, V6 -0.15 upsloping: none", lambda: with_st(N(), {"V5": -0.15, "V6": -0.15}, form="upsloping"),
     {v.NORMAL_ECG}, {"st depression (lateral)"}),
    ("V5 -0.10, V6 -0.09: none", lambda: with_st(N(), {"V5": -0.1, "V6": -0.09}), {v.NORMAL_ECG},
     {"st depression (lateral)"}),
    ("aVR and V1 depressed: none", lambda: with_st(N(), {"aVR": -0.2, "V1": -0.2}), {v.NORMAL_ECG}, set()),
    # pathological Q: >= 30 ms and >= 0.1 mV (V2-V3: >= 20 ms), or a QS >= 0.1 mV; never aVR or V1;
    # >= 2 leads of one territory
    ("Q 30 ms 0.10 mV in II, III", lambda: with_q(_q_free(N()), ["II", "III"], 30.0, 0.1), {v.PATHOLOGICAL_Q_WAVES},
     {v.NORMAL_ECG}),
    ("Q 29 ms 0.30 mV in II, III", lambda: with_q(_q_free(N()), ["II", "III"], 29.0, 0.3), {v.NORMAL_ECG},
     {v.PATHOLOGICAL_Q_WAVES}),
    ("Q 40 ms 0.09 mV in II, III", lambda: with_q(_q_free(N()), ["II", "III"], 40.0, 0.09), {v.NORMAL_ECG},
     {v.PATHOLOGICAL_Q_WAVES}),
    ("Q 20 ms in V2, V3", lambda: with_q(_q_free(N()), ["V2", "V3"], 20.0, 0.05), {v.PATHOLOGICAL_Q_WAVES}, set()),
    ("Q 19 ms in V2, V3", lambda: with_q(_q_free(N()), ["V2", "V3"], 19.0, 0.2), {v.NORMAL_ECG},
     {v.PATHOLOGICAL_Q_WAVES}),
    ("QS 0.10 mV in V2, V3", lambda: with_qs(_q_free(N()), ["V2", "V3"], 0.1), {v.PATHOLOGICAL_Q_WAVES}, set()),
    ("QS 0.09 mV in III, aVF: none", lambda: with_qs(_q_free(N()), ["III", "aVF"], 0.09), set(),
     {v.PATHOLOGICAL_Q_WAVES}),
    ("QS in V1, V2: none (V1 never counts)", lambda: with_qs(_q_free(N()), ["V1", "V2"]), set(),
     {v.PATHOLOGICAL_Q_WAVES}),
    ("Q 40 ms in III only", lambda: with_q(_q_free(N()), ["III"], 40.0, 0.3), {v.NORMAL_ECG},
     {v.PATHOLOGICAL_Q_WAVES}),
    ("Q 40 ms in III and aVR: none", lambda: with_q(_q_free(N()), ["III", "aVR"], 40.0, 0.3), {v.NORMAL_ECG},
     {v.PATHOLOGICAL_Q_WAVES}),
    ("LBBB, QS in II, III, aVF: not assessed", lambda: with_qs(b.left_bundle_branch_block(), ["II", "III", "aVF"]),
     {v.LBBB}, {v.PATHOLOGICAL_Q_WAVES}),
    ("RBBB, Q 40 ms in II, III, aVF", lambda: with_q(b.right_bundle_branch_block(), ["II", "III", "aVF"], 40.0, 0.3),
     {v.RBBB, v.PATHOLOGICAL_Q_WAVES}, set()),
    # QTc, decided by Framingham (sex unknown: the lower limit, 450 ms); at 60 bpm it is the QT
    ("qt 449 at 60 bpm normal", lambda: with_qt(N(), 449.0), {v.NORMAL_ECG}, {v.PROLONGED_QT}),
    ("qt 450 at 60 bpm prolonged", lambda: with_qt(N(), 450.0), {v.PROLONGED_QT}, {v.NORMAL_ECG}),
    ("qt 500 at 60 bpm prolonged, not marked", lambda: with_qt(N(), 500.0), {v.PROLONGED_QT},
     {v.MARKED_QT_PROLONGATION}),
    ("qt 501 at 60 bpm marked", lambda: with_qt(N(), 501.0), {v.MARKED_QT_PROLONGATION}, {v.PROLONGED_QT}),
    # Bazett over-corrects at fast rates: QT 340 ms at 120 bpm is a Bazett QTc of 481 ms, Framingham 417
    ("qt 340 at 120 bpm normal", lambda: with_qt(N(), 340.0, hr_bpm=120.0), set(), {v.PROLONGED_QT}),
    ("qt 400 at 120 bpm prolonged", lambda: with_qt(N(), 400.0, hr_bpm=120.0), {v.PROLONGED_QT}, set()),
    # ...and under-corrects at slow ones: QT 520 ms at 45 bpm is Bazett 450, Framingham 469
    ("qt 520 at 45 bpm prolonged", lambda: with_qt(N(), 520.0, hr_bpm=45.0), {v.PROLONGED_QT}, set()),
    # a wide QRS lengthens the QT: QT 490 ms with a QRS of 150 ms is 440 ms once adjusted
    ("qt 490, qrs 150 at 60 bpm normal", lambda: with_qt(N(), 490.0, qrs_ms=150.0), set(), {v.PROLONGED_QT}),
    ("qt 540, qrs 150 at 60 bpm prolonged", lambda: with_qt(N(), 540.0, qrs_ms=150.0), {v.PROLONGED_QT}, set()),
    # T waves
    ("T 1.00 in V2, V3: peaked", lambda: with_t(N(), {"V2": 1.0, "V3": 1.0}), {v.PEAKED_T_WAVES}, {v.NORMAL_ECG}),
    ("T 0.99 in V2, V3: not peaked", lambda: with_t(N(), {"V2": 0.99, "V3": 0.99}), {v.NORMAL_ECG},
     {v.PEAKED_T_WAVES}),
    ("T 0.50 in II, aVF: peaked", lambda: with_t(N(), {"II": 0.5, "aVF": 0.5}), {v.PEAKED_T_WAVES}, set()),
    ("T 0.49 in II, aVF: not peaked", lambda: with_t(N(), {"II": 0.49, "aVF": 0.49}), {v.NORMAL_ECG},
     {v.PEAKED_T_WAVES}),
    ("T 1.20 in V3 only: not peaked", lambda: with_t(N(), {"V3": 1.2}), {v.NORMAL_ECG}, {v.PEAKED_T_WAVES}),
    ("T 0.09 in 4 leads: flat", lambda: with_t(N(), {"I": 0.09, "II": 0.05, "V5": -0.05, "V6": 0.0}),
     {v.FLAT_T_WAVES}, {v.NORMAL_ECG}),
    ("T 0.09 in 3 leads: not flat", lambda: with_t(N(), {"I": 0.09, "II": 0.05, "V5": 0.05}), {v.NORMAL_ECG},
     {v.FLAT_T_WAVES}),
    ("T 0.10 in 4 leads: not flat", lambda: with_t(N(), {"I": 0.1, "II": 0.1, "V5": 0.1, "V6": 0.1}),
     {v.NORMAL_ECG}, {v.FLAT_T_WAVES}),
]


@pytest.mark.parametrize(("build", "present", "absent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_thresholds(build: Callable[[], GroundingFeatures], present: set[str], absent: set[str]) -> None:
    labels = set(protocol_read(build()).labels)
    assert present <= labels, f"missing {present - labels} in {labels}"
    assert not (absent & labels), f"unexpected {absent & labels}"


@pytest.mark.parametrize(("sex", "qt", "prolonged"), [
    (Sex.MALE, 449.0, False), (Sex.MALE, 450.0, True),
    (Sex.FEMALE, 459.0, False), (Sex.FEMALE, 460.0, True),
    (Sex.UNKNOWN, 450.0, True), (None, 450.0, True),
])
def test_qtc_limit_depends_on_sex(sex: Sex | None, qt: float, prolonged: bool) -> None:
    demographics = None if sex is None else Demographics(sex=sex)
    read = protocol_read(with_qt(N(), qt), demographics)
    assert (v.PROLONGED_QT in read.labels) is prolonged
    limit = "460" if sex == Sex.FEMALE else "450"
    assert (f"Framingham's linear correction gives {qt:.0f} ms and decides ({'>=' if prolonged else '<'} {limit} ms"
            in read.steps[5])


@pytest.mark.parametrize(("sex", "age", "level", "elevated"), [
    (Sex.MALE, 40, 0.20, True), (Sex.MALE, 40, 0.19, False),
    (Sex.MALE, 39, 0.25, True), (Sex.MALE, 39, 0.24, False), (Sex.MALE, None, 0.20, True),
    (Sex.FEMALE, 30, 0.15, True), (Sex.FEMALE, 30, 0.14, False),
])
def test_st_elevation_limit_in_v2_v3_depends_on_sex_and_age(sex: Sex, age: int | None, level: float,
                                                            elevated: bool) -> None:
    read = protocol_read(with_st(N(), {"V2": level, "V3": level}), Demographics(sex=sex, age_years=age))
    assert ("st elevation (septal-anterior)" in read.labels) is elevated


def test_no_st_reading_in_a_wide_complex_tachycardia() -> None:
    wide = with_rhythm(with_st(with_global(N(), hr_bpm=160.0, qrs_ms=150.0), {"II": 0.3, "III": 0.3}), **NO_P)
    read = protocol_read(wide)
    assert v.WIDE_COMPLEX_TACHYCARDIA in read.labels
    assert not [label for label in read.labels if label.startswith("st ")]
    assert "ST segments not assessed in a wide complex tachycardia." in read.steps[4]


def test_no_lvh_voltage_read_in_a_wide_complex_tachycardia() -> None:
    """The voltages of ventricular complexes say nothing of the wall (Ningbo JS45546, a ventricular
    tachycardia, met Sokolow-Lyon once its precordial leads were measured for their QRS); the same
    voltages at a sinus rate still read as LVH."""
    tall = with_voltages(N(), s_v1_mv=2.0, r_v5_mv=2.5, r_v6_mv=2.0)
    read = protocol_read(with_rhythm(with_global(tall, hr_bpm=170.0, qrs_ms=150.0), **NO_P))
    assert v.WIDE_COMPLEX_TACHYCARDIA in read.labels and v.LVH not in read.labels
    assert "LVH voltage criteria not assessed in a wide complex tachycardia." in read.steps[3]
    assert v.LVH in protocol_read(tall).labels


def test_no_block_or_pr_named_in_a_wide_complex_tachycardia() -> None:
    """An RBBB-like V1 and a wave 100 ms before the QRS in a wide tachycardia without sinus P waves
    (Ningbo's ventricular tachycardias JS45544-JS45549 were read "right bundle branch block",
    "intraventricular conduction delay", "short pr"): the width is said, no block, no PR. The same
    V1 and PR at a sinus rate still read as RBBB and short PR."""
    rbbb_like = with_global(b.right_bundle_branch_block(), hr_bpm=170.0, qrs_ms=150.0, pr_ms=100.0)
    read = protocol_read(with_rhythm(rbbb_like, **NO_P))
    assert v.WIDE_COMPLEX_TACHYCARDIA in read.labels
    assert not {v.RBBB, v.INCOMPLETE_BBB, v.IVCD, v.SHORT_PR, v.LBBB} & set(read.labels)
    assert "in a wide complex tachycardia: presumed ventricular, no bundle branch block" in read.steps[2]
    assert "PR interval not applicable: no sinus P waves (wide complex tachycardia)." in read.steps[2]
    sinus = protocol_read(with_global(b.right_bundle_branch_block(), pr_ms=100.0))
    assert {v.RBBB, v.SHORT_PR} <= set(sinus.labels)
    # A QRS of 110-119 ms is no wide complex tachycardia: at that width the conduction is read.
    narrow = protocol_read(with_rhythm(with_global(N(), hr_bpm=170.0, qrs_ms=114.0), **NO_P))
    assert v.WIDE_COMPLEX_TACHYCARDIA not in narrow.labels and v.IVCD in narrow.labels


def test_no_p_morphology_or_premature_beats_read_in_a_wide_complex_tachycardia() -> None:
    """A tall wave before the QRS of a wide complex tachycardia is no P wave (ningbo/JS45546 was read
    "right atrial abnormality" from its previous T) and no beat is early against a ventricular rhythm
    (JS45544 "ectopic beats"); at a sinus rate the same wave and beat are read."""
    tall_p = with_median(with_rhythm(N(), ectopic_count=2), "II", p_amp_mv=0.35)
    wide = protocol_read(with_global(tall_p, hr_bpm=170.0, qrs_ms=150.0, pr_ms=80.0))
    assert v.WIDE_COMPLEX_TACHYCARDIA in wide.labels
    assert not {v.RIGHT_ATRIAL_ABNORMALITY, v.ECTOPIC_BEATS, v.SHORT_PR} & set(wide.labels)
    assert "P wave morphology not assessed: no sinus P waves." in wide.steps[3]
    sinus = protocol_read(tall_p)
    assert {v.RIGHT_ATRIAL_ABNORMALITY, v.ECTOPIC_BEATS} <= set(sinus.labels)
    # Nor is a PR or P axis of ours said or reported (a device's still is).
    from ingest.ecg import Measurements
    from reports.measurements import report_values

    wide_features = with_global(tall_p, hr_bpm=170.0, qrs_ms=150.0, pr_ms=80.0, p_axis_deg=60.0)
    assert "PR " not in protocol_read(wide_features).narrative and "PR " in sinus.narrative
    values, sources = report_values(None, wide_features)
    assert values.pr_ms is None and values.p_axis_deg is None and "pr_ms" not in sources
    assert report_values(Measurements(pr_ms=170.0), wide_features)[0].pr_ms == 170.0


def test_qtc_text_reports_bazett_and_names_the_deciding_correction() -> None:
    read = protocol_read(with_qt(N(), 340.0, hr_bpm=120.0, qrs_ms=130.0))
    assert "QT 340 ms, QTc 481 ms (Bazett, as devices report it)" in read.steps[5]
    assert ("Framingham's linear correction of the QT adjusted for the QRS of 130 ms gives 387 ms and decides "
            "(< 450 ms" in read.steps[5])
    finding = next(f for f in read.findings if f.rule == "qtc")
    assert finding.evidence in read.steps[5].lower() and finding.values["qtc_framingham_ms"] == 387.0


def test_statements_cite_value_threshold_and_leads() -> None:
    features = with_st(with_global(N(), pr_ms=212.0), {"V2": 0.25, "V3": 0.31})
    read = protocol_read(features)
    assert "PR interval 212 ms (> 200 ms): first degree AV block." in read.steps[2]
    assert "ST elevation at J and J + 60 ms in V2 (+0.25 mV, horizontal), V3 (+0.31 mV, horizontal)" in read.steps[4]
    assert ">= 0.10 mV, V2-V3 >= 0.15 mV (sex unknown)" in read.steps[4]
    assert "st elevation (septal-anterior)" in read.steps[4]
    finding = next(f for f in read.findings if f.rule == "st_elevation")
    assert finding.leads == ["V2", "V3"] and finding.values == {"st_V2_mv": 0.25, "st_V3_mv": 0.31}


def test_written_value_and_threshold_never_disagree() -> None:
    """200.4 ms is written 200 ms and read as normal, never as '200 ms (> 200 ms)'."""
    read = protocol_read(with_global(N(), pr_ms=200.4))
    assert "PR interval 200 ms (120-200 ms)" in read.steps[2]
    assert v.FIRST_DEGREE_AV_BLOCK not in read.labels
    read = protocol_read(with_global(N(), pr_ms=200.5))
    assert "PR interval 201 ms (> 200 ms)" in read.steps[2]


def _arms_swapped(features: GroundingFeatures) -> GroundingFeatures:
    """Lead I as the swap leaves it: P, QRS and T negative."""
    return with_median(features, "I", p_amp_mv=-0.08, qrs_net_mv=-0.6, t_amp_mv=-0.2)


def test_with_the_arm_electrodes_possibly_swapped_neither_the_axis_nor_q_waves_in_i_and_avl_are_read() -> None:
    """The axis as recorded is the heart's mirror image, and a Q in I or aVL is the swap's (I inverted,
    aVL showing aVR): neither is read; Q waves in the inferior leads still are (II and III only trade places)."""
    looks_right = with_q(with_global(N(), qrs_axis_deg=150.0), ["I", "aVL"], 40.0, 0.4)
    swapped = _arms_swapped(looks_right)
    control = protocol_read(with_median(looks_right, "I", p_amp_mv=0.08, qrs_net_mv=-0.6, t_amp_mv=-0.2))
    assert {v.RIGHT_AXIS_DEVIATION, v.PATHOLOGICAL_Q_WAVES} <= set(control.labels)
    reading = protocol_read(swapped)
    assert v.LEAD_REVERSAL in reading.labels
    assert v.RIGHT_AXIS_DEVIATION not in reading.labels and v.PATHOLOGICAL_Q_WAVES not in reading.labels
    assert "axis not read" in reading.steps[2] and "QRS axis" not in reading.narrative
    assert "repeat recording" in reading.steps[6]
    inferior = protocol_read(with_q(swapped, ["II", "III", "aVF"], 40.0, 0.4))
    assert v.PATHOLOGICAL_Q_WAVES in inferior.labels


def test_with_the_arm_electrodes_possibly_swapped_the_p_axis_is_judged_on_the_leads_swapped_back() -> None:
    """Swapped, a sinus P shows upright in aVR (it is aVL's) and negative in I: read on the leads swapped
    back it is sinus; the same P signs without the swap's lead I are not a sinus P axis."""
    signs = dict(p_positive_in=["II", "III", "aVR", "aVF", "V2", "V3", "V4", "V5", "V6"], p_negative_in=["I", "aVL"])
    swapped = protocol_read(with_rhythm(_arms_swapped(N()), **signs))
    assert v.SINUS_RHYTHM in swapped.labels and v.LEAD_REVERSAL in swapped.labels
    not_swapped = protocol_read(with_rhythm(N(), **signs))
    assert v.UNDETERMINED_RHYTHM in not_swapped.labels and v.SINUS_RHYTHM not in not_swapped.labels
