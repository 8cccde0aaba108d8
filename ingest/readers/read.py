"""`read_ecg(path)`: any supported ECG file to a canonical `Ecg`, or one clear `IngestError`.

    path --detect_format (by content)--> DICOM | WFDB | PDF | GE MUSE XML | Philips XML
         | HL7 aECG | SCP-ECG reader --> Ecg
         --(JSON sidecar, if any, fills missing demographics)--> Ecg
         --(sanity at the edge: impossible demographics dropped with a note)--> Ecg

Every failure, whatever library raised it, leaves here as `IngestError(path, reason)` so
the watcher can quarantine the file with its reason beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingest.readers.detect import UNRECOGNISED, detect_format, wfdb_header_for
from ingest.ecg import Ecg, SourceFormat
from ingest.errors import IngestError
from ingest.readers.demographics import merge_demographics, read_sidecar, sanitize_demographics


def _reader(source_format: SourceFormat) -> Callable[[Path], Ecg]:
    # Imported on demand: each reader pulls in its own heavy library.
    if source_format is SourceFormat.DICOM:
        from ingest.readers.dicom import read_dicom
        return read_dicom
    if source_format is SourceFormat.WFDB:
        from ingest.readers.wfdb import read_wfdb
        return read_wfdb
    if source_format is SourceFormat.MUSE_XML:
        from ingest.readers.muse import read_muse
        return read_muse
    if source_format is SourceFormat.PHILIPS_XML:
        from ingest.readers.philips import read_philips
        return read_philips
    if source_format is SourceFormat.HL7_AECG:
        from ingest.readers.aecg import read_aecg
        return read_aecg
    if source_format is SourceFormat.SCP_ECG:
        from ingest.readers.scp import read_scp
        return read_scp
    from ingest.readers.pdf import read_pdf
    return read_pdf


def read_ecg(path: Path) -> Ecg:
    """Read one ECG file. Raises `IngestError` naming the file and the reason if it is unusable."""
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
        ecg = _reader(source_format)(path)
    except IngestError:
        raise
    except Exception as exc:  # a reader bug or a library surprise must still name the file
        raise IngestError(path, f"{source_format.value} reader failed ({type(exc).__name__}: {exc})") from exc

    sidecar = read_sidecar(path)
    if sidecar is not None:
        ecg.demographics = merge_demographics(ecg.demographics, sidecar, path)
        ecg.provenance["sidecar"] = "yes"
    ecg.demographics, notes = sanitize_demographics(ecg.demographics)
    if notes:
        earlier = ecg.provenance.get("demographics_notes")
        ecg.provenance["demographics_notes"] = "; ".join([earlier, *notes] if earlier else notes)
    return ecg
