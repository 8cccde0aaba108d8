"""The common WFDB record read straight with numpy: one signal file of format 16.

Why: nearly every 12-lead WFDB record hospitals and PhysioNet hold (PTB-XL, MIMIC-IV-ECG,
LUDB, the CinC `.mat` records) is one file of interleaved 16-bit samples. `wfdb.rdrecord`
reads such a record in about 5 ms, four of them spent parsing the header through pandas
lookups (`wfdb.io._header._parse_signal_lines`), more than the samples take. This module
reads exactly that layout itself, with wfdb's own header patterns (`wfdb.io.header`) and
its documented defaults, to the same numbers bit for bit (`tests/ingest_readers/test_wfdb_format16.py`
compares every record of data/real and edge cases with `wfdb.rdrecord`).

Anything else (other formats, several files, several samples per frame, skew, a missing
sample count, gain or units, multi-segment records) returns None, and the caller reads the
record with wfdb as before.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Format 16: little-endian two's complement; this value marks a missing sample (NaN).
_FORMAT_16_MISSING = -32768


@dataclass(frozen=True)
class Format16Record:
    """The fields of a WFDB record the reader uses, as `wfdb.rdrecord` would give them."""

    record_name: str
    fs: float
    sig_name: list[str]
    units: list[str]
    fmt: list[str]
    p_signal: np.ndarray  # (samples, signals), physical units, float64, NaN where missing
    comments: list[str]
    base_date: dt.date | None
    base_time: dt.time | None


@dataclass(frozen=True)
class _Channel:
    file_name: str
    byte_offset: int
    adc_gain: float
    baseline: int
    units: str
    sig_name: str


def read_format16(header_path: Path) -> Format16Record | None:
    """The record of `header_path` if it is one format-16 signal file, else None (read it with wfdb).

    The caller has already checked that the signal file is present, complete and within the
    size limits (`ingest.readers.wfdb._check_size_before_reading`).
    """
    from ingest.readers.wfdb import load_wfdb  # here: that module imports this one

    header = load_wfdb().io.header  # imported with its import-time warnings quieted
    parse_header_content, rx_record = header.parse_header_content, header.rx_record
    # As wfdb opens a header: ASCII, undecodable bytes dropped.
    text = header_path.read_bytes().decode("ascii", errors="ignore")
    lines, comment_lines = parse_header_content(text)
    if not lines:
        return None
    record = rx_record.match(lines[0])
    if record is None or record["n_seg"] or not record["n_sig"] or not record["fs"] or not record["sig_len"]:
        return None
    n_sig, sig_len = int(record["n_sig"]), int(record["sig_len"])
    if n_sig == 0 or sig_len == 0 or len(lines) < 1 + n_sig:
        return None
    channels = [_channel(header.rx_signal.match(line)) for line in lines[1:1 + n_sig]]
    if any(channel is None for channel in channels):
        return None
    chosen = [channel for channel in channels if channel is not None]
    if len({(c.file_name, c.byte_offset) for c in chosen}) != 1:
        return None
    signal_file = header_path.parent / chosen[0].file_name
    digital = np.fromfile(signal_file, dtype="<i2", count=sig_len * n_sig, offset=chosen[0].byte_offset)
    if digital.size != sig_len * n_sig:
        return None  # shorter than the header says: wfdb's own handling and message apply
    digital = digital.reshape(sig_len, n_sig)
    # wfdb's digital-to-physical conversion, in its order: float64, minus baseline, over gain.
    physical = digital.astype(np.float64)
    np.subtract(physical, np.array([c.baseline for c in chosen]), physical)
    np.divide(physical, np.array([c.adc_gain for c in chosen]), physical)
    physical[digital == _FORMAT_16_MISSING] = np.nan
    return Format16Record(
        record_name=record["record_name"],
        fs=float(record["fs"]),
        sig_name=[c.sig_name for c in chosen],
        units=[c.units for c in chosen],
        fmt=["16"] * n_sig,
        p_signal=physical,
        comments=[line.strip(" \t#") for line in comment_lines],
        base_date=_base_date(record["base_date"]),
        base_time=_base_time(record["base_time"]),
    )


def _channel(match: re.Match[str] | None) -> _Channel | None:
    """One signal line (matched by wfdb's pattern), if it is a plain format-16 channel with gain and units stated."""
    if match is None or match["fmt"] != "16" or match["samps_per_frame"] not in ("", "1"):
        return None
    if match["skew"] not in ("", "0") or not match["file_name"] or match["file_name"].startswith("~"):
        return None
    if not match["adc_gain"] or not match["units"]:
        return None
    try:
        gain = float(match["adc_gain"])
    except ValueError:
        return None
    # WFDB: a gain of 0 means the default, 200; an omitted baseline is the ADC zero (else 0).
    if gain == 0:
        gain = 200.0
    baseline = match["baseline"] or match["adc_zero"] or "0"
    return _Channel(file_name=match["file_name"], byte_offset=int(match["byte_offset"] or 0), adc_gain=gain,
                    baseline=int(baseline), units=match["units"], sig_name=match["sig_name"])


def _base_time(text: str) -> dt.time | None:
    """HH:MM:SS, MM:SS or SS, each with optional fractions of a second (WFDB's forms)."""
    if not text:
        return None
    formats = {0: "%S", 1: "%M:%S", 2: "%H:%M:%S"}
    pattern = formats.get(text.count(":"))
    if pattern is None:
        return None
    if "." in text:
        pattern += ".%f"
    return dt.datetime.strptime(text, pattern).time()


def _base_date(text: str) -> dt.date | None:
    return dt.datetime.strptime(text, "%d/%m/%Y").date() if text else None
