"""What a checkpoint expects as input: lead order, sampling rate, length, image style and budget.

The signal tower learns its input channels by position, so a checkpoint is only as good as
the agreement between the order it was trained on and the order it is fed. The released
ECG-R1 was trained on MIMIC-IV-ECG, whose files store the leads as

    I, II, III, aVR, aVF, aVL, V1-V6        (channels 4 and 5 swapped against ours)

and its `load_ecg` feeds a file's channels in the file's order, 500 Hz assumed, cut or
zero-padded to 5000 samples. Its images were ECG-image-kit-style pages, capped at 768
visual tokens. Our own checkpoints were trained on our canonical order (STANDARD_LEADS)
and our 1056 x 640 page. This module makes that a property of the checkpoint:

    config.json "ecg_input": {"lead_order": [...], "sampling_rate_hz": 500, "samples": 5000,
                              "image_style": "ecg-image-kit", "max_image_tokens": 768,
                              "min_image_tokens": 4}

Missing keys are filled from a default chosen by who wrote the checkpoint:
- written by ecg-worklist (config.json has `ecg_config` or `ecgwl_demonstration`): our
  current contract, `ECGWL_CONTRACT`, so checkpoints made before this block existed keep
  reading what they were trained on;
- anything else (the released ECG-R1-8B-SFT/RL): `RELEASE_CONTRACT`.

`EcgInputContract.model_signal(window)` turns the worklist's prepared window (12 x 5000,
STANDARD_LEADS, 500 Hz, mV) into the tensor the checkpoint reads: leads permuted by name,
resampled only when the checkpoint's rate differs, cut or zero-padded at the end. For the
release's contract this is a pure permutation of float32 values, so the tensor is bit-equal
to what the release's `load_ecg` makes of the same recording stored in MIMIC order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ingest.ecg import MODEL_SAMPLING_RATE_HZ, MODEL_WINDOW_SAMPLES, STANDARD_LEADS

CONFIG_KEY = "ecg_input"
# MIMIC-IV-ECG's channel order (also ECG-CoCa's pretraining data): what the released tower learned.
MIMIC_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVF", "aVL",
                                "V1", "V2", "V3", "V4", "V5", "V6")
ImageStyle = Literal["ecgwl-12lead", "ecg-image-kit"]
# Keys whose presence in config.json marks a checkpoint written by ecg-worklist (never by the release).
_ECGWL_MARKERS = ("ecg_config", "ecgwl_demonstration")


class EcgInputContract(BaseModel):
    """The input one checkpoint was trained on. Immutable; build it with `contract_for_config`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_order: tuple[str, ...] = Field(description="the 12 leads, in the tower's channel order")
    sampling_rate_hz: int = Field(gt=0, description="the rate the tower was trained at")
    samples: int = Field(gt=0, description="the tower's input length (tower seq_length)")
    image_style: ImageStyle = Field(description="how a page is drawn when the source has none")
    max_image_tokens: int | None = Field(gt=0, description="visual-token cap per image; None = uncapped")
    min_image_tokens: int = Field(default=4, gt=0)

    @field_validator("lead_order")
    @classmethod
    def _twelve_standard_leads(cls, leads: tuple[str, ...]) -> tuple[str, ...]:
        if sorted(leads) != sorted(STANDARD_LEADS):
            raise ValueError(f"lead_order must name each of {', '.join(STANDARD_LEADS)} once, got {list(leads)}")
        return leads

    @model_validator(mode="after")
    def _budget_order(self) -> EcgInputContract:
        if self.max_image_tokens is not None and self.max_image_tokens < self.min_image_tokens:
            raise ValueError("max_image_tokens must be at least min_image_tokens")
        return self

    @property
    def lead_index(self) -> list[int]:
        """Rows of a STANDARD_LEADS array, in this contract's channel order."""
        return [STANDARD_LEADS.index(lead) for lead in self.lead_order]

    def model_signal(self, window: np.ndarray, window_rate_hz: float = MODEL_SAMPLING_RATE_HZ) -> np.ndarray:
        """The (12, samples) float32 tensor this checkpoint reads, from a (12, N) STANDARD_LEADS mV window.

        Non-finite samples become 0 (as the release does). The window is resampled only when the
        contract's rate differs from the window's; at equal rates the values pass unchanged.
        """
        data = np.asarray(window)
        if data.ndim != 2 or data.shape[0] != len(STANDARD_LEADS):
            raise ValueError(f"expected a (12, N) window in STANDARD_LEADS order, got shape {data.shape}")
        data = np.nan_to_num(data[self.lead_index], nan=0.0, posinf=0.0, neginf=0.0)
        if float(window_rate_hz) != float(self.sampling_rate_hz):
            from ingest.prepare.signal import resample  # scipy: only for checkpoints at another rate

            data = resample(data, window_rate_hz, self.sampling_rate_hz)
        out = np.zeros((data.shape[0], self.samples), dtype=np.float32)
        n = min(self.samples, data.shape[1])
        out[:, :n] = data[:, :n]
        return out

    def to_config(self) -> dict[str, Any]:
        """The `ecg_input` block for config.json."""
        return {**self.model_dump(), "lead_order": list(self.lead_order)}


RELEASE_CONTRACT = EcgInputContract(
    lead_order=MIMIC_LEADS, sampling_rate_hz=500, samples=5000, image_style="ecg-image-kit",
    max_image_tokens=768, min_image_tokens=4)
ECGWL_CONTRACT = EcgInputContract(
    lead_order=STANDARD_LEADS, sampling_rate_hz=MODEL_SAMPLING_RATE_HZ, samples=MODEL_WINDOW_SAMPLES,
    image_style="ecgwl-12lead", max_image_tokens=768, min_image_tokens=4)


def written_by_ecgwl(config: Mapping[str, Any]) -> bool:
    """Whether a config.json dict was written by ecg-worklist (ours) rather than by the release."""
    return any(key in config for key in _ECGWL_MARKERS)


def contract_for_config(config: Mapping[str, Any]) -> EcgInputContract:
    """The input contract of a checkpoint, from its config.json as a dict (see the module docstring)."""
    base = ECGWL_CONTRACT if written_by_ecgwl(config) else RELEASE_CONTRACT
    block = config.get(CONFIG_KEY) or {}
    if not isinstance(block, Mapping):
        raise ValueError(f"config.json '{CONFIG_KEY}' must be an object, got {type(block).__name__}")
    contract = EcgInputContract.model_validate({**base.model_dump(), **block})
    tower = config.get("ecg_config") or {}
    seq_length = tower.get("seq_length") if isinstance(tower, Mapping) else None
    if seq_length is not None and int(seq_length) != contract.samples:
        raise ValueError(f"config.json '{CONFIG_KEY}.samples' {contract.samples} != the tower's seq_length {seq_length}")
    return contract


def contract_for_checkpoint(folder: str | Path) -> EcgInputContract:
    """The input contract of the checkpoint folder `folder` (its config.json)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the checkpoint's config ({exc})") from exc
    try:
        return contract_for_config(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


__all__ = [
    "CONFIG_KEY",
    "ECGWL_CONTRACT",
    "MIMIC_LEADS",
    "RELEASE_CONTRACT",
    "EcgInputContract",
    "ImageStyle",
    "contract_for_checkpoint",
    "contract_for_config",
    "written_by_ecgwl",
]
