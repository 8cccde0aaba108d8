"""What preparation leaves on disk for the stages after it, named by the study's content hash.

    images/ab/<sha256>.png              the 12-lead rendering (or the PDF page), for the review page
    prepared/ab/<sha256>/signal.npy     the 12 x 5000 model window (float32 mV, 500 Hz)
    prepared/ab/<sha256>/ecg.json       the canonical ECG without its arrays (demographics, device data)

The interpret stage (often on another machine, the GPU host, sharing the data folder)
rebuilds the `PreparedEcg` from these instead of reading and measuring the file again;
the features come from the study row. Every file is written under a temporary name and
renamed, so a reader never sees half a file, and writing the same study twice is harmless.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ingest.ecg import MODEL_SAMPLING_RATE_HZ, STANDARD_LEADS, Ecg
from ingest.measure.measured import GroundingFeatures
from ingest.prepare import PreparedEcg

_ECG_ARRAYS = {"signal", "median_beat", "pages"}


def image_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "images" / sha256[:2] / f"{sha256}.png"


def prepared_folder(data_dir: Path, sha256: str) -> Path:
    return data_dir / "prepared" / sha256[:2] / sha256


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def save_prepared(data_dir: Path, sha256: str, prepared: PreparedEcg) -> Path | None:
    """Write the image, the model window and the ECG's metadata; return the image path (None: no image)."""
    png: Path | None = None
    if prepared.image is not None:
        buffer = io.BytesIO()
        # zlib level 1: half the time of the default level 6, for files 25-80 % larger.
        prepared.image.save(buffer, format="PNG", compress_level=1)
        png = image_path(data_dir, sha256)
        _write_atomically(png, buffer.getvalue())
    folder = prepared_folder(data_dir, sha256)
    if prepared.model_signal is not None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(prepared.model_signal, dtype=np.float32))
        _write_atomically(folder / "signal.npy", buffer.getvalue())
    meta: dict[str, Any] = {
        "ecg": prepared.ecg.model_dump(mode="json", exclude=_ECG_ARRAYS),
        "window_note": prepared.window_note,
        "notes": prepared.notes,
    }
    _write_atomically(folder / "ecg.json", json.dumps(meta).encode())
    return png


class ArtifactsMissing(FileNotFoundError):
    """Preparation's files are gone (e.g. a data folder restored without them): prepare again."""


def load_prepared(data_dir: Path, sha256: str, features: dict[str, Any] | None) -> PreparedEcg:
    """The `PreparedEcg` that `save_prepared` wrote, with the features from the study row.

    The rebuilt `Ecg` carries the model window as its signal (500 Hz, standard lead
    order) and the source's metadata; a scan's page image is its only page.
    """
    from PIL import Image

    folder = prepared_folder(data_dir, sha256)
    try:
        meta = json.loads((folder / "ecg.json").read_text())
    except FileNotFoundError as exc:
        raise ArtifactsMissing(str(folder / "ecg.json")) from exc
    signal_file = folder / "signal.npy"
    signal = np.load(signal_file) if signal_file.is_file() else None
    png = image_path(data_dir, sha256)
    if not png.is_file():
        raise ArtifactsMissing(str(png))
    if signal is None and meta["ecg"].get("source_format") != "pdf":
        raise ArtifactsMissing(str(signal_file))
    with Image.open(png) as opened:
        image = opened.convert("RGB")
    ecg = Ecg.model_validate(meta["ecg"])
    if signal is not None:
        ecg.signal = signal
        ecg.sampling_rate_hz = float(MODEL_SAMPLING_RATE_HZ)
        ecg.lead_names = list(STANDARD_LEADS)
        ecg.provenance["signal"] = "model window (500 Hz, 10 s) saved by preparation"
    else:
        ecg.pages = [image]
    return PreparedEcg(
        ecg=ecg, model_signal=signal, image=image,
        features=GroundingFeatures.model_validate(features) if features else None,
        window_note=meta.get("window_note", ""), notes=list(meta.get("notes", [])),
    )
