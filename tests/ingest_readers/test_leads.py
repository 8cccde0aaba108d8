"""The lead rule (ingest.readers.leads): normalised names, derivation, rejection; each branch."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.errors import IngestError
from ingest.readers.leads import assemble_12_lead, derive_limb_leads, normalize_lead_name

EIGHT = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("aVR", "aVR"), ("AVR", "aVR"), ("avr", "aVR"), ("Lead aVR", "aVR"), ("-aVR", "-aVR"),
    ("I", "I"), ("Lead I (Einthoven)", "I"), ("ECG II", "II"), ("DIII", "III"), ("iii", "III"),
    ("V1", "V1"), ("v6", "V6"), ("C3", "V3"), (" V2 ", "V2"), ("MLII", "II"),
    ("V7", None), ("X", None), ("ABP", None), ("Resp", None), ("-V1", None), ("", None),
])
def test_lead_names_are_normalised(raw: str, expected: str | None) -> None:
    assert normalize_lead_name(raw) == expected


def _signal(names: list[str], base: np.ndarray) -> np.ndarray:
    """Channels of `base` (STANDARD_LEADS order) picked by name."""
    return np.stack([base[STANDARD_LEADS.index(name)] for name in names])


def test_all_twelve_are_reordered_to_standard_order_without_derivation(ecg12: np.ndarray) -> None:
    shuffled = ["V6", "aVF", "I", "V3", "III", "aVL", "V1", "II", "V5", "aVR", "V2", "V4"]
    leads = assemble_12_lead(_signal(shuffled, ecg12), shuffled, "x.hea")
    assert leads.lead_names == list(STANDARD_LEADS)
    assert leads.derived == []
    assert leads.signal.dtype == np.float32 and leads.signal.shape == (12, 5000)
    np.testing.assert_allclose(leads.signal, ecg12, atol=1e-6)
    assert "derived_leads" not in leads.provenance()


def test_missing_limb_leads_are_derived_by_einthoven_and_goldberger(ecg12: np.ndarray) -> None:
    leads = assemble_12_lead(_signal(EIGHT, ecg12), EIGHT, "x.hea")
    assert leads.derived == ["III", "aVR", "aVL", "aVF"]
    assert leads.provenance()["derived_leads"] == "III,aVR,aVL,aVF"
    lead_i, lead_ii = ecg12[0], ecg12[1]
    expected = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
                "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    for name, values in expected.items():
        np.testing.assert_allclose(leads.signal[STANDARD_LEADS.index(name)], values, atol=1e-5)
    # The recorded leads pass through untouched.
    np.testing.assert_allclose(leads.signal[STANDARD_LEADS.index("V4")], ecg12[9], atol=1e-6)


def test_only_the_absent_limb_leads_are_derived(ecg12: np.ndarray) -> None:
    names = [*EIGHT, "III", "aVL"]
    leads = assemble_12_lead(_signal(names, ecg12), names, "x.hea")
    assert leads.derived == ["aVR", "aVF"]
    np.testing.assert_allclose(leads.signal[2], ecg12[2], atol=1e-6)  # recorded III kept


def test_derivation_matches_a_physically_consistent_recording() -> None:
    rng = np.random.default_rng(3)
    lead_i, lead_ii = rng.normal(size=100), rng.normal(size=100)
    derived = derive_limb_leads(lead_i, lead_ii)
    # Goldberger's leads sum to zero and III = II - I (Einthoven's law).
    np.testing.assert_allclose(derived["aVR"] + derived["aVL"] + derived["aVF"], 0, atol=1e-12)
    np.testing.assert_allclose(lead_i + derived["III"], lead_ii, atol=1e-12)


def test_two_lead_holter_record_is_rejected_naming_found_and_required_leads() -> None:
    signal = np.random.default_rng(0).normal(size=(2, 3600))
    with pytest.raises(IngestError) as caught:
        assemble_12_lead(signal, ["MLII", "V5"], "100.hea")
    reason = caught.value.reason
    assert caught.value.path == "100.hea"
    assert "found leads [MLII, V5]" in reason
    assert "missing I, V1, V2, V3, V4, V6" in reason
    assert "required: I, II, V1, V2, V3, V4, V5, V6" in reason


def test_missing_chest_lead_is_never_padded(ecg12: np.ndarray) -> None:
    names = [name for name in STANDARD_LEADS if name != "V4"]
    with pytest.raises(IngestError, match="missing V4"):
        assemble_12_lead(_signal(names, ecg12), names, "x.hea")


def test_all_nan_required_lead_is_rejected_by_name(ecg12: np.ndarray) -> None:
    signal = np.array(ecg12)
    signal[8] = np.nan  # V3
    with pytest.raises(IngestError, match=r"lead V3 has no valid samples \(all NaN\)"):
        assemble_12_lead(signal, list(STANDARD_LEADS), "x.hea")


def test_all_nan_limb_lead_is_derived_instead(ecg12: np.ndarray) -> None:
    signal = np.array(ecg12)
    signal[2] = np.nan  # III
    leads = assemble_12_lead(signal, list(STANDARD_LEADS), "x.hea")
    assert leads.derived == ["III"]
    np.testing.assert_allclose(leads.signal[2], ecg12[1] - ecg12[0], atol=1e-5)
    assert any("III had no valid samples" in note for note in leads.notes)


def test_short_gaps_are_interpolated_and_reported(ecg12: np.ndarray) -> None:
    signal = np.array(ecg12)
    signal[6, 100:110] = np.nan  # V1
    leads = assemble_12_lead(signal, list(STANDARD_LEADS), "x.hea")
    assert np.isfinite(leads.signal).all()
    expected = np.interp(np.arange(100, 110), [99, 110], [ecg12[6, 99], ecg12[6, 110]])
    np.testing.assert_allclose(leads.signal[6, 100:110], expected, atol=1e-5)
    assert "V1: 10 invalid samples interpolated" in leads.notes


def test_mostly_missing_required_lead_is_rejected(ecg12: np.ndarray) -> None:
    signal = np.array(ecg12)
    signal[0, :4000] = np.nan
    with pytest.raises(IngestError, match="lead I is mostly missing"):
        assemble_12_lead(signal, list(STANDARD_LEADS), "x.hea")


def test_extra_and_duplicate_channels_are_dropped_and_named(ecg12: np.ndarray) -> None:
    names = [*STANDARD_LEADS, "vx", "V1"]
    signal = np.vstack([ecg12, ecg12[:1] * 5, ecg12[:1] * 7])
    leads = assemble_12_lead(signal, names, "x.hea")
    assert leads.dropped == ["vx", "V1"]
    np.testing.assert_allclose(leads.signal[6], ecg12[6], atol=1e-6)  # the first V1 is kept


def test_negative_avr_gives_avr(ecg12: np.ndarray) -> None:
    names = ["I", "II", "III", "-aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    signal = np.array(ecg12)
    signal[3] = -ecg12[3]
    leads = assemble_12_lead(signal, names, "x.hea")
    assert leads.derived == []
    np.testing.assert_allclose(leads.signal[3], ecg12[3], atol=1e-6)


def test_modified_limb_lead_is_accepted_and_noted(ecg12: np.ndarray) -> None:
    names = ["I", "MLII", *STANDARD_LEADS[2:]]
    leads = assemble_12_lead(np.array(ecg12), names, "x.hea")
    assert "II recorded as modified limb lead MLII" in leads.notes
