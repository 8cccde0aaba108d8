"""The measured triage under possibly swapped arm electrodes: an ST level in I or aVL is the swap's
(lead I inverted, aVL showing aVR), so it raises no measured ST elevation; other leads still do."""

from __future__ import annotations

from reports.triage import measured_findings
from tests.protocol.builders import normal_features, with_median, with_st


def _findings(features) -> list[str]:
    return [finding.finding for finding in measured_findings(features)]


def _swapped(features):
    return with_median(features, "I", p_amp_mv=-0.08, qrs_net_mv=-0.6, t_amp_mv=-0.2)


def test_st_elevation_in_i_and_avl_is_not_raised_when_the_arms_may_be_swapped() -> None:
    lateral = with_st(normal_features(), {"I": 0.2, "aVL": 0.2})
    assert "st elevation (lateral)" in _findings(lateral)
    assert not [f for f in _findings(_swapped(lateral)) if f.startswith("st elevation")]


def test_st_elevation_elsewhere_is_still_raised_when_the_arms_may_be_swapped() -> None:
    inferior = _swapped(with_st(normal_features(), {"II": 0.2, "III": 0.2, "aVF": 0.2}))
    assert "st elevation (inferior)" in _findings(inferior)
