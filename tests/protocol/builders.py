"""Hand-made `GroundingFeatures` for the protocol tests: a normal adult ECG, then changes.

`normal_features()` is what a healthy adult's ECG measures: sinus rhythm at 72 bpm,
PR 160 ms, QRS 90 ms, QTc 415 ms, axis +45 degrees, normal voltages, flat ST. Each test
changes only the values its rule reads, so a test says exactly which number it is about.
"""

from __future__ import annotations

from typing import Any

from ingest.ecg import STANDARD_LEADS, Measurements
from ingest.measure.measured import BeatFeatures, GroundingFeatures, LeadFeatures, Rhythm, Voltages

# Median-beat values per lead of a normal ECG (mV, ms): R, S, net QRS, P, T.
_NORMAL_LEADS: dict[str, dict[str, Any]] = {
    "I": dict(r=0.8, s=0.1, p=0.08, t=0.25, morph="qRs"),
    "II": dict(r=1.1, s=0.1, p=0.12, t=0.35, morph="qR"),
    "III": dict(r=0.5, s=0.2, p=0.05, t=0.12, morph="Rs"),
    "aVR": dict(r=0.1, s=0.9, p=-0.1, t=-0.3, morph="rS"),
    "aVL": dict(r=0.4, s=0.2, p=0.03, t=0.12, morph="qRs"),
    "aVF": dict(r=0.8, s=0.1, p=0.08, t=0.2, morph="qR"),
    "V1": dict(r=0.3, s=1.0, p=0.06, t=0.15, morph="rS"),
    "V2": dict(r=0.5, s=1.4, p=0.08, t=0.5, morph="rS"),
    "V3": dict(r=0.8, s=0.9, p=0.08, t=0.5, morph="RS"),
    "V4": dict(r=1.4, s=0.5, p=0.08, t=0.45, morph="Rs"),
    "V5": dict(r=1.5, s=0.3, p=0.08, t=0.35, morph="qRs"),
    "V6": dict(r=1.2, s=0.1, p=0.08, t=0.3, morph="qR"),
}


def normal_features() -> GroundingFeatures:
    leads = {}
    for lead, w in _NORMAL_LEADS.items():
        q = 0.05 if w["morph"].startswith("q") else 0.0
        median = BeatFeatures(
            rr_ms=833.0, p_amp_mv=w["p"], p_dur_ms=100.0, pr_ms=160.0, q_amp_mv=q, q_dur_ms=20.0 if q else 0.0,
            r_amp_mv=w["r"], s_amp_mv=w["s"], qrs_amp_mv=w["r"] + max(w["s"], q), qrs_net_mv=w["r"] - max(w["s"], q),
            qrs_dur_ms=90.0, t_amp_mv=w["t"], st_level_mv=0.0, st_slope_mv_per_s=0.5, st_form="horizontal",
            qt_ms=380.0, qtc_ms=415.0)
        leads[lead] = LeadFeatures(lead=lead, median=median, qrs_morphology=w["morph"], p_notched=False,
                                   p_terminal_negative_mv=0.03 if lead == "V1" else 0.0)
    return GroundingFeatures(
        global_=Measurements(hr_bpm=72.0, rr_ms=833.0, pr_ms=160.0, qrs_ms=90.0, qt_ms=380.0, qtc_ms=415.0,
                             qtc_fridericia_ms=404.0, p_axis_deg=50.0, qrs_axis_deg=45.0, t_axis_deg=40.0),
        rhythm=Rhythm(beat_count=12, rr_mean_ms=833.0, rr_sd_ms=20.0, rr_cv=0.024, regular=True, p_wave_fraction=1.0,
                      p_positive_in=["I", "II", "III", "aVF", "V2", "V3", "V4", "V5", "V6"], p_negative_in=["aVR"],
                      ectopic_count=0),
        voltages=Voltages(s_v1_mv=1.0, r_v5_mv=1.5, r_v6_mv=1.2, r_i_mv=0.8, r_avl_mv=0.4, sokolow_lyon_mv=2.5,
                          limb_qrs_max_mv=1.2, precordial_qrs_max_mv=2.0),
        leads=leads,
        st_deviation_mv={lead: 0.0 for lead in STANDARD_LEADS},
        leads_measured=list(STANDARD_LEADS),
    )


def with_global(features: GroundingFeatures, **values: float | None) -> GroundingFeatures:
    changed = features.model_copy(deep=True)
    changed.global_ = changed.global_.model_copy(update=values)
    return changed


def with_qt(features: GroundingFeatures, qt_ms: float, hr_bpm: float = 60.0, **values: float | None) -> GroundingFeatures:
    """A QT at a heart rate, with the RR and the Bazett and Fridericia QTc that go with them.

    At 60 bpm (RR 1 s) every correction gives the QT itself, so a test of the limits can
    name the value that decides.
    """
    rr_s = 60.0 / hr_bpm
    return with_global(features, qt_ms=qt_ms, hr_bpm=hr_bpm, rr_ms=rr_s * 1000.0, qtc_ms=qt_ms / rr_s ** 0.5,
                       qtc_fridericia_ms=qt_ms / rr_s ** (1.0 / 3.0), **values)


def with_rhythm(features: GroundingFeatures, **values: Any) -> GroundingFeatures:
    changed = features.model_copy(deep=True)
    changed.rhythm = changed.rhythm.model_copy(update=values)
    return changed


def with_voltages(features: GroundingFeatures, **values: float | None) -> GroundingFeatures:
    changed = features.model_copy(deep=True)
    changed.voltages = changed.voltages.model_copy(update=values)
    return changed


def with_beats(features: GroundingFeatures, rr_ms: list[float | None], pr_ms: list[float | None],
               other_shape: list[int] | None = None, other_correlation: float | None = None) -> GroundingFeatures:
    """Per-beat rhythm facts: the RR before each beat, each beat's PR (None: no P wave found before it)
    and which beats have another QRS shape. Four leads time each P wave, as the measurement would.
    `other_correlation`: the QRS correlation of the other-shape beats with the dominant one (the dominant
    beats 0.97); None leaves the correlations out, as in features measured before they were kept.
    """
    changed = features.model_copy(deep=True)
    count = len(rr_ms)
    ectopic = [index in (other_shape or []) for index in range(count)]
    known = [value for value in rr_ms if value is not None]
    mean = sum(known) / len(known)
    sd = (sum((value - mean) ** 2 for value in known) / (len(known) - 1)) ** 0.5
    times, clock = [], 400.0
    for value in rr_ms:
        clock += value or 0.0
        times.append(clock)
    changed.rhythm = changed.rhythm.model_copy(update=dict(
        beat_count=count, rr_mean_ms=mean, rr_sd_ms=sd, rr_cv=sd / mean, regular=sd / mean < 0.1,
        p_wave_fraction=sum(pr is not None for pr in pr_ms) / count, beat_times_ms=times,
        ectopic_count=sum(ectopic), rr_intervals_ms=rr_ms, ectopic_beats=ectopic,
        qrs_correlation=[] if other_correlation is None else
        [other_correlation if other else 0.97 for other in ectopic],
        p_present=[pr is not None for pr in pr_ms]))
    for lead in ("I", "II", "V1", "V2"):
        changed.leads[lead].beats = [BeatFeatures(rr_ms=rr, pr_ms=pr) for rr, pr in zip(rr_ms, pr_ms, strict=True)]
    changed.global_ = changed.global_.model_copy(update={"hr_bpm": round(60000.0 / mean, 1), "rr_ms": mean})
    return changed


def with_median(features: GroundingFeatures, lead: str, **values: Any) -> GroundingFeatures:
    """Change one lead's median beat (BeatFeatures fields) or its lead fields (qrs_morphology...)."""
    changed = features.model_copy(deep=True)
    lead_features = changed.leads[lead]
    lead_fields = {k: values.pop(k) for k in list(values) if k in LeadFeatures.model_fields}
    lead_features.median = lead_features.median.model_copy(update=values)
    for name, value in lead_fields.items():
        setattr(lead_features, name, value)
    return changed


def with_st(features: GroundingFeatures, levels: dict[str, float], j_levels: dict[str, float] | None = None,
            form: str = "horizontal") -> GroundingFeatures:
    """ST levels (mV at J + 60 ms) in the given leads, in both places the features keep them.

    The ST at the J point is the same level (a horizontal ST) unless `j_levels` says otherwise.
    """
    changed = features.model_copy(deep=True)
    for lead, level in levels.items():
        changed.st_deviation_mv[lead] = level
        j = (j_levels or {}).get(lead, level)
        changed.leads[lead].median = changed.leads[lead].median.model_copy(
            update={"st_level_mv": level, "st_j_mv": j, "st_form": form})
    return changed


def with_t(features: GroundingFeatures, amplitudes: dict[str, float]) -> GroundingFeatures:
    changed = features
    for lead, amplitude in amplitudes.items():
        changed = with_median(changed, lead, t_amp_mv=amplitude)
    return changed


def with_q(features: GroundingFeatures, leads: list[str], width_ms: float, depth_mv: float) -> GroundingFeatures:
    changed = features
    for lead in leads:
        changed = with_median(changed, lead, q_dur_ms=width_ms, q_amp_mv=depth_mv)
    return changed


def with_qs(features: GroundingFeatures, leads: list[str], depth_mv: float = 0.8) -> GroundingFeatures:
    """QS complexes (one negative deflection, no R) in the given leads."""
    changed = features
    for lead in leads:
        changed = with_median(changed, lead, qrs_morphology="QS", q_dur_ms=0.0, q_amp_mv=depth_mv, r_amp_mv=0.0,
                              s_amp_mv=depth_mv, qrs_amp_mv=depth_mv, qrs_net_mv=-depth_mv)
    return changed


# Ready-made abnormal pictures, used by the reading and the claim-check tests.
def first_degree_block_and_inferior_stemi() -> GroundingFeatures:
    features = with_global(normal_features(), pr_ms=212.0)
    return with_st(features, {"II": 0.25, "III": 0.3, "aVF": 0.22, "I": -0.12, "aVL": -0.15})


def right_bundle_branch_block() -> GroundingFeatures:
    features = with_global(normal_features(), qrs_ms=138.0, qrs_axis_deg=95.0)
    features = with_median(features, "V1", qrs_morphology="rSR'", r_amp_mv=0.6, s_amp_mv=0.4, qrs_net_mv=0.2)
    return with_median(features, "V2", qrs_morphology="rSR'", r_amp_mv=0.8, s_amp_mv=0.5, qrs_net_mv=0.3)


def left_bundle_branch_block() -> GroundingFeatures:
    features = with_global(normal_features(), qrs_ms=152.0, qrs_axis_deg=-40.0)
    features = with_median(features, "V1", qrs_morphology="QS", r_amp_mv=0.0, s_amp_mv=1.8, q_amp_mv=1.8)
    features = with_median(features, "V6", qrs_morphology="R", r_amp_mv=1.6, s_amp_mv=0.0, q_amp_mv=0.0)
    return with_median(features, "I", qrs_morphology="R", r_amp_mv=1.0, s_amp_mv=0.0, q_amp_mv=0.0)


def atrial_fibrillation() -> GroundingFeatures:
    features = with_global(normal_features(), hr_bpm=118.0, pr_ms=None, p_axis_deg=None, qtc_ms=470.0)
    return with_rhythm(features, regular=False, rr_cv=0.21, p_wave_fraction=0.1, p_positive_in=[], p_negative_in=[])


def lvh_with_strain() -> GroundingFeatures:
    features = with_voltages(normal_features(), s_v1_mv=2.1, r_v5_mv=2.4, sokolow_lyon_mv=4.5,
                             precordial_qrs_max_mv=2.6)
    return with_st(features, {"V5": -0.15, "V6": -0.12, "I": -0.05})


def sinus_bradycardia_long_qt() -> GroundingFeatures:
    return with_qt(normal_features(), 560.0, hr_bpm=48.0)
