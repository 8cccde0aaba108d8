"""`read_ecg(path)`: any supported ECG file to a canonical `Ecg`, or one clear `IngestError`.

    path --detect_format (by content)--> DICOM | WFDB | PDF | GE MUSE XML | Philips XML
         | HL7 aECG | SCP-ECG reader --> Ecg
         --(JSON sidecar, if any, fills missing demographics)--> Ecg
         --(sanity at the edge: impossible demographics dropped with a note)--> Ecg

Every failure, whatever library raised it, leaves here as `IngestError(path, reason)` so
the watcher can quarantine the file with its reason beside it.

`limits` (`ingest.readers.limits.InputLimits`, from `Settings.input_limits` in the worker)
bounds what one file may make a reader allocate; each reader checks them before it reads,
and the signal it returns is checked once more here, so a reader that forgot cannot hand
an implausible sampling rate or a huge signal to preparation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingest.readers.detect import UNRECOGNISED, detect_format, wfdb_header_for
from ingest.ecg import Ecg, SourceFormat
from ingest.errors import IngestError
from ingest.readers.demographics import check_identifiers, merge_demographics, read_sidecar, sanitize_demographics
from ingest.readers.limits import DEFAULT_LIMITS, InputLimits, check_sampling_rate, check_signal_size


def _reader(source_format: SourceFormat, page_images: bool = True) -> Callable[[Path, InputLimits], Ecg]:
    # Imported on demand: each reader pulls in its own heavy library.
    if source_format is SourceFormat.DICOM:
        from ingest.readers.dicom import read_dicom
        return read_dicom
    if source_format is SourceFormat.WFDB:
        from ingest.readers.wfdb import read_wfdb
        return read_wfdb
    if source_format is SourceFormat.PDF:
        from ingest.readers.pdf import read_pdf
        return lambda path, limits: read_pdf(path, limits, page_images=page_images)
    # The archive-format readers bound their input with their own constants
    # (`ingest.readers.archive_common`) until they take `limits`; what they return is
    # checked against `limits` in `read_ecg` all the same.
    if source_format is SourceFormat.MUSE_XML:
        from ingest.readers.muse import read_muse
        return lambda path, _limits: read_muse(path)
    if source_format is SourceFormat.PHILIPS_XML:
        from ingest.readers.philips import read_philips
        return lambda path, _limits: read_philips(path)
    if source_format is SourceFormat.HL7_AECG:
        from ingest.readers.aecg import read_aecg
        return lambda path, _limits: read_aecg(path)
    from ingest.readers.scp import read_scp
    return lambda path, _limits: read_scp(path)


def read_ecg(path: Path, limits: InputLimits = DEFAULT_LIMITS, *, page_images: bool = True) -> Ecg:
    """Read one ECG file. Raises `IngestError` naming the file and the reason if it is unusable.

    `page_images=False`: a PDF's pages are not drawn unless reading needs them (a scan to
    digitise), and `Ecg.pages` stays empty: for a caller that keeps only the signal and the
    text (the pipeline's prepare stage; a page is rendered from the kept file when asked)."""
    path = Path(path)
    if not path.exists():
        raise IngestError(path, "file not found")
    if not path.is_file():
        raise IngestError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise IngestError(path, "empty file (0 bytes)")

    source_format = detect_format(path)
    if source_format is None:
        header = wfdb_header_for(path)
        if header is not None:
            raise IngestError(path, f"signal file of the WFDB record {header.name}: read the header instead")
        raise IngestError(path, UNRECOGNISED)

    try:
        ecg = _reader(source_format, page_images)(path, limits)
    except IngestError:
        raise
    except Exception as exc:  # a reader bug or a library surprise must still name the file
        raise IngestError(path, f"{source_format.value} reader failed ({type(exc).__name__}: {exc})") from exc

    if ecg.signal is not None:
        check_sampling_rate(path, ecg.sampling_rate_hz, limits, what=f"{source_format.value} signal")
        check_signal_size(path, channels=ecg.signal.shape[0], samples_per_lead=ecg.signal.shape[1], limits=limits,
                          what=f"{source_format.value} signal")

    sidecar = read_sidecar(path)
    if sidecar is not None:
        ecg.demographics = merge_demographics(ecg.demographics, sidecar, path)
        ecg.provenance["sidecar"] = "yes"
    check_identifiers(ecg.demographics, path)
    ecg.demographics, notes = sanitize_demographics(ecg.demographics)
    if notes:
        earlier = ecg.provenance.get("demographics_notes")
        ecg.provenance["demographics_notes"] = "; ".join([earlier, *notes] if earlier else notes)
    return ecg
