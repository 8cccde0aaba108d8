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
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from ingest.intake.archive import copy_durably
from ingest.readers.detect import is_regular_file

REASON_SUFFIX = ".reason"
_MAX_NAME_BYTES = 255  # a file name's limit on Linux file systems


def quarantine_folder(root: Path, key: str) -> Path:
    return root / key[:16]


def printable_name(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 shown as \\xNN (a name is bytes on Linux)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _fitting_name(name: str, suffix: str = "") -> str:
    """`name + suffix`, shortened (keeping a hash of the whole) to fit the 255-byte name limit."""
    whole = name + suffix
    if len(whole.encode("utf-8")) <= _MAX_NAME_BYTES:
        return whole
    digest = hashlib.sha256(whole.encode("utf-8")).hexdigest()[:12]
    keep = name.encode("utf-8")[: _MAX_NAME_BYTES - len(suffix.encode("utf-8")) - 14].decode("utf-8", "ignore")
    return f"{keep}~{digest}{suffix}"


def reason_text(reason: str, files: Sequence[Path], at: dt.datetime | None = None) -> str:
    when = (at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    names = ", ".join(printable_name(path.name) for path in files)
    return f"{reason}\n\nfiles: {names}\nquarantined at: {when}\n"


def quarantine_files(files: Sequence[Path], root: Path, key: str, reason: str, *, main: Path | None = None) -> Path:
    """Copy `files` to `root/<key[:16]>/` and write `<main name>.reason` beside them.

    Returns the path of the reason file. `key` is the content hash of the item (any
    hex string of at least 16 characters); `main` defaults to the first file.

    Only regular files are copied, never through a symbolic link: a link, a FIFO or a
    socket in an inbox has no content of its own, so only its reason is kept. A name that
    is not UTF-8 is kept readable (`\\xNN`), and the reason file's name is shortened when the
    file's name leaves no room for `.reason`.
    """
    if not files:
        raise ValueError("nothing to quarantine")
    folder = quarantine_folder(root, key)
    for path in files:
        if is_regular_file(path):
            copy_durably(path, folder / printable_name(path.name))
    folder.mkdir(parents=True, exist_ok=True)
    reason_path = folder / _fitting_name(printable_name((main or files[0]).name), REASON_SUFFIX)
    temporary = folder / f".reason.{os.getpid()}.tmp"
    temporary.write_text(reason_text(reason, files), encoding="utf-8")
    os.replace(temporary, reason_path)
    return reason_path
