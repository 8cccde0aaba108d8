"""The content-addressed archive: where every accepted ECG file is kept, by its hash.

    record_sha256(files)                  the study's identity: sha256 of one file, or of a WFDB record
    archive_folder(root, sha256)          root/ab/cd/<sha256>/
    archive_record(files, root, sha256)   copy the files there durably; the main file's new path
    archived_intact(folder, files, sha)   True when the folder already holds the same record
    copy_durably(src, dst)                copy, fsync, atomic rename, fsync the folder

Layout: `archive/ab/cd/<sha256>/<original file names>`. The files of a WFDB record (header
and signal files, and a demographics sidecar if one came with it) stay together under
their original names, because the header names its signal files. Copies are made with a
temporary name, flushed to disk and renamed into place, so a crash never leaves a
half-written file under a real name; the caller deletes the inbox copy only after this
returns. Files are only ever opened as regular files, never through a symbolic link
(`open_regular`), so nothing outside the inbox or the batch root is read or copied.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from ingest.readers.detect import open_regular

_CHUNK = 1024 * 1024


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_sha256(files: Sequence[Path]) -> str:
    """The identity of an ECG: the sha256 of its bytes.

    One file (DICOM, PDF): the plain sha256 of the file, the same as `sha256sum` prints.
    Several files (a WFDB header and its signal files): the sha256 over each file's name,
    size and bytes in name order, so the same record dropped twice hashes the same and a
    changed signal file changes the identity. Demographic sidecars are NOT part of it:
    pass only the ECG's own files.
    """
    if not files:
        raise ValueError("a record has at least one file")
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        with open_regular(path) as handle:
            digest.update(f"{path.name}\0{os.fstat(handle.fileno()).st_size}\0".encode("utf-8", "surrogateescape"))
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def archive_folder(root: Path, sha256: str) -> Path:
    """root/ab/cd/<sha256>: two levels of fan-out keep every folder small."""
    return root / sha256[:2] / sha256[2:4] / sha256


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (the folder entry itself must reach the disk)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_durably(source: Path, target: Path) -> None:
    """Copy `source` to `target` so that `target` is either absent or complete, even after a crash."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # A short temporary name: the target's own name may already be at the 255-byte limit.
    temporary = target.with_name(f".copy.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open_regular(source) as src, temporary.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
            dst.flush()
            os.fsync(dst.fileno())
        shutil.copystat(source, temporary, follow_symlinks=False)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(target.parent)


def archived_intact(folder: Path, record_files: Sequence[Path], sha256: str) -> bool:
    """True when `folder` holds files of the same names whose record hash is `sha256`."""
    copies = [folder / path.name for path in record_files]
    if not all(copy.is_file() for copy in copies):
        return False
    return record_sha256(copies) == sha256


def archive_record(files: Sequence[Path], main: Path, root: Path, sha256: str,
                   record_files: Sequence[Path] | None = None) -> Path:
    """Copy `files` into the record's archive folder (durably); return the archived `main`.

    `record_files` are the files the hash covers (default: all `files`); when the folder
    already holds them intact they are not copied again, so a retried or repeated call
    is cheap and changes nothing. Extra files (a sidecar) are copied if absent.
    The originals are left alone: removing them is the caller's decision.
    """
    folder = archive_folder(root, sha256)
    hashed = list(record_files) if record_files is not None else list(files)
    intact = archived_intact(folder, hashed, sha256)
    for path in files:
        target = folder / path.name
        if intact and target.is_file():
            continue
        copy_durably(path, target)
    if not archived_intact(folder, hashed, sha256):
        # The source changed while it was copied: refuse rather than keep a mismatched copy.
        raise OSError(f"archive copy of record {sha256[:12]} does not match its hash")
    return folder / main.name
