"""Lead names and THE LEAD RULE: how any source's channels become the worklist's 12 leads.

Sources name their leads in many ways (`aVR`, `AVR`, `avr`, `Lead aVR`, `DIII`, `C1`,
`MLII`, ...). `normalize_lead_name` maps a name to one of `STANDARD_LEADS` (or `-aVR`),
or to None when the channel is not one of the twelve (a Frank lead, a blood pressure...).

The lead rule (`assemble_12_lead`), applied by every signal reader:

1. This is a 12-lead worklist. The eight independently recorded leads I, II and V1-V6
   are REQUIRED. A lead counts as present only when it has valid samples: a channel that
   is entirely NaN (the source's "no data" value) counts as absent, and a required lead
   that is absent that way is rejected by name ("lead V3 has no valid samples").
2. The four limb leads III, aVR, aVL and aVF carry no information beyond I and II. When
   one is missing it is derived (Einthoven and Goldberger):
       III = II - I,  aVR = -(I + II) / 2,  aVL = I - II / 2,  aVF = II - I / 2
   and `derived` names it (the readers copy it to `Ecg.provenance["derived_leads"]`).
   A recorded -aVR channel gives aVR by negation.
3. Anything else, for example an MIT-BIH style record with two leads at 360 Hz, is
   rejected with an `IngestError` naming the leads found and the leads required. A
   missing lead is never padded with zeros or copied from another lead.
4. Short gaps (NaN samples) inside a present lead are filled by linear interpolation
   and reported in `notes`; a required lead that is more than half NaN is rejected.
5. Channels that are not one of the twelve, and second copies of a lead, are dropped
   and named in `dropped`. `MLI`/`MLII`/`MLIII` (modified, torso-placed limb leads) are
   accepted as I/II/III and reported in `notes`, since their axis differs slightly.
6. The output is float32 millivolts in `STANDARD_LEADS` order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.ecg import STANDARD_LEADS
from ingest.errors import IngestError

REQUIRED_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
DERIVABLE_LEADS: tuple[str, ...] = ("III", "aVR", "aVL", "aVF")
NEGATIVE_AVR = "-aVR"

# A required lead with more invalid samples than this share is unusable.
MAX_INVALID_FRACTION = 0.5

_CANONICAL_BY_UPPER = {lead.upper(): lead for lead in STANDARD_LEADS}
# Other spellings seen in the wild: Italian/Spanish/French "D" limb leads, European "C"
# chest leads, and the modified (Mason-Likar) limb leads of monitoring records.
_ALIASES = {
    "DI": "I", "DII": "II", "DIII": "III",
    **{f"C{i}": f"V{i}" for i in range(1, 7)},
}
_MODIFIED_LIMB = {"MLI": "I", "MLII": "II", "MLIII": "III"}
# Words and decorations around the lead name itself: "Lead I (Einthoven)", "ECG V1".
_DECORATION = re.compile(r"\(.*?\)|\b(lead|ecg|ekg|derivation)\b", re.IGNORECASE)


def normalize_lead_name(raw: str) -> str | None:
    """The standard name of a lead (`aVR`, `V1`, ...), `-aVR`, or None if not one of the 12."""
    text = _DECORATION.sub(" ", raw)
    text = re.sub(r"[\s_.:]+", "", text).upper()
    negative = text.startswith("-")
    text = text.lstrip("-+")
    name = _CANONICAL_BY_UPPER.get(text) or _ALIASES.get(text) or _MODIFIED_LIMB.get(text)
    if name is None:
        return None
    if negative:
        return NEGATIVE_AVR if name == "aVR" else None
    return name


def is_modified_limb_lead(raw: str) -> bool:
    """True for MLI/MLII/MLIII: torso-placed limb electrodes (monitoring, stress tests)."""
    return re.sub(r"[\s_.:-]+", "", raw).upper() in _MODIFIED_LIMB


@dataclass
class TwelveLeads:
    """The result of the lead rule: 12 leads in standard order, and what was done to get them."""

    signal: np.ndarray  # (12, samples) float32 mV, STANDARD_LEADS order
    derived: list[str] = field(default_factory=list)  # leads computed from I and II
    dropped: list[str] = field(default_factory=list)  # source channels not used, as named there
    notes: list[str] = field(default_factory=list)  # gap filling, modified limb leads, ...

    @property
    def lead_names(self) -> list[str]:
        return list(STANDARD_LEADS)

    def provenance(self) -> dict[str, str]:
        """What a reader adds to `Ecg.provenance` (only the keys that apply)."""
        out: dict[str, str] = {}
        if self.derived:
            out["derived_leads"] = ",".join(self.derived)
        if self.dropped:
            out["dropped_channels"] = ",".join(self.dropped)
        if self.notes:
            out["lead_notes"] = "; ".join(self.notes)
        return out


def derive_limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    """III, aVR, aVL and aVF from I and II (Einthoven's law and Goldberger's leads)."""
    return {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }


def _fill_gaps(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Linearly interpolate NaN samples inside a lead; returns the lead and the count filled."""
    invalid = ~np.isfinite(values)
    count = int(invalid.sum())
    if count == 0:
        return values, 0
    index = np.arange(values.size)
    filled = values.copy()
    filled[invalid] = np.interp(index[invalid], index[~invalid], values[~invalid])
    return filled, count


def assemble_12_lead(signal: np.ndarray, raw_names: Sequence[str], path: str | Path) -> TwelveLeads:
    """Apply the lead rule to a (channels, samples) mV signal whose channels are `raw_names`.

    Raises `IngestError(path, ...)` when the source cannot give the 12 leads.
    """
    if signal.ndim != 2 or signal.shape[0] != len(raw_names):
        raise IngestError(path, f"signal shape {signal.shape} does not match {len(raw_names)} channel names")
    if signal.shape[1] == 0:
        raise IngestError(path, "the signal has no samples")

    present: dict[str, np.ndarray] = {}
    all_invalid: list[str] = []
    dropped: list[str] = []
    notes: list[str] = []
    values = np.asarray(signal, dtype=np.float64)  # rows are read, never written: no copy needed
    # Invalid samples counted once for all channels (per channel, the test cost as much as the rest).
    invalid_counts = (~np.isfinite(values)).sum(axis=1).tolist()
    for raw, channel, invalid in zip(raw_names, values, invalid_counts, strict=True):
        name = normalize_lead_name(raw)
        if name is None or name in present:
            dropped.append(raw)
            continue
        if invalid == channel.size:
            all_invalid.append(name)
            continue
        invalid_fraction = invalid / channel.size
        if name in REQUIRED_LEADS and invalid_fraction > MAX_INVALID_FRACTION:
            raise IngestError(path, f"lead {name} is mostly missing ({invalid_fraction:.0%} of samples invalid)")
        channel, filled = _fill_gaps(channel) if invalid else (channel, 0)
        if filled:
            notes.append(f"{name}: {filled} invalid samples interpolated")
        if is_modified_limb_lead(raw):
            notes.append(f"{name} recorded as modified limb lead {raw}")
        present[name] = channel

    if NEGATIVE_AVR in present:
        negative = present.pop(NEGATIVE_AVR)
        if "aVR" not in present:
            present["aVR"] = -negative
            notes.append("aVR from the recorded -aVR channel")

    missing_required = [lead for lead in REQUIRED_LEADS if lead not in present]
    empty_required = [lead for lead in missing_required if lead in all_invalid]
    if empty_required:
        raise IngestError(path, f"lead {', '.join(empty_required)} has no valid samples (all NaN)")
    if missing_required:
        found = ", ".join(raw_names) if raw_names else "none"
        raise IngestError(
            path,
            f"not a 12-lead ECG: found leads [{found}], missing {', '.join(missing_required)}; "
            f"required: {', '.join(REQUIRED_LEADS)} ({', '.join(DERIVABLE_LEADS)} are derived when missing)",
        )

    derived = [lead for lead in DERIVABLE_LEADS if lead not in present]
    if derived:
        computed = derive_limb_leads(present["I"], present["II"])
        for lead in derived:
            present[lead] = computed[lead]
            if lead in all_invalid:
                notes.append(f"{lead} had no valid samples in the source and was derived")
    ordered = np.stack([present[lead] for lead in STANDARD_LEADS]).astype(np.float32)
    return TwelveLeads(signal=ordered, derived=derived, dropped=dropped, notes=notes)
