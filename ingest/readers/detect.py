"""What kind of ECG file is this, and is all of it there yet? Decided by content.

    detect_format(path)          DICOM | WFDB | PDF | MUSE/Philips/aECG XML | SCP-ECG, or None
    wfdb_companion_files(hea)    the signal files (.dat/.mat) a WFDB header names
    missing_companion_files(hea) what is still missing or too short, in words
    is_record_complete(hea)      True when every companion is there at its full size
    record_refusals(hea)         why the record can never be read (files named elsewhere, links)
    entry_kind(path)             file | missing | symbolic link | FIFO | socket | ... (never follows links)
    wfdb_header_for(path)        the header a .dat/.mat file belongs to, if any
    sidecar_path(path)           the optional `<file>.json` demographics sidecar

The folder watcher uses the WFDB helpers to wait until a record's header and signal
files have all arrived (a header without its .dat is not yet an ECG) and to archive
them together. Signal files are only ever taken from the header's own folder, by plain
name, and only when they are regular files: a header naming `../../elsewhere/x.dat` or a
`.dat` that is a symbolic link is refused, never followed.

Content rules:
- DICOM: the 128-byte preamble followed by "DICM", or (for files written without the
  preamble) a dataset that starts with a group 0002/0008 element and parses to a
  SOP Class UID.
- PDF: "%PDF-" within the first 1024 bytes (readers accept leading junk up to there).
- WFDB: a `.hea` file of text whose first non-comment line is a record line
  `name[/segments] nsig [fs [nsamp ...]]`, followed by at least nsig signal lines.
  (The extension matters here too: `wfdb` finds a record by its `.hea` name.)
- XML: the name of the root element, after the XML declaration, comments and DOCTYPE
  (searched in the first `_XML_HEAD_BYTES`): `RestingECG` is GE MUSE, `restingecgdata`
  Philips (Sierra/PageWriter), `AnnotatedECG` HL7 aECG. Any other XML is none of ours.
- SCP-ECG: section 0 right after the 6-byte file header, with section id 0 and the
  reserved bytes "SCPECG" in its section header (bytes 16-21 of the file).
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ingest.ecg import SourceFormat

_HEAD_BYTES = 1024
_XML_HEAD_BYTES = 16 * 1024  # the aECG example has 1 KB of comments before its root element
_MAX_HEADER_BYTES = 256 * 1024  # a WFDB header is text; anything bigger is not one

_RECORD_LINE = re.compile(
    r"^(?P<name>[\w.\-]+)(?:/(?P<segments>\d+))?\s+(?P<nsig>\d+)"
    r"(?:\s+(?P<fs>[0-9.eE+\-]+)(?:/[0-9.eE+\-]+)?(?:\([0-9.eE+\-]+\))?"
    r"(?:\s+(?P<nsamp>\d+))?)?(?:\s+.*)?$"
)
_SIGNAL_FORMAT = re.compile(r"^(?P<fmt>\d+)(?:x\d+)?(?::\d+)?(?:\+(?P<offset>\d+))?$")
# Bytes per sample of the fixed-width WFDB formats (212/310/311 pack several samples).
_BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5,
                     "24": 3.0, "32": 4.0, "310": 4 / 3, "311": 4 / 3}


# Formats whose whole record is one file (WFDB has a header and signal files).
SINGLE_FILE_FORMATS = frozenset(fmt for fmt in SourceFormat if fmt is not SourceFormat.WFDB)
UNRECOGNISED = ("unrecognised content: not a DICOM ECG, a WFDB header (.hea), a PDF, "
                "a GE MUSE, Philips or HL7 aECG XML, nor an SCP-ECG file")

_XML_ROOTS = {
    "RestingECG": SourceFormat.MUSE_XML,
    "restingecgdata": SourceFormat.PHILIPS_XML,
    "AnnotatedECG": SourceFormat.HL7_AECG,
}
# What may come before the root element: declaration, processing instructions, comments,
# a DOCTYPE (with or without an internal subset) and whitespace. Entities in an internal
# subset are refused later, by defusedxml in the reader.
_XML_PROLOG = re.compile(rb"(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\]\s*)?>)*", re.DOTALL)
_XML_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)[\s>/]")


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading, never through a symbolic link and never a FIFO or
    device (whose open would block or read forever). Raises OSError otherwise.

    The check is on the opened descriptor, so a file swapped for a link or a FIFO after it
    was listed is refused too.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def detect_format(path: Path) -> SourceFormat | None:
    """The format of the file at `path` judged by its content, or None if it is none of ours."""
    try:
        with open_regular(path) as handle:
            head = handle.read(_XML_HEAD_BYTES)
    except OSError:
        return None
    if not head:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return SourceFormat.DICOM
    if b"%PDF-" in head[:_HEAD_BYTES]:
        return SourceFormat.PDF
    if len(head) >= 22 and head[8:10] == b"\x00\x00" and head[16:22] == b"SCPECG":
        return SourceFormat.SCP_ECG
    if (xml_format := _xml_format(head)) is not None:
        return xml_format
    if path.suffix.lower() == ".hea" and parse_wfdb_header(path) is not None:
        return SourceFormat.WFDB
    if _looks_like_raw_dicom(path, head):
        return SourceFormat.DICOM
    return None


def _xml_format(head: bytes) -> SourceFormat | None:
    """The ECG XML format named by the root element in the first bytes of a file, if any."""
    text = head.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
    for bom, encoding in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if text.startswith(bom):  # Philips carts write UTF-16 with a byte-order mark
            text = text[2:len(text) - len(text) % 2].decode(encoding, "replace").encode("utf-8", "replace")
    prolog = _XML_PROLOG.match(text)
    match = _XML_ROOT.match(text, prolog.end() if prolog else 0)
    if match is None:
        return None
    return _XML_ROOTS.get(match[1].decode("ascii", "replace"))


def _looks_like_raw_dicom(path: Path, head: bytes) -> bool:
    """A DICOM dataset without preamble: starts with a (0002,xxxx) or (0008,xxxx) element."""
    if len(head) < 8 or head[0:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    import pydicom  # here, so that detecting a PDF or WFDB file does not load pydicom

    try:
        dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # any parse failure just means "not DICOM"
        return False
    uid = str(dataset.get("SOPClassUID", "") or dataset.file_meta.get("MediaStorageSOPClassUID", ""))
    return bool(re.fullmatch(r"[0-9]+(\.[0-9]+)+", uid))


@dataclass(frozen=True)
class WfdbSignalFile:
    """One signal file named by a WFDB header, and the byte count its header implies."""

    path: Path
    expected_bytes: int | None  # None when the format or sample count does not tell
    signals: int = 1  # signals stored in this file (interleaved)
    bytes_per_sample: float | None = None  # None for formats of varying width (e.g. FLAC)
    offset: int = 0  # bytes before the first sample

    def samples_on_disk(self, size: int) -> int | None:
        """Samples per signal that a file of `size` bytes holds; None when the format does not tell."""
        if self.bytes_per_sample is None:
            return None
        return int(max(size - self.offset, 0) / (self.bytes_per_sample * self.signals))


@dataclass(frozen=True)
class WfdbHeader:
    """The parts of a WFDB header the watcher and the reader need before touching signals."""

    record_name: str
    segments: int | None  # set for multi-segment records
    nsig: int
    fs: float | None
    nsamp: int | None
    signal_files: list[WfdbSignalFile]
    segment_names: list[str]
    # File names the header gives that are not plain names in its own folder ("../x.dat",
    # "/etc/passwd", "sub/x.dat"): never opened, and the record is refused.
    outside_names: tuple[str, ...] = ()


def _content_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def parse_wfdb_header(header: Path) -> WfdbHeader | None:
    """The record line and signal files of a WFDB header; None if the file is not one."""
    try:
        with open_regular(header) as handle:
            raw = handle.read(_MAX_HEADER_BYTES + 1)
    except OSError:
        return None
    if len(raw) > _MAX_HEADER_BYTES or b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = _content_lines(text)
    if not lines or (match := _RECORD_LINE.match(lines[0])) is None:
        return None
    nsig = int(match["nsig"])
    segments = int(match["segments"]) if match["segments"] else None
    body = lines[1:]
    if segments is not None:
        if len(body) < segments:
            return None
        names = [line.split()[0] for line in body[:segments]]
        outside = tuple(name for name in names if name != "~" and not is_plain_file_name(name))
        return WfdbHeader(match["name"], segments, nsig, _float(match["fs"]), _int(match["nsamp"]),
                          signal_files=[], segment_names=[name for name in names if name not in outside],
                          outside_names=outside)
    if len(body) < nsig:
        return None
    nsamp = _int(match["nsamp"])
    parsed = _signal_files(header.parent, body[:nsig], nsamp)
    if parsed is None:
        return None
    files, outside = parsed
    return WfdbHeader(match["name"], None, nsig, _float(match["fs"]), nsamp, files, [], outside)


def is_plain_file_name(name: str) -> bool:
    """A name that can only mean a file in the header's own folder: no folder part, not "." or ".."."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _signal_files(folder: Path, signal_lines: list[str],
                  nsamp: int | None) -> tuple[list[WfdbSignalFile], tuple[str, ...]] | None:
    """Group the signal lines by file: (files in the header's folder, names pointing elsewhere);
    None if a line is not a signal line."""
    by_file: dict[str, list[tuple[str, int]]] = {}
    for line in signal_lines:
        tokens = line.split()
        if len(tokens) < 2 or (fmt := _SIGNAL_FORMAT.match(tokens[1])) is None:
            return None
        by_file.setdefault(tokens[0], []).append((fmt["fmt"], int(fmt["offset"] or 0)))
    files = []
    outside = []
    for name, signals in by_file.items():
        if name == "~":  # "no file": a signal with no samples stored
            continue
        if not is_plain_file_name(name):
            outside.append(name)
            continue
        formats = {fmt for fmt, _ in signals}
        offset = max(offset for _, offset in signals)
        width = _BYTES_PER_SAMPLE.get(next(iter(formats))) if len(formats) == 1 else None
        expected = offset + math.ceil(nsamp * len(signals) * width) if nsamp and width else None
        files.append(WfdbSignalFile(folder / name, expected, len(signals), width, offset))
    return files, tuple(outside)


def wfdb_companion_files(header: Path) -> list[Path]:
    """The files a WFDB header needs beside it: signal files (.dat/.mat), or segment headers."""
    parsed = parse_wfdb_header(header)
    if parsed is None:
        return []
    if parsed.segments is not None:
        return [header.parent / f"{name}.hea" for name in parsed.segment_names if name != "~"]
    return [signal_file.path for signal_file in parsed.signal_files]


def entry_kind(path: Path) -> str:
    """What is at `path`, without following a symbolic link: "file" for a regular file,
    else "missing", "symbolic link", "FIFO", "socket", "device file" or "folder"."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    return "device file"


def is_regular_file(path: Path) -> bool:
    """A regular file itself, not a symbolic link to one (links are never followed)."""
    return entry_kind(path) == "file"


def record_refusals(header: Path) -> list[str]:
    """Why a WFDB record can never be read, whatever arrives later: files named outside the
    header's folder, and companions that are links, FIFOs or other non-files."""
    parsed = parse_wfdb_header(header)
    if parsed is None:
        return []
    refusals = []
    if parsed.outside_names:
        refusals.append(f"the header names {', '.join(repr(n) for n in parsed.outside_names)} outside its own "
                        "folder (signal files are read only from the header's folder)")
    for companion in wfdb_companion_files(header):
        kind = entry_kind(companion)
        if kind not in ("file", "missing"):
            refusals.append(f"{companion.name} is a {kind}, not a file (never followed or opened)")
    return refusals


def missing_companion_files(header: Path) -> list[str]:
    """Why a WFDB record is not complete yet: one line per refused, missing or short file."""
    parsed = parse_wfdb_header(header)
    if parsed is None:
        return [f"{header.name} is not a WFDB header"]
    refusals = record_refusals(header)
    if refusals:
        return refusals
    if parsed.segments is not None:
        return [f"segment header {path.name} is missing" for path in wfdb_companion_files(header)
                if not is_regular_file(path)]
    problems = []
    for signal_file in parsed.signal_files:
        if not is_regular_file(signal_file.path):
            problems.append(f"signal file {signal_file.path.name} named in the header is missing")
            continue
        size = signal_file.path.stat().st_size
        if signal_file.expected_bytes is not None and size < signal_file.expected_bytes:
            problems.append(f"signal file {signal_file.path.name} is truncated "
                            f"({size} bytes, the header implies {signal_file.expected_bytes})")
    return problems


def is_record_complete(header: Path) -> bool:
    """True when every companion file of the WFDB record is present at its full size."""
    return not missing_companion_files(header)


def wfdb_header_for(path: Path) -> Path | None:
    """The `.hea` in the same folder that names `path` as its signal file, if any."""
    same_stem = path.with_suffix(".hea")
    candidates = [same_stem] if same_stem.is_file() else []
    candidates += sorted(p for p in path.parent.glob("*.hea") if p != same_stem)
    for candidate in candidates:
        if any(companion.name == path.name for companion in wfdb_companion_files(candidate)):
            return candidate
    return None


def sidecar_path(path: Path) -> Path | None:
    """The JSON demographics sidecar of a source file, if any: `<file>.json`, else `<stem>.json`."""
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate != path and is_regular_file(candidate):
            return candidate
    return None
