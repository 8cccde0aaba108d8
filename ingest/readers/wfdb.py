"""WFDB records (PhysioNet: PTB-XL, MIMIC-IV-ECG, CinC .mat records...) to a canonical `Ecg`.

The record is read from local files only (`wfdb.rdrecord` on the header's path; never
`pn_dir`, which downloads). Formats 16 and 212 in `.dat` files, and format 16 with a
byte offset in `.mat` files, are the common ones; `wfdb` applies each channel's gain and
baseline (`p_signal`), and this reader converts the channel's units to millivolts. A record
that is one format-16 file is read by `ingest.readers.wfdb_format16` to the same numbers
without wfdb's slow header parsing; every other record goes through `wfdb.rdrecord`.

Leads follow the lead rule of `ingest.readers.leads` (I, II, V1-V6 required; III, aVR,
aVL, aVF derived when missing; anything less is rejected). Age and sex come from the
header comments; the acquisition time from the record line's base date and time.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ingest.readers.detect import WfdbHeader, missing_companion_files, parse_wfdb_header
from ingest.ecg import Ecg, SourceFormat
from ingest.errors import IngestError
from ingest.readers.demographics import demographics_from_comments
from ingest.readers.leads import assemble_12_lead, normalize_lead_name
from ingest.readers.wfdb_format16 import Format16Record, read_format16
from ingest.readers.limits import (
    DEFAULT_LIMITS,
    InputLimits,
    check_file_size,
    check_sampling_rate,
    check_signal_size,
)

# Physical units a lead may be stored in, and the factor that turns them into mV.
_TO_MILLIVOLT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6, "v": 1e3}


def units_to_mv(units: str) -> float | None:
    """The factor from a WFDB units string to millivolts; None for non-voltage units."""
    return _TO_MILLIVOLT.get(units.strip().lower())


@contextmanager
def quiet_wfdb_pandas() -> Iterator[None]:
    """Silence pandas' deprecation of `inplace=` where wfdb uses it, by the warning's exact text.

    wfdb 4.3 calls `DataFrame.set_index(..., inplace=True)` when it is imported and
    `DataFrame.drop(..., inplace=True)` when it reads some headers; pandas 3.1 deprecates both.
    The warnings say nothing about the ECG being read, so they are silenced around those
    calls only; any other warning from either library still shows.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The inplace keyword in DataFrame\.\w+ is deprecated",
                                category=DeprecationWarning)
        yield


def load_wfdb() -> ModuleType:
    """The wfdb package, imported on first use (reading other formats never imports it or pandas)."""
    with quiet_wfdb_pandas():
        import wfdb
    return wfdb


def read_wfdb(path: Path, limits: InputLimits = DEFAULT_LIMITS) -> Ecg:
    """Read the WFDB record whose header is `path` (a `.hea` file)."""
    wfdb = load_wfdb()

    header = parse_wfdb_header(path)
    if header is None:
        raise IngestError(path, "not a WFDB header")
    if header.segments is not None:
        raise IngestError(path, f"multi-segment WFDB records are not supported ({header.segments} segments)")
    problems = missing_companion_files(path)
    if problems:
        raise IngestError(path, "; ".join(problems))
    _check_size_before_reading(path, header, limits)

    try:
        # One format-16 file (nearly every 12-lead record) is read straight; anything else by wfdb.
        record: Format16Record | Any = read_format16(path)
        if record is None:
            with quiet_wfdb_pandas():
                record = wfdb.rdrecord(str(path.with_suffix("")), physical=True)
    except Exception as exc:  # wfdb raises many types for malformed records
        raise IngestError(path, f"WFDB record could not be read ({type(exc).__name__}: {exc})") from exc
    if record.p_signal is None or record.p_signal.size == 0:
        raise IngestError(path, "WFDB record has no samples")
    check_sampling_rate(path, float(record.fs) if record.fs else None, limits, what="WFDB record")

    names = [str(name) if name else f"channel {index + 1} (unnamed)"
             for index, name in enumerate(record.sig_name or [None] * record.n_sig)]
    units = [str(unit) for unit in (record.units or ["mV"] * len(names))]
    signal = np.asarray(record.p_signal, dtype=np.float64).T.copy()
    for channel, (name, unit) in enumerate(zip(names, units, strict=True)):
        factor = units_to_mv(unit)
        if factor is None:
            if normalize_lead_name(name) is not None:
                raise IngestError(path, f"lead {name} has units '{unit}', not a voltage")
            continue  # not an ECG lead (e.g. blood pressure): dropped by the lead rule
        signal[channel] *= factor
    leads = assemble_12_lead(signal, names, path)

    demographics, notes = demographics_from_comments(list(record.comments or []))
    demographics.acquired_at = _base_datetime(record.base_date, record.base_time)
    provenance = {
        "reader": "wfdb",
        "record": record.record_name,
        "formats": ",".join(sorted({str(fmt) for fmt in (record.fmt or [])})),
        "units": ",".join(sorted(set(units))),
        **leads.provenance(),
    }
    if notes:
        provenance["demographics_notes"] = "; ".join(notes)
    return Ecg(
        source_format=SourceFormat.WFDB,
        source_path=str(path),
        signal=leads.signal,
        sampling_rate_hz=float(record.fs),
        lead_names=leads.lead_names,
        demographics=demographics,
        provenance=provenance,
    )


def _check_size_before_reading(path: Path, header: WfdbHeader, limits: InputLimits) -> None:
    """Refuse, from the header and the file sizes alone, a record too large to read.

    A header may omit the sample count; `wfdb` then reads every byte of the signal file,
    so the count is worked out from the file's size first.
    """
    if header.fs is not None:  # absent: WFDB's default of 250 Hz applies
        check_sampling_rate(path, header.fs, limits, what="WFDB record")
    check_signal_size(path, channels=header.nsig, samples_per_lead=0, limits=limits, what="WFDB record")
    for signal_file in header.signal_files:
        size = signal_file.path.stat().st_size
        samples = header.nsamp if header.nsamp else signal_file.samples_on_disk(size)
        if samples is None:
            raise IngestError(path, f"signal file {signal_file.path.name}: the header gives no sample count and its "
                                    "format has no fixed sample width, so its size cannot be bounded before reading")
        check_signal_size(path, channels=header.nsig, samples_per_lead=samples, limits=limits,
                          what=f"WFDB record (signal file {signal_file.path.name})")
        check_file_size(signal_file.path, limits, size=size, what="WFDB signal file")


def _base_datetime(base_date: dt.date | None, base_time: dt.time | None) -> dt.datetime | None:
    """The record's start, when the header gives both a date and a time."""
    if base_date is None or base_time is None:
        return None
    return dt.datetime.combine(base_date, base_time)
