"""Quarantine: where unusable input is kept, with the reason written beside it.

    quarantine_files(files, root, key, reason)  copy the files to root/<key>/, write <main>.reason

A file is quarantined when it is not an ECG this system reads (unrecognised content), when
a WFDB record stays incomplete, or when a reader or preparation raises `IngestError`.
Nothing is deleted here: the files are copied durably (see `ingest.intake.archive.copy_durably`)
and the caller removes the inbox copy only afterwards. Each quarantined item gets its own
folder named by its content hash (`key`), so WFDB files keep the names their header uses
and the same bad file dropped twice lands in the same place.

The `.reason` text is for a person: the reason, the original file names and the time.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from ingest.intake.archive import copy_durably

REASON_SUFFIX = ".reason"


def quarantine_folder(root: Path, key: str) -> Path:
    return root / key[:16]


def reason_text(reason: str, files: Sequence[Path], at: dt.datetime | None = None) -> str:
    when = (at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    names = ", ".join(path.name for path in files)
    return f"{reason}\n\nfiles: {names}\nquarantined at: {when}\n"


def quarantine_files(files: Sequence[Path], root: Path, key: str, reason: str, *, main: Path | None = None) -> Path:
    """Copy `files` to `root/<key[:16]>/` and write `<main name>.reason` beside them.

    Returns the path of the reason file. `key` is the content hash of the item (any
    hex string of at least 16 characters); `main` defaults to the first file.
    """
    if not files:
        raise ValueError("nothing to quarantine")
    folder = quarantine_folder(root, key)
    for path in files:
        if path.is_file():
            copy_durably(path, folder / path.name)
    reason_path = folder / f"{(main or files[0]).name}{REASON_SUFFIX}"
    temporary = reason_path.with_name(f".{reason_path.name}.{os.getpid()}.tmp")
    temporary.write_text(reason_text(reason, files))
    os.replace(temporary, reason_path)
    return reason_path
