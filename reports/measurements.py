"""The global measurements a report sends: one value per quantity, its source, its range and flag.

    merge(device, computed)     -> (Measurements, sources)   the device's value where it printed
                                   one, ours otherwise; sources[field] = "device" | "computed"
    report_values(device, features) -> the same, ours without PR or P axis in fibrillation or flutter
    reference_range(field, ...) -> "120-200"                 OBX-7 (adult resting 12-lead)
    abnormal_flag(field, value, ...) -> "N" | "L" | "H" | "LL" | "HH"   OBX-8 (HL7 table 0078)

Why the device first: a file that carries the acquiring device's measurements (DICOM, MUSE,
Philips, SCP-ECG) is what the hospital's ECG system has always shown for that ECG, and the
device measured on the full-resolution signal and its own median beat; our value is kept in
the study's features and shown beside it on the review page, never sent as a second value
for the same quantity. A quantity the device did not print is ours ("computed").

Reference ranges are the adult limits the protocol reader uses (`ingest.protocol`), so a flag
and a reading never disagree: heart rate 60-100 /min; PR 120-200 ms; QRS up to 110 ms (a
conduction delay beyond, AHA/ACCF/HRS 2009 part III); QTc 350 ms to 450 ms (men, sex unknown)
or 460 ms (women), marked prolongation above 500 ms (part IV); QT, which has no rate-free
range, against the QTc limits converted back to the record's RR by Bazett (QT = QTc x sqrt(RR
s), at 60 /min when the rate is unknown); QRS axis -30 to +90 degrees; P axis 0 to +75
degrees; T axis 0 to +90 degrees (the commonly quoted adult ranges). LL/HH are the critical limits `reports.triage` also uses:
heart rate below 40 or above 150 /min, QTc above 500 ms.
"""

from __future__ import annotations

import math
from typing import Literal

from ingest.ecg import Measurements, Sex
from ingest.measure.measured import GroundingFeatures
from ingest.protocol.rhythm import has_p_waves

Source = Literal["device", "computed"]
REPORTED_FIELDS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qtc_fridericia_ms",
                   "p_axis_deg", "qrs_axis_deg", "t_axis_deg")

# Critical limits (shared with reports.triage): beyond them the flag is LL / HH.
EXTREME_BRADYCARDIA_BELOW_BPM = 40.0
EXTREME_TACHYCARDIA_ABOVE_BPM = 150.0
MARKED_QTC_ABOVE_MS = 500.0

QTC_LOW_MS = 350.0
QTC_HIGH_MS = {Sex.FEMALE: 460.0}  # others (men, unknown): 450
QTC_HIGH_DEFAULT_MS = 450.0

# field -> (low, high) inclusive; None: no limit on that side.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "hr_bpm": (60.0, 100.0),
    "pr_ms": (120.0, 200.0),
    "qrs_ms": (0.0, 110.0),  # written "0-110": OBX-7's low-high form, no lower limit in practice
    "p_axis_deg": (0.0, 75.0),
    "qrs_axis_deg": (-30.0, 90.0),
    "t_axis_deg": (0.0, 90.0),
}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def merge(device: Measurements | None, computed: Measurements | None) -> tuple[Measurements | None, dict[str, Source]]:
    """One value per quantity: the device's where it printed one, else ours; and where each came from."""
    if device is None and computed is None:
        return None, {}
    values: dict[str, float] = {}
    sources: dict[str, Source] = {}
    for name in Measurements.model_fields:
        device_value = getattr(device, name, None) if device is not None else None
        computed_value = getattr(computed, name, None) if computed is not None else None
        if _finite(device_value):
            values[name], sources[name] = device_value, "device"
        elif _finite(computed_value):
            values[name], sources[name] = computed_value, "computed"
    # RR follows the heart rate it goes with, so the two never come from different sources.
    if sources.get("hr_bpm") == "computed" and computed is not None and _finite(computed.rr_ms):
        values["rr_ms"], sources["rr_ms"] = computed.rr_ms, "computed"
    sources.pop("rr_ms", None)  # not sent: the heart rate is
    return Measurements(**values), sources


def report_values(device: Measurements | None,
                  features: GroundingFeatures | None) -> tuple[Measurements | None, dict[str, Source]]:
    """`merge` of the device's values and ours, ours without a PR or P axis in atrial fibrillation
    or flutter (`ingest.protocol.rhythm.has_p_waves`): there the P-like wave our median beat may
    hold is no P wave, and a device prints neither. A value the device printed is still sent."""
    computed = features.global_ if features is not None else None
    if computed is not None and not has_p_waves(features):
        computed = computed.model_copy(update={"pr_ms": None, "p_axis_deg": None})
    return merge(device, computed)


def _qtc_limits(sex: Sex | None) -> tuple[float, float]:
    return QTC_LOW_MS, QTC_HIGH_MS.get(sex, QTC_HIGH_DEFAULT_MS) if sex is not None else QTC_HIGH_DEFAULT_MS


def _rr_s(measurements: Measurements) -> float | None:
    if _finite(measurements.rr_ms) and measurements.rr_ms > 0:
        return measurements.rr_ms / 1000.0
    if _finite(measurements.hr_bpm) and measurements.hr_bpm > 0:
        return 60.0 / measurements.hr_bpm
    return None


def limits(field: str, measurements: Measurements, sex: Sex | None = None) -> tuple[float | None, float | None]:
    """(low, high) of the field's normal range for this record (QT: at its heart rate); (None, None): none."""
    if field in ("qtc_ms", "qtc_fridericia_ms"):
        return _qtc_limits(sex)
    if field == "qt_ms":
        # Without a rate (never in practice: a QT needs beats) the range at 60 /min, where QT = QTc,
        # so OBX-7 is never empty and the message is never refused for it.
        rr = _rr_s(measurements) or 1.0
        low, high = _qtc_limits(sex)
        return round(low * math.sqrt(rr)), round(high * math.sqrt(rr))
    return _RANGES.get(field, (None, None))


def _whole(value: float) -> str:
    return str(int(round(value)))


def reference_range(field: str, measurements: Measurements, sex: Sex | None = None) -> str:
    """OBX-7 text: "low-high", "<high" or ">low" (whole units, as the value is sent); "" for none."""
    low, high = limits(field, measurements, sex)
    if low is not None and high is not None:
        return f"{_whole(low)}-{_whole(high)}"
    if high is not None:
        return f"<{_whole(high + 1)}" if float(high).is_integer() else f"<{high}"
    if low is not None:
        return f">{_whole(low - 1)}"
    return ""


def abnormal_flag(field: str, value: float, measurements: Measurements, sex: Sex | None = None) -> str:
    """OBX-8 (table 0078): N normal, L/H below/above the range, LL/HH beyond a critical limit.

    The value is compared as it is sent (rounded to whole units), so the flag matches the number.
    """
    sent = round(value)
    if field == "hr_bpm":
        if sent < EXTREME_BRADYCARDIA_BELOW_BPM:
            return "LL"
        if sent > EXTREME_TACHYCARDIA_ABOVE_BPM:
            return "HH"
    if field in ("qtc_ms", "qtc_fridericia_ms") and sent > MARKED_QTC_ABOVE_MS:
        return "HH"
    low, high = limits(field, measurements, sex)
    if low is not None and sent < low:
        return "L"
    if high is not None and sent > high:
        return "H"
    return "N"
