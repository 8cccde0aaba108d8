"""Hard limits on what one input file may make us allocate, checked BEFORE allocating.

A small file can describe a huge signal: a WFDB header without a sample count over a
200 MB signal file, a 2 KB PDF whose pages are 14,400 points tall, a few kilobytes of
deflate that inflate to gigabytes, a DICOM that declares a billion waveform samples.
Every reader asks this module before it reads, decodes, inflates or renders, using the
sizes the file itself declares (or, where it declares none, the sizes on disk), and an
input past a limit is refused with a `LimitExceeded` (an `IngestError`) that names the
file, what was too big and the limit, so the watcher quarantines it with that reason.

    limits = InputLimits()                         # the defaults below; Settings.input_limits in the worker
    check_file_size(path, limits)                  # any file read whole into memory
    check_sampling_rate(path, 0.001, limits)       # refused: below min_sampling_rate_hz
    check_signal_size(path, channels=12, samples_per_lead=n, limits=limits)
    check_page_count(path, 30, limits)             # refused: above max_pdf_pages
    check_page_pixels(path, 1, 2200, 60000, limits)   # refused: above max_page_pixels
    check_image_pixels(path, 30000, 30000, limits, what="embedded image")
    data = inflate_bounded(compressed, path=path, limits=limits, what="waveform block")
    size = inflated_size(compressed, cap=limits.max_decompressed_bytes)   # counts, keeps nothing

The defaults keep the peak memory of one study well under 1 GB (measured by
`benchmarks/hostile_inputs.py`) while reading every real ECG we know of: a 12-lead
recording of up to 10 minutes at 1 kHz, a PDF report of up to 20 letter or A4 pages at
~200 dpi, a scanned page at 600 dpi. Operators can change them through
`ECGWL_INPUT_LIMITS__<NAME>` (for example `ECGWL_INPUT_LIMITS__MAX_PDF_PAGES=30`).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ingest.errors import IngestError

MiB = 1024 * 1024


class InputLimits(BaseModel):
    """How large one input may be. Each limit is checked before the allocation it bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Any file a reader loads whole (DICOM, PDF, XML, a WFDB signal file).
    max_file_bytes: int = Field(default=64 * MiB, gt=0)
    # Samples of one lead as stored (before the 10 s model window is cut): 10 min at 1 kHz.
    max_samples_per_lead: int = Field(default=600_000, gt=0)
    # Samples of all channels together, as stored (12 leads x 10 min at 1 kHz, and a few more).
    max_total_samples: int = Field(default=8_000_000, gt=0)
    # Channels in one signal (12 leads, plus the odd respiration or pacing channel).
    max_channels: int = Field(default=64, gt=0)
    # Sampling rates outside this range are not an ECG (and resampling 0.001 Hz to 500 Hz
    # would multiply the signal by 500,000).
    min_sampling_rate_hz: float = Field(default=50.0, gt=0)
    max_sampling_rate_hz: float = Field(default=20_000.0, gt=0)
    # Bytes that compressed content may inflate to (deflated DICOM, PDF streams, gzip/base64 in XML).
    max_decompressed_bytes: int = Field(default=128 * MiB, gt=0)
    # PDF: pages, and pixels of one rendered page and of all pages together (RGB, 3 bytes each).
    max_pdf_pages: int = Field(default=20, gt=0)
    max_page_pixels: int = Field(default=12_000_000, gt=0)  # letter portrait at 2200 px wide is 6.3 M
    max_total_page_pixels: int = Field(default=80_000_000, gt=0)
    # DICOM data elements (nested ones included): pydicom keeps each as an object (~300 bytes),
    # so a file of millions of empty elements takes gigabytes. A 12-lead ECG has a few hundred.
    max_dicom_elements: int = Field(default=200_000, gt=0)
    # A raster image inside a file (a scanned page in a PDF, an image input): 600 dpi A4 is 35 M.
    max_image_pixels: int = Field(default=50_000_000, gt=0)


DEFAULT_LIMITS = InputLimits()


class LimitExceeded(IngestError):
    """An input larger than a limit of `InputLimits`; `limit` names the setting."""

    def __init__(self, path: str | Path, reason: str, *, limit: str) -> None:
        self.limit = limit
        super().__init__(path, f"{reason} (limit {limit})")


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MiB" if size >= MiB else f"{size} bytes"


def check_file_size(path: Path, limits: InputLimits, *, size: int | None = None, what: str = "file") -> None:
    """Refuse a file larger than `max_file_bytes` (its size on disk unless `size` is given)."""
    size = path.stat().st_size if size is None else size
    if size > limits.max_file_bytes:
        raise LimitExceeded(path, f"{what} {path.name} is {_mib(size)}; at most {_mib(limits.max_file_bytes)} "
                                  f"is read", limit=f"max_file_bytes={limits.max_file_bytes}")


def check_sampling_rate(path: Path, fs: float | None, limits: InputLimits, *, what: str = "signal") -> None:
    """Refuse a missing, non-finite or implausible sampling frequency."""
    if fs is None or not (fs == fs) or fs in (float("inf"), float("-inf")) or fs <= 0:
        raise IngestError(path, f"{what} has no usable sampling frequency ({fs})")
    if fs < limits.min_sampling_rate_hz:
        raise LimitExceeded(path, f"{what} sampling frequency {fs:g} Hz is below {limits.min_sampling_rate_hz:g} Hz: "
                                  "not an ECG recording",
                            limit=f"min_sampling_rate_hz={limits.min_sampling_rate_hz:g}")
    if fs > limits.max_sampling_rate_hz:
        raise LimitExceeded(path, f"{what} sampling frequency {fs:g} Hz is above {limits.max_sampling_rate_hz:g} Hz",
                            limit=f"max_sampling_rate_hz={limits.max_sampling_rate_hz:g}")


def check_signal_size(path: Path, *, channels: int, samples_per_lead: int, limits: InputLimits,
                      what: str = "signal") -> None:
    """Refuse a signal whose declared channels or samples exceed the limits (before reading it)."""
    if channels > limits.max_channels:
        raise LimitExceeded(path, f"{what} has {channels} channels", limit=f"max_channels={limits.max_channels}")
    if samples_per_lead > limits.max_samples_per_lead:
        raise LimitExceeded(path, f"{what} has {samples_per_lead:,} samples per lead",
                            limit=f"max_samples_per_lead={limits.max_samples_per_lead}")
    total = channels * samples_per_lead
    if total > limits.max_total_samples:
        raise LimitExceeded(path, f"{what} has {total:,} samples in all ({channels} x {samples_per_lead:,})",
                            limit=f"max_total_samples={limits.max_total_samples}")


def check_page_count(path: Path, pages: int, limits: InputLimits) -> None:
    if pages > limits.max_pdf_pages:
        raise LimitExceeded(path, f"PDF has {pages} pages; an ECG report has a few",
                            limit=f"max_pdf_pages={limits.max_pdf_pages}")


def check_page_pixels(path: Path, page_number: int, width_px: int, height_px: int, limits: InputLimits,
                      *, pixels_so_far: int = 0) -> None:
    """Refuse to render a page past `max_page_pixels`, or past `max_total_page_pixels` with
    the `pixels_so_far` of the pages rendered before it (page numbers start at 1)."""
    pixels = width_px * height_px
    if pixels > limits.max_page_pixels:
        raise LimitExceeded(path, f"page {page_number} would render {width_px} x {height_px} px "
                                  f"({pixels / 1e6:.1f} megapixels)", limit=f"max_page_pixels={limits.max_page_pixels}")
    if pixels_so_far + pixels > limits.max_total_page_pixels:
        raise LimitExceeded(path, f"pages 1-{page_number} would render {(pixels_so_far + pixels) / 1e6:.1f} "
                                  "megapixels in all", limit=f"max_total_page_pixels={limits.max_total_page_pixels}")


def check_image_pixels(path: Path, width: int, height: int, limits: InputLimits, *, what: str = "image") -> None:
    pixels = width * height
    if width <= 0 or height <= 0:
        raise IngestError(path, f"{what} has no size ({width} x {height})")
    if pixels > limits.max_image_pixels:
        raise LimitExceeded(path, f"{what} is {width} x {height} px ({pixels / 1e6:.1f} megapixels)",
                            limit=f"max_image_pixels={limits.max_image_pixels}")


_INFLATE_CHUNK = 1 * MiB


def inflated_size(data: bytes, *, cap: int, wbits: int = zlib.MAX_WBITS) -> int | None:
    """How many bytes `data` inflates to, counted in 1 MiB steps and never kept; None when
    it inflates to more than `cap`. Raises `zlib.error` for data that is not deflate.

    `wbits`: zlib.MAX_WBITS for zlib streams (PDF FlateDecode), -zlib.MAX_WBITS for raw
    deflate (DICOM deflated transfer syntax), 16 + zlib.MAX_WBITS for gzip, 47 to detect.
    """
    inflater = zlib.decompressobj(wbits)
    total = 0
    pending = data
    while pending:
        total += len(inflater.decompress(pending, _INFLATE_CHUNK))
        if total > cap:
            return None
        pending = inflater.unconsumed_tail
        if inflater.eof:  # bytes after the end of the stream are not part of it
            break
    if not inflater.eof:
        total += len(inflater.flush())
    return None if total > cap else total


def inflate_bounded(data: bytes, *, path: Path, limits: InputLimits, what: str = "compressed data",
                    wbits: int = zlib.MAX_WBITS) -> bytes:
    """Inflate `data`, refusing (before the output grows past it) more than `max_decompressed_bytes`."""
    cap = limits.max_decompressed_bytes
    inflater = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    total = 0
    pending = data
    try:
        while pending:
            part = inflater.decompress(pending, _INFLATE_CHUNK)
            total += len(part)
            if total > cap:
                raise LimitExceeded(path, f"{what} inflates to more than {_mib(cap)}",
                                    limit=f"max_decompressed_bytes={cap}")
            parts.append(part)
            pending = inflater.unconsumed_tail
            if inflater.eof:  # bytes after the end of the stream are not part of it
                break
        tail = b"" if inflater.eof else inflater.flush()
    except zlib.error as exc:
        raise IngestError(path, f"{what} is not valid deflate data ({exc})") from exc
    if total + len(tail) > cap:
        raise LimitExceeded(path, f"{what} inflates to more than {_mib(cap)}", limit=f"max_decompressed_bytes={cap}")
    parts.append(tail)
    return b"".join(parts)
