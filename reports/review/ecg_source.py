"""A study's ECG as the review page shows it: read from the kept file on demand, drawn, cached.

    archived file --read_ecg--> Ecg --first 10 s, <= 1000 Hz--> ecg_view.render_svg --> <sha>.vN.svg.gz
                                    \\--a scan's first page, as PNG----------------------> <sha>.vN.page.png
                                    \\--device name, statements, measurements---------> <sha>.vN.json

Nothing here runs in the pipeline: the first time a reviewer opens a study its file is read
again (tens of milliseconds for a DICOM) and the drawing and what the device said are kept
in the cache folder (`ECGWL_DATA_DIR/views` by default), named by the study's content hash
and the drawing's version, so a changed renderer never serves an old drawing. Without a
cache folder every request reads and draws afresh (tests).

The shown window is the one the interpreter read (the first 10 s, see
`ingest.prepare.signal.to_model_window`) at the recording's own rate: the page shows the
recording, not the model's 500 Hz copy of it. A scan has no signal: the page shows its
page image instead (`has_signal` False, `has_page` True), encoded as PNG here, once, when
a reviewer first opens the study: the pipeline itself never encodes an image.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ingest.ecg import DeviceStatement, Ecg, Measurements
from ingest.errors import IngestError
from ingest.prepare.signal import WINDOW_S, resample
from ingest.readers.read import read_ecg
from reports.review.ecg_view import MAX_DISPLAY_RATE_HZ, Geometry, render_svg

log = logging.getLogger(__name__)

# Bump when the drawing or what is kept beside it changes: old cache files are then ignored.
VIEW_VERSION = 2


class EcgView(BaseModel):
    """What the page shows of the file itself (the study row holds the rest)."""

    has_signal: bool = False
    has_page: bool = False  # a scan: its first page is shown (`ViewCache.page_png`)
    geometry: Geometry | None = None
    sampling_rate_hz: float | None = None  # of the drawing
    shown_s: float | None = None
    recorded_s: float | None = None
    device_name: str | None = None
    device_statements: list[DeviceStatement] = Field(default_factory=list)
    device_measurements: Measurements | None = None
    notes: list[str] = Field(default_factory=list)  # what was done to draw it
    problem: str | None = None  # why the file could not be read (the page says so)


def display_window(ecg: Ecg) -> tuple[np.ndarray, float, list[str]]:
    """The first 10 s of the signal at its own rate (resampled only above 1000 Hz), and notes."""
    assert ecg.signal is not None and ecg.sampling_rate_hz
    fs = float(ecg.sampling_rate_hz)
    signal = np.asarray(ecg.signal, dtype=np.float64)
    notes: list[str] = []
    recorded_s = signal.shape[1] / fs
    keep = min(signal.shape[1], math.ceil(WINDOW_S * fs) + 1)
    signal = signal[:, :keep]
    if recorded_s > WINDOW_S:
        notes.append(f"first {WINDOW_S:g} s of {recorded_s:.4g} s shown (the part the interpreter read)")
    elif recorded_s < WINDOW_S:
        notes.append(f"{recorded_s:.4g} s recorded: nothing drawn after that")
    if fs > MAX_DISPLAY_RATE_HZ:
        gaps = ~np.isfinite(signal)
        signal = resample(np.where(gaps, 0.0, signal), fs, MAX_DISPLAY_RATE_HZ).astype(np.float64)
        notes.append(f"drawn at {MAX_DISPLAY_RATE_HZ:g} Hz from {fs:g} Hz"
                     + (f" ({int(gaps.sum())} missing samples drawn as 0)" if gaps.any() else ""))
        fs = MAX_DISPLAY_RATE_HZ
    return signal, fs, notes


class Drawing(BaseModel):
    """What is drawn of a file for people: the SVG of its signal, or a scan's page as PNG."""

    svg_gz: bytes | None = None
    page_png: bytes | None = None


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def build_view(path: Path) -> tuple[EcgView, Drawing]:
    """Read the file and draw it: the view, and the gzipped SVG (or a scan's page as PNG)."""
    try:
        ecg = read_ecg(path)
    except IngestError as exc:
        log.warning("review: cannot read a study's file again: %s", exc.reason)
        return EcgView(problem=f"the ECG file could not be read again: {exc.reason}"), Drawing()
    view = EcgView(device_name=ecg.device_name, device_statements=ecg.device_statements,
                   device_measurements=ecg.device_measurements, recorded_s=ecg.duration_s)
    if ecg.signal is None or not ecg.sampling_rate_hz:
        view.notes.append("no signal in the file (a scan): its page image is shown")
        view.has_page = bool(ecg.pages)
        return view, Drawing(page_png=_png(ecg.pages[0]) if ecg.pages else None)
    signal, fs, notes = display_window(ecg)
    svg = render_svg(signal, fs, ecg.lead_names)
    view.has_signal, view.geometry, view.sampling_rate_hz = True, Geometry(), fs
    view.shown_s, view.notes = min(WINDOW_S, signal.shape[1] / fs), notes
    return view, Drawing(svg_gz=gzip.compress(svg.encode(), compresslevel=6, mtime=0))


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class ViewCache:
    """Views and drawings by content hash, in `folder` (None: nothing kept, drawn every time)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _paths(self, sha256: str) -> tuple[Path, Path, Path] | None:
        """(view JSON, SVG drawing, page PNG) in the cache folder; None without one."""
        if self.folder is None:
            return None
        base = self.folder / sha256[:2] / f"{sha256}.v{VIEW_VERSION}"
        return tuple(base.with_suffix(base.suffix + suffix)  # type: ignore[return-value]
                     for suffix in (".json", ".svg.gz", ".page.png"))

    def _build_and_keep(self, sha256: str, source: Path) -> tuple[EcgView, Drawing]:
        view, drawing = build_view(source)
        paths = self._paths(sha256)
        if paths is not None and view.problem is None:  # a passing read error is not cached
            # The drawings first: a view file promises they exist.
            if drawing.svg_gz is not None:
                _write_atomically(paths[1], drawing.svg_gz)
            if drawing.page_png is not None:
                _write_atomically(paths[2], drawing.page_png)
            _write_atomically(paths[0], view.model_dump_json().encode())
        return view, drawing

    def view(self, sha256: str, source: Path) -> EcgView:
        paths = self._paths(sha256)
        if paths is not None and paths[0].is_file():
            try:
                return EcgView.model_validate(json.loads(paths[0].read_text()))
            except (ValueError, OSError):
                log.warning("review: unreadable view cache file, drawing again")
        return self._build_and_keep(sha256, source)[0]

    def svg_gz(self, sha256: str, source: Path) -> bytes | None:
        """The gzipped SVG drawing, or None when the study has no signal (or its file is unreadable)."""
        paths = self._paths(sha256)
        if paths is not None and paths[1].is_file():
            return paths[1].read_bytes()
        if paths is not None and paths[0].is_file() and not self.view(sha256, source).has_signal:
            return None  # a scan: nothing to draw, no need to read the file again
        return self._build_and_keep(sha256, source)[1].svg_gz

    def page_png(self, sha256: str, source: Path) -> bytes | None:
        """A scan's first page as PNG, or None when the file has a signal (or cannot be read)."""
        paths = self._paths(sha256)
        if paths is not None and paths[2].is_file():
            return paths[2].read_bytes()
        if paths is not None and paths[0].is_file() and not self.view(sha256, source).has_page:
            return None  # a signal, drawn as SVG: no page to show
        return self._build_and_keep(sha256, source)[1].page_png
