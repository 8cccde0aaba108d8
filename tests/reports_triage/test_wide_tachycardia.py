"""The measured wide complex tachycardia (`reports.triage.measured_findings`): a QRS of 120 ms or more over
100 /min is ventricular until shown otherwise, and a sinus P wave before most beats at a consistent PR of
120 ms or more is what shows otherwise (a sinus tachycardia with a bundle branch block: CPSC A0001, right
bundle branch block at 101 /min, was marked critical while the reader read it as sinus tachycardia)."""

from __future__ import annotations

import pytest

from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from reports.triage import measured_findings
from tests.protocol import builders as b

NO_P = dict(p_wave_fraction=0.1, p_positive_in=[], p_negative_in=[])


def _findings(features) -> list[str]:
    return [finding.finding for finding in measured_findings(features)]


def test_a_wide_tachycardia_without_sinus_p_waves_is_critical():
    wide = b.with_global(b.with_rhythm(b.normal_features(), **NO_P), hr_bpm=150.0, qrs_ms=150.0)
    assert v.WIDE_COMPLEX_TACHYCARDIA in _findings(wide)
    assert v.WIDE_COMPLEX_TACHYCARDIA in protocol_read(wide).labels


def test_a_sinus_tachycardia_with_a_bundle_branch_block_is_not():
    sinus = b.with_global(b.normal_features(), hr_bpm=150.0, qrs_ms=150.0, pr_ms=140.0)
    assert v.SINUS_TACHYCARDIA in protocol_read(sinus).labels
    assert v.WIDE_COMPLEX_TACHYCARDIA not in _findings(sinus)


@pytest.mark.parametrize(("case", "change"), [
    # The wave before the QRS stands under 120 ms from it: the previous T, or pre-excitation.
    ("a 'P' 110 ms before the QRS", lambda f: b.with_global(f, pr_ms=110.0)),
    # P waves found, but upright in aVR and not in II: not a sinus P (retrograde, ectopic).
    ("P waves of another axis", lambda f: b.with_rhythm(f, p_positive_in=["aVR"], p_negative_in=["II", "aVF"])),
])
def test_p_waves_that_are_not_sinus_leave_it_critical(case, change):
    wide = change(b.with_global(b.normal_features(), hr_bpm=150.0, qrs_ms=150.0, pr_ms=140.0))
    assert v.WIDE_COMPLEX_TACHYCARDIA in _findings(wide), case
