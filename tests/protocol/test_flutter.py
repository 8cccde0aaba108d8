"""The flutter rule (`ingest.protocol.flutter`) on measured atrial waves: one organised rate in every
atrial lead, faster than the ventricles, is atrial flutter; anything less is not.

Each case gives the four atrial leads' measurements as `ingest.measure.atrial_waves` reports them,
on per-beat facts as in tests/protocol/test_rhythm.py.
"""

from __future__ import annotations

import pytest

from ingest.measure.measured import AtrialWaveLead, GroundingFeatures
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.protocol.flutter import (
    FASTER_THAN_VENTRICLES,
    FLUTTER_HZ,
    ORGANISED_FROM,
    REPEATS_FROM,
    SAME_RATE_HZ,
    flutter_waves,
)
from tests.protocol import builders as b
from tests.protocol.test_rhythm import AF_RR, PR, SINUS_RR

LEADS = ("II", "III", "aVF", "V1")


def _waves(frequency_hz: float = 4.8, organisation: float = 0.55, repeat: float = 0.45,
           **per_lead: dict[str, float]) -> list[AtrialWaveLead]:
    """The four atrial leads alike, but for per_lead overrides: lead -> {field: value}."""
    leads = []
    for lead in LEADS:
        values = {"frequency_hz": frequency_hz, "organisation": organisation, "repeat_correlation": repeat,
                  "amplitude_mv": 0.08, **per_lead.get(lead, {})}
        leads.append(AtrialWaveLead(lead=lead, **values))
    return leads


def _variable_conduction(waves: list[AtrialWaveLead]) -> GroundingFeatures:
    """An irregularly irregular RR without P waves (atrial fibrillation's facts) with these atrial waves."""
    return b.with_rhythm(b.with_beats(b.normal_features(), AF_RR, [None] * 13), atrial_waves=waves)


def test_one_organised_rate_in_every_atrial_lead_with_variable_conduction_is_flutter_not_fibrillation():
    read = protocol_read(_variable_conduction(_waves()))
    assert read.labels[0] == v.ATRIAL_FLUTTER and v.ATRIAL_FIBRILLATION not in read.labels
    assert "Atrial waves at 288/min, alike in II, III, aVF, V1" in read.steps[1]
    assert "irregular RR, variable conduction: atrial flutter." in read.steps[1]
    assert v.ECTOPIC_BEATS not in read.labels and "PR interval not applicable" in read.steps[2]
    assert "not judged: flutter waves at 288 /min" in read.steps[5]  # the QT (test_the_qt_is_not_judged_...)


def test_flutter_waves_at_a_fixed_ratio_are_flutter_even_where_they_stood_at_a_consistent_pr():
    """4:1 flutter: one flutter wave before every QRS at the same interval looks like a sinus P
    (cpsc2018_extra/Q0096 was read as sinus rhythm); the atrial leads show four waves a beat."""
    features = b.with_rhythm(b.with_beats(b.normal_features(), SINUS_RR, [PR] * 12), atrial_waves=_waves(4.85))
    assert flutter_waves(features) is not None
    read = protocol_read(features)
    assert read.labels[0] == v.ATRIAL_FLUTTER and v.SINUS_RHYTHM not in read.labels
    assert "regular RR, 4:1 conduction" in read.steps[1]
    assert "approximate at an irregular rhythm" not in read.steps[5]


def test_at_the_limits_the_rule_still_calls_flutter():
    low, high = FLUTTER_HZ
    assert flutter_waves(_variable_conduction(_waves(low, ORGANISED_FROM, REPEATS_FROM))) is not None
    assert flutter_waves(_variable_conduction(_waves(high))) is not None
    spread = _waves(4.8, V1={"frequency_hz": 4.8 + SAME_RATE_HZ})
    assert flutter_waves(_variable_conduction(spread)) is not None


@pytest.mark.parametrize("waves, why", [
    (_waves(FLUTTER_HZ[0] - 0.05), "slower than flutter"),
    (_waves(FLUTTER_HZ[1] + 0.05), "faster than flutter: fibrillation's rates"),
    (_waves(4.8, V1={"frequency_hz": 4.8 + SAME_RATE_HZ + 0.1}), "V1 at another rate: not one circuit"),
    (_waves(4.8, III={"organisation": ORGANISED_FROM - 0.01}), "III's power spread, not on one line"),
    (_waves(4.8, aVF={"repeat_correlation": REPEATS_FROM - 0.01}), "aVF's waves do not repeat alike"),
    (_waves(4.8)[:3], "V1 not measured"),
])
def test_anything_less_than_flutter_in_every_atrial_lead_stays_fibrillation(waves, why):
    features = _variable_conduction(waves)
    assert flutter_waves(features) is None, why
    assert protocol_read(features).labels[0] == v.ATRIAL_FIBRILLATION, why


def test_atrial_waves_no_faster_than_the_ventricles_are_no_flutter():
    """A sinus P comes once a beat: at 180 bpm (3 Hz) its harmonics at 4.4 Hz are in flutter's band but
    not FASTER_THAN_VENTRICLES times the heart rate."""
    features = b.with_rhythm(b.with_beats(b.normal_features(), [None] + [1000.0 / 3.0] * 11, [PR] * 12),
                             atrial_waves=_waves(4.4))
    assert features.global_.hr_bpm == 180 and 4.4 * 60 < FASTER_THAN_VENTRICLES * 180
    assert flutter_waves(features) is None
    assert protocol_read(features).labels[0] == v.SINUS_TACHYCARDIA
    assert flutter_waves(b.with_global(features, hr_bpm=170.0)) is not None  # 264/min >= 1.5 x 170 = 255


def test_a_wide_qrs_at_a_fast_rate_stays_a_wide_complex_tachycardia_whatever_the_atrial_leads_show():
    """A ventricular tachycardia's residue can look organised (Ningbo JS45548 came close): the
    critical label is not traded for a benign one."""
    features = b.with_global(b.with_rhythm(b.with_beats(b.normal_features(), [None] + [450.0] * 11, [None] * 12),
                                           atrial_waves=_waves(4.8)), qrs_ms=150.0)
    read = protocol_read(features)
    assert v.WIDE_COMPLEX_TACHYCARDIA in read.labels and v.ATRIAL_FLUTTER not in read.labels


def test_features_measured_before_atrial_waves_read_as_before():
    features = b.with_beats(b.normal_features(), AF_RR, [None] * 13)
    assert features.rhythm.atrial_waves == []
    assert protocol_read(features).labels[0] == v.ATRIAL_FIBRILLATION


def test_no_pr_or_p_axis_of_ours_is_reported_in_flutter_or_fibrillation_but_the_devices_is():
    """The median beat of a flutter holds a flutter wave before the QRS, timed as a "PR" (ludb/103:
    186 ms): the reading's summary and the report's measurements leave it out, as devices do."""
    from ingest.ecg import Measurements
    from reports.measurements import report_values

    flutter = b.with_global(_variable_conduction(_waves()), pr_ms=186.0, p_axis_deg=60.0)
    fibrillation = b.with_global(b.atrial_fibrillation(), pr_ms=150.0, p_axis_deg=50.0)
    sinus = b.normal_features()
    for features in (flutter, fibrillation):
        read = protocol_read(features)
        assert "PR " not in read.narrative and "QRS 90 ms" in read.narrative
        values, sources = report_values(None, features)
        assert values.pr_ms is None and values.p_axis_deg is None and "pr_ms" not in sources
        assert values.qrs_ms == 90.0 and sources["qrs_ms"] == "computed"
        values, sources = report_values(Measurements(pr_ms=170.0), features)
        assert (values.pr_ms, sources["pr_ms"]) == (170.0, "device")
    assert "PR 160 ms" in protocol_read(sinus).narrative
    values, sources = report_values(None, sinus)
    assert (values.pr_ms, values.p_axis_deg, sources["pr_ms"]) == (160.0, 50.0, "computed")


def test_the_qt_is_not_judged_where_flutter_waves_run_through_the_t_wave():
    """LUDB 103 (atrial flutter): the T end measured on the flutter waves put its QT 76 ms beyond the one its
    cardiologists drew, read "prolonged qt" and marked critical by the measured triage."""
    from reports.triage import measured_findings

    long_qt = b.with_qt(_variable_conduction(_waves()), qt_ms=470, hr_bpm=90)  # Framingham 521 ms: marked
    without_waves = b.with_rhythm(long_qt, atrial_waves=[])
    assert v.MARKED_QT_PROLONGATION in protocol_read(without_waves).labels
    assert v.MARKED_QT_PROLONGATION in [f.finding for f in measured_findings(without_waves)]

    read = protocol_read(long_qt)
    assert read.labels[0] == v.ATRIAL_FLUTTER
    assert not {v.PROLONGED_QT, v.MARKED_QT_PROLONGATION} & set(read.labels)
    assert "QT 470 ms, QTc 576 ms (Bazett, as devices report it); not judged: flutter waves at 288 /min" in read.steps[5]
    assert v.MARKED_QT_PROLONGATION not in [f.finding for f in measured_findings(long_qt)]
