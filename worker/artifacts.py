"""What preparation leaves on disk for the stages after it, named by the study's content hash.

    prepared/ab/<sha256>/signal.npy     the 12 x 5000 model window (float32 mV, 500 Hz)
    prepared/ab/<sha256>/ecg.json       the canonical ECG without its arrays (demographics, device data)
    prepared/ab/<sha256>/display.npy    what the review page draws: the first 10 s at the recording's
    prepared/ab/<sha256>/display.json   own rate (<= 1000 Hz), and what the device said (reports.review.ecg_source);
    prepared/ab/<sha256>/display.page.png  for a scan (no signal), its first page instead

The interpret stage (often on another machine, the GPU host, sharing the data folder)
rebuilds the `PreparedEcg` from these instead of reading and measuring the file again;
the features come from the study row. No image is kept for the model: a model that reads
images draws the 12-lead from the model window when it asks (`PreparedEcg.page()`), and a PDF's page is
rendered again from the archived file by the `page_loader` the caller gives (only then).
People see the ECG drawn by the review page from the display copy (`reports.review.ecg_source`),
so the review host needs no reader.
Every file is written under a temporary name and renamed, so a reader never sees half a
file, and writing the same study twice is harmless.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ingest.ecg import MODEL_SAMPLING_RATE_HZ, STANDARD_LEADS, Ecg, SourceFormat
from ingest.measure.measured import GroundingFeatures
from ingest.prepare import PreparedEcg
from ingest.readers.limits import InputLimits
from reports.review import ecg_source

log = logging.getLogger(__name__)

_ECG_ARRAYS = {"signal", "median_beat", "pages"}


def prepared_folder(data_dir: Path, sha256: str) -> Path:
    return ecg_source.prepared_folder(data_dir / "prepared", sha256)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:  # a full disk must not be left fuller by half a file
        temporary.unlink(missing_ok=True)


def save_prepared(data_dir: Path, sha256: str, prepared: PreparedEcg,
                  page_loader: Callable[[], Any] | None = None) -> None:
    """Write the model window, the ECG's metadata and the review page's display copy. No image
    for the model (see the module docstring); a scan's page (`prepared.image`, else what
    `page_loader` renders from the kept PDF) is kept for people, since it has nothing to draw."""
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
    # What the review page draws (the recording's own rate), so a review host never reads the file.
    page = None
    if prepared.ecg.signal is None:
        try:
            page = prepared.image if prepared.image is not None else (page_loader() if page_loader else None)
        except Exception:  # noqa: BLE001 - the study is prepared all the same; the review page reads the file
            log.warning("a scan's page could not be rendered for the review page's copy", exc_info=True)
    ecg_source.save_display_copy(folder, prepared.ecg, page)


def source_page_loader(path: Path, source_format: str, limits: InputLimits) -> Callable[[], Any] | None:
    """For a PDF study: a function rendering its first page from the kept file, when called
    (an image reader asked for it). Other formats have no page: their 12-lead is drawn from
    the model window instead (`PreparedEcg.page()`)."""
    if source_format != SourceFormat.PDF.value:
        return None

    def first_page() -> Any:
        from ingest.readers.pdf import read_page_image

        return read_page_image(path, 0, limits)

    return first_page


class ArtifactsMissing(FileNotFoundError):
    """Preparation's files are gone (e.g. a data folder restored without them): prepare again."""


def load_prepared(data_dir: Path, sha256: str, features: dict[str, Any] | None, *,
                  page_loader: Callable[[], Any] | None = None) -> PreparedEcg:
    """The `PreparedEcg` that `save_prepared` wrote, with the features from the study row.

    The rebuilt `Ecg` carries the model window as its signal (500 Hz, standard lead
    order) and the source's metadata. `page_loader` renders the source's own page (a PDF)
    if an interpreter asks for the image; nothing is decoded or rendered before that.
    """
    folder = prepared_folder(data_dir, sha256)
    try:
        meta = json.loads((folder / "ecg.json").read_text())
    except FileNotFoundError as exc:
        raise ArtifactsMissing(str(folder / "ecg.json")) from exc
    signal_file = folder / "signal.npy"
    signal = np.load(signal_file) if signal_file.is_file() else None
    if signal is None and meta["ecg"].get("source_format") != "pdf":
        raise ArtifactsMissing(str(signal_file))
    ecg = Ecg.model_validate(meta["ecg"])
    if signal is not None:
        ecg.signal = signal
        ecg.sampling_rate_hz = float(MODEL_SAMPLING_RATE_HZ)
        ecg.lead_names = list(STANDARD_LEADS)
        ecg.provenance["signal"] = "model window (500 Hz, 10 s) saved by preparation"
    return PreparedEcg(
        ecg=ecg, model_signal=signal, image=None,
        features=GroundingFeatures.model_validate(features) if features else None,
        window_note=meta.get("window_note", ""), notes=list(meta.get("notes", [])), page_loader=page_loader,
    )
