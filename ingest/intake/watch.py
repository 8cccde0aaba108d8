"""Finding complete ECGs in folders: the inbox watcher's eyes, and the nightly batch's walker.

    scanner = InboxScanner([Path("/srv/inbox/cardio")], stable_seconds=2, orphan_seconds=600)
    for arrival in scanner.scan():      # call every poll interval
        ...                             # hash, register, archive, enqueue (worker.intake)
    for arrival in walk_records(Path("/mnt/ecg-archive")):   # everything there is complete
        ...

`wfdb_record_files(header)` names the files a WFDB record consists of besides its header.

An `Arrival` is one ECG as files: the main file a reader opens (the `.hea` of a WFDB
record), the files its identity hash covers, an optional demographics sidecar, and the
format recognised by content, or a `problem` saying why it must be quarantined.

When is a file complete? A sender may still be writing it. A file is taken only when its
size and mtime did not change for `stable_seconds`; names ending in `.part`, `.tmp`,
`.partial` or `.crdownload` (and hidden files) are ignored until renamed. A WFDB record is
taken only when its header and every signal file it names are present at full size. A
signal file without its header (or a header whose signal file never comes) waits
`orphan_seconds`, then becomes a quarantined arrival, so nothing waits forever unseen.

This module only looks: it never moves or deletes a file (see `ingest.intake.archive`,
`ingest.intake.quarantine` and `worker.intake` for what happens next).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingest.readers.detect import (
    detect_format,
    missing_companion_files,
    parse_wfdb_header,
    sidecar_path,
    wfdb_companion_files,
    wfdb_header_for,
    SINGLE_FILE_FORMATS,
    UNRECOGNISED,
)
from ingest.ecg import SourceFormat

IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
SIGNAL_SUFFIXES = (".dat", ".mat")


@dataclass(frozen=True)
class Arrival:
    """One ECG (or one unusable item) found in a folder, as the files that make it."""

    inbox: Path  # the watched folder (or batch root) it was found under
    main: Path  # what a reader opens: the DICOM/PDF file, or the WFDB header
    record_files: tuple[Path, ...]  # the files its identity hash covers (main first)
    extra_files: tuple[Path, ...] = ()  # a demographics sidecar that travels with it
    source_format: SourceFormat | None = None
    problem: str | None = None  # set: quarantine it with this reason

    @property
    def files(self) -> tuple[Path, ...]:
        return self.record_files + self.extra_files


def is_ignored(path: Path) -> bool:
    """Temporary or hidden names: a sender is still writing, or it is not ours to take."""
    name = path.name
    return name.startswith((".", "~")) or name.lower().endswith(IGNORED_SUFFIXES)


def _list_files(root: Path) -> Iterator[Path]:
    """Every regular, non-ignored file under `root` (hidden folders skipped)."""
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if not is_ignored(path) and path.is_file():
                yield path


def wfdb_record_files(header: Path) -> list[Path]:
    """The companion files of a WFDB header, following segment headers one level down."""
    files = []
    for companion in wfdb_companion_files(header):
        files.append(companion)
        if companion.suffix.lower() == ".hea" and companion.is_file():
            files.extend(wfdb_companion_files(companion))
    return files


def _wfdb_problems(header: Path) -> list[str]:
    problems = missing_companion_files(header)
    parsed = parse_wfdb_header(header)
    if parsed is not None and parsed.segments is not None:
        for segment in wfdb_companion_files(header):
            if segment.is_file():
                problems += missing_companion_files(segment)
    return problems


def group_folder(
    inbox: Path, files: Iterable[Path], *, ready: Callable[[Path], bool], orphaned: Callable[[Path], bool],
) -> list[Arrival]:
    """Group the files of one folder into arrivals.

    `ready(path)`: the file is complete (stable); `orphaned(path)`: it has waited for its
    companions long enough to give up. Files that are not ready, or that wait for a
    companion, are left out (the next scan looks again).
    """
    remaining = {path for path in files}
    arrivals: list[Arrival] = []
    claimed: set[Path] = set()

    # WFDB records first: their signal files and segment headers belong to the header.
    for header in sorted(p for p in remaining if p.suffix.lower() == ".hea"):
        if header in claimed or detect_format(header) is not SourceFormat.WFDB:
            continue
        companions = wfdb_record_files(header)
        claimed.update(companions)
        claimed.add(header)
        problems = _wfdb_problems(header)
        if problems:
            if orphaned(header):
                arrivals.append(Arrival(inbox, header, (header, *[c for c in companions if c.is_file()]),
                                        source_format=SourceFormat.WFDB,
                                        problem="incomplete WFDB record: " + "; ".join(problems)))
            continue
        if all(ready(path) for path in (header, *companions)):
            arrivals.append(Arrival(inbox, header, (header, *companions), source_format=SourceFormat.WFDB))

    for path in sorted(remaining - claimed):
        if path in claimed or path.suffix.lower() == ".json":
            continue  # sidecars travel with their ECG (below)
        if not ready(path):
            continue
        source_format = detect_format(path)
        if source_format in SINGLE_FILE_FORMATS:
            arrivals.append(Arrival(inbox, path, (path,), source_format=source_format))
            continue
        if source_format is None and path.suffix.lower() in SIGNAL_SUFFIXES and wfdb_header_for(path) is None:
            # Perhaps a signal file whose header has not arrived yet: wait for it a while.
            if orphaned(path):
                arrivals.append(Arrival(inbox, path, (path,), problem="WFDB signal file without its header (.hea)"))
            continue
        if source_format is None and wfdb_header_for(path) is not None:
            continue  # belongs to a header that is not complete yet
        arrivals.append(Arrival(inbox, path, (path,), problem=UNRECOGNISED))

    # Attach sidecars; a sidecar whose ECG never comes is quarantined after the orphan wait.
    attached: set[Path] = set()
    result = []
    for arrival in arrivals:
        sidecar = sidecar_path(arrival.main)
        if sidecar is not None and sidecar in remaining and ready(sidecar):
            attached.add(sidecar)
            arrival = Arrival(arrival.inbox, arrival.main, arrival.record_files, (sidecar,),
                              arrival.source_format, arrival.problem)
        result.append(arrival)
    for path in sorted(p for p in remaining if p.suffix.lower() == ".json" and p not in attached):
        if _has_ecg_beside(path):
            continue  # its ECG is still on its way
        if ready(path) and orphaned(path):
            result.append(Arrival(inbox, path, (path,), problem="demographics sidecar without its ECG"))
    return result


def _has_ecg_beside(sidecar: Path) -> bool:
    """A file in the same folder whose sidecar this is (`x.dcm.json` or `x.json` for `x.*`)."""
    base = sidecar.name.removesuffix(".json")
    for candidate in sidecar.parent.iterdir():
        if candidate != sidecar and candidate.name.startswith(base) and not candidate.name.endswith(".json"):
            return True
    return False


def _by_folder(files: Iterable[Path]) -> dict[Path, list[Path]]:
    folders: dict[Path, list[Path]] = {}
    for path in files:
        folders.setdefault(path.parent, []).append(path)
    return folders


def walk_records(root: Path) -> Iterator[Arrival]:
    """Every ECG under `root`, for a batch over an archive: everything there is complete.

    Read-only. Incomplete WFDB records and unrecognised files come out with a `problem`.
    """
    for _folder, files in sorted(_by_folder(_list_files(root)).items()):
        yield from group_folder(root, files, ready=lambda _p: True, orphaned=lambda _p: True)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time this size+mtime was first seen
    first_seen: float  # monotonic time the path was first seen at all


@dataclass
class InboxScanner:
    """Watches inbox folders and hands out arrivals once their files are complete.

    It remembers each file's size and mtime between scans; a file is ready when neither
    changed for `stable_seconds`. It keeps no other state: an arrival that the caller
    could not take (its files are still there) is simply handed out again next scan.
    """

    inboxes: list[Path]
    stable_seconds: float = 2.0
    orphan_seconds: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[Path, _Seen] = field(default_factory=dict, repr=False)

    def _observe(self, path: Path, now: float) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return
        seen = self._seen.get(path)
        if seen is None:
            self._seen[path] = _Seen(stat.st_size, stat.st_mtime_ns, now, now)
        elif (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            seen.size, seen.mtime_ns, seen.since = stat.st_size, stat.st_mtime_ns, now

    def scan(self) -> list[Arrival]:
        """The arrivals complete now, in every inbox (folders are created if missing)."""
        now = self.clock()
        present: set[Path] = set()
        arrivals: list[Arrival] = []
        for inbox in self.inboxes:
            inbox.mkdir(parents=True, exist_ok=True)
            files = list(_list_files(inbox))
            for path in files:
                self._observe(path, now)
            present.update(files)

            def ready(path: Path) -> bool:
                seen = self._seen.get(path)
                return seen is not None and now - seen.since >= self.stable_seconds

            def orphaned(path: Path) -> bool:
                seen = self._seen.get(path)
                return seen is not None and now - seen.first_seen >= self.orphan_seconds

            for folder_files in _by_folder(files).values():
                arrivals += group_folder(inbox, folder_files, ready=ready, orphaned=orphaned)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return arrivals
