"""A study's ECG as the review page shows it: drawn from the copy preparation kept, cached.

    prepare stage: Ecg --first 10 s, <= 1000 Hz--> prepared/ab/<sha>/display.npy + display.json
                   a scan (no signal): its first page, as PNG ------> prepared/ab/<sha>/display.page.png
    review page:   display copy --ecg_view.render_svg--> <sha>.vN.svg.gz
                                \\--device name, statements, measurements--> <sha>.vN.json
                                \\--a scan's page-----------------------------> <sha>.vN.page.png

The review host installs no reader (pyproject.toml: base install): it draws from the display
copy the prepare stage wrote beside the model window (`save_display_copy`: 240 kB at
500 Hz, 480 kB at 1000 Hz; a few milliseconds), which holds exactly what the page shows:
the window the interpreter read (the first 10 s, see `ingest.prepare.signal.to_model_window`)
at the recording's own rate, so the page shows the recording, not the model's 500 Hz copy of it; a scan's page is
kept as PNG (encoded fast, compress level 1: only scans pay for it). Where there is no copy
(a study prepared before copies were kept) the archived file is read again, which needs the
readers (`pip install 'ecg-worklist[watch]'`); a host without them says so on the page. The first time a reviewer opens a study the drawing and
what the device said are kept in the cache folder (`ECGWL_DATA_DIR/views` by default),
named by the study's content hash and the drawing's version, so a changed renderer never
serves an old drawing. Without a cache folder every request draws afresh (tests).
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

from ingest.ecg import MODEL_SAMPLING_RATE_HZ, MODEL_WINDOW_SAMPLES, DeviceStatement, Ecg, Measurements
from ingest.errors import IngestError
from ingest.host import missing_reader_library, readers_hint
from reports.review.ecg_view import MAX_DISPLAY_RATE_HZ, Geometry, render_svg

log = logging.getLogger(__name__)

# Bump when the drawing or what is kept beside it changes: old cache files are then ignored.
VIEW_VERSION = 2

WINDOW_S = MODEL_WINDOW_SAMPLES / MODEL_SAMPLING_RATE_HZ  # 10 s: the window the interpreter read
# In the study's prepared folder.
DISPLAY_SIGNAL, DISPLAY_META, DISPLAY_PAGE = "display.npy", "display.json", "display.page.png"


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
        from ingest.prepare.signal import resample  # scipy: only where the file is read (the readers' hosts)

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


def _png(image: Any, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


class DisplayCopy(BaseModel):
    """What preparation keeps for the review page (`display.json`; the signal is `display.npy`)."""

    sampling_rate_hz: float | None = None  # of display.npy; None: no signal (a scan)
    has_page: bool = False  # a scan's first page is kept (display.page.png)
    lead_names: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # what was done to the window (see display_window)
    recorded_s: float | None = None
    device_name: str | None = None
    device_statements: list[DeviceStatement] = Field(default_factory=list)
    device_measurements: Measurements | None = None


def prepared_folder(prepared_root: Path, sha256: str) -> Path:
    """A study's folder of preparation's files (`worker.artifacts`), by its content hash."""
    return prepared_root / sha256[:2] / sha256


def display_copy(ecg: Ecg) -> tuple[DisplayCopy, np.ndarray | None]:
    """What the page shows of `ecg`: the displayed window (float64 mV) and what is said about it."""
    copy = DisplayCopy(recorded_s=ecg.duration_s, device_name=ecg.device_name,
                       device_statements=ecg.device_statements, device_measurements=ecg.device_measurements)
    if ecg.signal is None or not ecg.sampling_rate_hz:
        return copy, None
    signal, fs, notes = display_window(ecg)
    copy.sampling_rate_hz, copy.lead_names, copy.notes = fs, list(ecg.lead_names), notes
    return copy, signal


def save_display_copy(folder: Path, ecg: Ecg, page: Any = None) -> None:  # noqa: ANN401 - a PIL image
    """Write the display copy of `ecg` into its prepared folder (the prepare stage, on a reader host).
    `page`: a scan's first page (PIL), kept as PNG when the file has no signal to draw."""
    copy, signal = display_copy(ecg)
    if signal is not None:
        buffer = io.BytesIO()
        np.save(buffer, signal.astype(np.float32))  # float32: 1 uV is far below what 0.01 mm shows
        _write_atomically(folder / DISPLAY_SIGNAL, buffer.getvalue())
    elif page is not None:
        # Level 1: a quarter of level 6's time for a page 13 % larger (2200 x 1700 px: 0.24 s vs 0.87 s).
        _write_atomically(folder / DISPLAY_PAGE, _png(page, compress_level=1))
        copy.has_page = True
    _write_atomically(folder / DISPLAY_META, copy.model_dump_json().encode())  # last: it promises the signal


def load_display_copy(folder: Path | None) -> tuple[DisplayCopy, np.ndarray | None] | None:
    """The display copy kept in `folder`, or None when there is none (or it cannot be read)."""
    if folder is None or not (folder / DISPLAY_META).is_file():
        return None
    try:
        copy = DisplayCopy.model_validate_json((folder / DISPLAY_META).read_bytes())
        signal = (np.load(folder / DISPLAY_SIGNAL, allow_pickle=False).astype(np.float64)
                  if copy.sampling_rate_hz else None)
    except (ValueError, OSError):
        log.warning("review: unreadable display copy, reading the file instead")
        return None
    return copy, signal


def _draw(copy: DisplayCopy, signal: np.ndarray | None) -> tuple[EcgView, Drawing]:
    """The view and the gzipped SVG of a display copy (a scan: the view only, no drawing)."""
    view = EcgView(device_name=copy.device_name, device_statements=copy.device_statements,
                   device_measurements=copy.device_measurements, recorded_s=copy.recorded_s)
    if signal is None or not copy.sampling_rate_hz:
        return view, Drawing()
    fs = copy.sampling_rate_hz
    svg = render_svg(signal, fs, copy.lead_names)
    view.has_signal, view.geometry, view.sampling_rate_hz = True, Geometry(), fs
    view.shown_s, view.notes = min(WINDOW_S, signal.shape[1] / fs), list(copy.notes)
    return view, Drawing(svg_gz=gzip.compress(svg.encode(), compresslevel=6, mtime=0))


SCAN_NOTE = "no signal in the file (a scan): its page image is shown"


def _no_readers(what: str) -> str:
    return (f"{what} is read from the ECG file, and this host has no readers "
            f"({readers_hint('drawing it here', 'watch')})")


def build_view(path: Path, prepared: Path | None = None) -> tuple[EcgView, Drawing]:
    """The view and its drawing: from the display copy in `prepared` if preparation kept one,
    else by reading the file (which needs the readers); a scan's page is always read from the file."""
    kept = load_display_copy(prepared)
    if kept is not None and kept[1] is not None:
        return _draw(*kept)
    if kept is not None and kept[0].has_page and prepared is not None:
        try:
            page_png = (prepared / DISPLAY_PAGE).read_bytes()
        except OSError:
            page_png = None  # gone since: read the file below
        if page_png is not None:
            view = _draw(*kept)[0]
            view.notes.append(SCAN_NOTE)
            view.has_page = True
            return view, Drawing(page_png=page_png)
    missing = missing_reader_library()
    if missing is not None:
        if kept is None:
            return EcgView(problem=_no_readers("this study's ECG (prepared before display copies were kept)")), Drawing()
        view = _draw(*kept)[0]  # what the device said, from the copy; the page itself needs the file
        view.problem = _no_readers("a scan's page image")
        return view, Drawing()
    from ingest.readers.read import read_ecg

    try:
        ecg = read_ecg(path)
    except IngestError as exc:
        log.warning("review: cannot read a study's file again: %s", exc.reason)
        return EcgView(problem=f"the ECG file could not be read again: {exc.reason}"), Drawing()
    view, drawing = _draw(*display_copy(ecg))
    if not view.has_signal:
        view.notes.append(SCAN_NOTE)
        view.has_page = bool(ecg.pages)
        drawing.page_png = _png(ecg.pages[0]) if ecg.pages else None
    return view, drawing


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class ViewCache:
    """Views and drawings by content hash, in `folder` (None: nothing kept, drawn every time),
    drawn from the display copies under `prepared_root` (ECGWL_DATA_DIR/prepared) when there."""

    def __init__(self, folder: Path | None, prepared_root: Path | None = None) -> None:
        self.folder = folder
        self.prepared_root = prepared_root

    def _paths(self, sha256: str) -> tuple[Path, Path, Path] | None:
        """(view JSON, SVG drawing, page PNG) in the cache folder; None without one."""
        if self.folder is None:
            return None
        base = self.folder / sha256[:2] / f"{sha256}.v{VIEW_VERSION}"
        return tuple(base.with_suffix(base.suffix + suffix)  # type: ignore[return-value]
                     for suffix in (".json", ".svg.gz", ".page.png"))

    def _build_and_keep(self, sha256: str, source: Path) -> tuple[EcgView, Drawing]:
        prepared = prepared_folder(self.prepared_root, sha256) if self.prepared_root is not None else None
        view, drawing = build_view(source, prepared)
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
