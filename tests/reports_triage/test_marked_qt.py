"""The measured marked QT prolongation (`reports.triage`): Bazett's QTc above 500 ms at 60-100 /min counts,
of the QT adjusted for a wide QRS as the protocol reader adjusts it, so a bundle branch block or a paced
rhythm is not flagged for the QT its QRS adds (four LUDB records, LBBB, RBBB and paced, were)."""

from __future__ import annotations

from ingest.protocol import vocabulary as v
from reports.triage import measured_findings
from tests.protocol import builders as b

# QT 460 ms at 75 /min (RR 800 ms): Bazett 514 ms; Framingham 491 ms, under 500, so only Bazett's decides.
LONG_QT = dict(hr_bpm=75.0, rr_ms=800.0, qt_ms=460.0, qtc_ms=514.0)


def _marked(features) -> list[str]:
    return [finding.detail for finding in measured_findings(features) if finding.finding == v.MARKED_QT_PROLONGATION]


def test_bazett_over_500_with_a_narrow_qrs_is_marked_qt_prolongation():
    assert _marked(b.with_global(b.normal_features(), qrs_ms=90.0, **LONG_QT)) == [
        "measured QTc 514 ms (Bazett) > 500"]


def test_the_same_qt_with_a_wide_qrs_is_adjusted_first_and_not_marked():
    """QRS 160 ms: the QT less the 60 ms the QRS adds beyond 100 is 400 ms, Bazett 447 ms."""
    assert _marked(b.with_global(b.normal_features(), qrs_ms=160.0, **LONG_QT)) == []


def test_a_wide_qrs_whose_adjusted_qt_is_still_long_is_marked_and_says_so():
    """QT 500 ms with QRS 140 ms: adjusted 460 ms, Bazett 514 ms (Framingham 491, under 500)."""
    features = b.with_global(b.normal_features(), hr_bpm=75.0, rr_ms=800.0, qt_ms=500.0, qtc_ms=559.0, qrs_ms=140.0)
    assert _marked(features) == ["measured QTc 514 ms (Bazett, of the QT adjusted for the QRS of 140 ms) > 500"]
