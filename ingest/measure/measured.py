"""What was measured on one ECG: the grounding features, as plain typed values.

These are the numbers GEM and ECG-R1 ground their reasoning on, the numbers the protocol
reader applies its thresholds to, the numbers the HL7 draft reports as coded OBX and the
numbers the review page shows beside what the interpreter claimed. `ingest.measure.features`
computes them; this module only says what they are, so readers of the numbers do not
depend on how they were measured.

Units: milliseconds, millivolts, beats per minute, degrees. `None` means "not measured
reliably" and must be shown as such, never as zero.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ingest.ecg import Measurements


class BeatFeatures(BaseModel):
    """One beat in one lead (or the lead's median beat)."""

    rr_ms: float | None = None  # interval to the previous beat
    p_amp_mv: float | None = None  # signed, relative to the PR baseline
    p_dur_ms: float | None = None
    pr_ms: float | None = None  # P onset to QRS onset
    q_amp_mv: float | None = None  # depth of the Q wave (before the first R), positive; 0 when absent
    q_dur_ms: float | None = None
    r_amp_mv: float | None = None  # height of the tallest positive QRS deflection
    s_amp_mv: float | None = None  # depth of the deepest negative deflection after R, positive
    qrs_amp_mv: float | None = None  # peak-to-peak QRS amplitude
    qrs_net_mv: float | None = None  # R minus S (signed), for the axis
    qrs_dur_ms: float | None = None
    t_amp_mv: float | None = None  # signed
    t_dur_ms: float | None = None
    st_dur_ms: float | None = None  # J point to T onset
    st_level_mv: float | None = None  # at J + 60 ms, relative to the PR baseline
    st_j_mv: float | None = None  # at the J point itself (the global QRS offset), relative to the PR baseline
    st_slope_mv_per_s: float | None = None
    st_form: str | None = None  # "upsloping" | "horizontal" | "downsloping"
    qt_ms: float | None = None
    qtc_ms: float | None = None


class LeadFeatures(BaseModel):
    lead: str
    beats: list[BeatFeatures] = Field(default_factory=list)
    median: BeatFeatures = Field(default_factory=BeatFeatures)  # over the lead's beats
    qrs_morphology: str | None = None  # e.g. "QS", "rS", "Rs", "rSR'", "qR"
    p_notched: bool | None = None
    p_terminal_negative_mv: float | None = None  # depth of a biphasic P's negative part (V1)


class Voltages(BaseModel):
    """The voltages the protocol's hypertrophy and low-voltage criteria use, in mV."""

    s_v1_mv: float | None = None
    r_v5_mv: float | None = None
    r_v6_mv: float | None = None
    r_i_mv: float | None = None
    r_avl_mv: float | None = None
    sokolow_lyon_mv: float | None = None  # S(V1) + max(R(V5), R(V6))
    limb_qrs_max_mv: float | None = None  # largest peak-to-peak QRS over limb leads
    precordial_qrs_max_mv: float | None = None  # largest peak-to-peak QRS over V1-V6
    # The median lead's QRS span (median beat, peak to peak), and whether it is larger than hearts make it
    # (ingest.measure.features.IMPLAUSIBLE_MEDIAN_QRS_MV): then the recording's gain is suspect, and what
    # rests on amplitudes is not read. None / False: measured before this.
    median_lead_qrs_mv: float | None = None
    gain_suspect: bool = False


class AtrialWaveLead(BaseModel):
    """The atrial activity left between the QRS complexes of one lead."""

    lead: str
    frequency_hz: float  # its dominant frequency, 3-12 Hz (ingest.measure.atrial_waves.ATRIAL_BAND_HZ)
    organisation: float  # share of the band's power on the dominant line and its second harmonic, 0-1
    repeat_correlation: float  # autocorrelation at the best lag of one atrial cycle, -1-1
    amplitude_mv: float  # RMS of what is left outside the blanked QRS


class PLock(BaseModel):
    """How much of the stretch before the QRS repeats at the same place in every beat (a locked P wave)."""

    span_ms: float  # the stretch measured: up to 30 ms before the QRS onset, after the previous T
    beats: int  # the dominant beats averaged
    share_by_lead: dict[str, float]  # per lead, the repeating wave's share of the stretch's power (~0-1)
    # Per lead, the averaged stretch's largest deflection from its end (the PR segment), signed: an
    # upright P wave is positive.
    peak_mv_by_lead: dict[str, float] = Field(default_factory=dict)


class Rhythm(BaseModel):
    beat_count: int = 0
    rr_mean_ms: float | None = None
    rr_sd_ms: float | None = None
    rr_cv: float | None = None  # coefficient of variation of RR
    regular: bool | None = None
    p_wave_fraction: float | None = None  # share of beats with a P wave before the QRS
    p_positive_in: list[str] = Field(default_factory=list)  # leads whose median P is positive
    p_negative_in: list[str] = Field(default_factory=list)
    # Added by ingest.measure.features: where each detected beat is (its QRS fiducial point, ms from the
    # start of the record; the order of LeadFeatures.beats) and how many differ from the dominant QRS.
    beat_times_ms: list[float] = Field(default_factory=list)
    ectopic_count: int | None = None
    # Per beat, in the order of beat_times_ms: the RR interval before it (None for the first beat and
    # across noise), whether its QRS differs from the dominant one, and whether it has a P wave (None
    # where the 400 ms before its QRS was not recorded or the beat is cut by the record's edge).
    rr_intervals_ms: list[float | None] = Field(default_factory=list)
    ectopic_beats: list[bool] = Field(default_factory=list)
    # How alike each beat's QRS is to the dominant one (correlation over all leads, +-60 ms, in the QRS band;
    # ingest.measure.beats.DOMINANT_CORRELATION and over is the dominant shape). Empty: measured before this.
    qrs_correlation: list[float] = Field(default_factory=list)
    p_present: list[bool | None] = Field(default_factory=list)
    # Each beat's PR (ms): its P found across the leads (the median beat's P matched in it, or the
    # median of its leads' PRs where two or more timed it); None where not timed.
    beat_pr_ms: list[float | None] = Field(default_factory=list)
    # Ventricular pacing (ingest.measure.pacing): beats a pacemaker spike precedes, and whether that is
    # most of them (the spikes were then bridged before measuring). None: features measured before this.
    paced_beats: int | None = None
    pacing_assessed_beats: int | None = None  # the beats looked at for a spike (inside the record)
    paced: bool | None = None
    # The atrial waves left between the QRS complexes in II, III, aVF and V1 (ingest.measure.atrial_waves):
    # flutter's repeat at one rate in every lead, fibrillation's do not. A lead recorded in part is left
    # out; empty: too few beats, or features measured before this.
    atrial_waves: list[AtrialWaveLead] = Field(default_factory=list)
    # The P waves locked to the QRS, seen over all the dominant beats together (ingest.measure.p_lock):
    # a low sinus P the single-beat search misses still repeats before every QRS. None: too few beats,
    # leads recorded in part, or features measured before this.
    p_lock: PLock | None = None


class BoundaryPoints(BaseModel):
    """Five wave boundaries, each in ms from a dominant beat's QRS fiducial point."""

    p_on_ms: float | None = None
    p_off_ms: float | None = None
    qrs_on_ms: float | None = None
    qrs_off_ms: float | None = None
    t_end_ms: float | None = None


class WaveBoundaries(BoundaryPoints):
    """Where the global wave boundaries lie in the record, for comparison with annotated ones.

    Each value is in ms from a dominant beat's QRS fiducial point: the boundary of beat i
    (one of `dominant_beats`, indices into `Rhythm.beat_times_ms`) lies at
    `beat_times_ms[i] + value`. None where the leads did not agree on it.

    The global values are the device's (the earliest onset and latest end of the leads that agree:
    what PR, QRS and QT are measured between). `lead_median` is the median of the leads' own boundaries
    (the leads that found the wave), where the global one is known: the convention of annotations
    drawn lead by lead, and of a delineator that combines leads by their median. None: measured before this.
    """

    dominant_beats: list[int] = Field(default_factory=list)
    lead_median: BoundaryPoints | None = None


class TraceQuality(BaseModel):
    """How clean the trace is: what a reader of the paper ECG sees as a fuzzy line (ingest.measure.features,
    MUSCLE_ARTEFACT_FROM_UV)."""

    # The median measured lead's noise above the 40 Hz the waves are delineated at (muscle tremor), RMS in uV:
    # the beats' spread around the median beat as recorded, less its spread on the 40 Hz rows. None: measured
    # before this, or nothing measured.
    median_lead_hf_noise_uv: float | None = None
    muscle_artefact: bool = False


class GroundingFeatures(BaseModel):
    """Everything measured on one ECG."""

    global_: Measurements = Field(default_factory=Measurements, alias="global")
    rhythm: Rhythm = Field(default_factory=Rhythm)
    voltages: Voltages = Field(default_factory=Voltages)
    quality: TraceQuality = Field(default_factory=TraceQuality)
    leads: dict[str, LeadFeatures] = Field(default_factory=dict)
    st_deviation_mv: dict[str, float] = Field(default_factory=dict)  # lead -> ST level at J+60
    leads_measured: list[str] = Field(default_factory=list)
    # Leads too noisy for the P, ST and T waves whose QRS stands far out of the noise (motion wander in a
    # precordial lead): their QRS alone is measured (the fields of beat_measures.QRS_FIELDS), the rest left empty.
    leads_qrs_only: list[str] = Field(default_factory=list)
    boundaries: WaveBoundaries = Field(default_factory=WaveBoundaries)  # for validation against annotations
    notes: list[str] = Field(default_factory=list)  # e.g. "no T end found in V2"

    model_config = {"populate_by_name": True}
