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
`.partial` or `.crdownload` (and hidden files) are left alone until renamed, or until they
have not changed for `orphan_seconds`. A WFDB record is taken only when its header and
every signal file it names are present at full size. A signal file without its header (or
a header whose signal file never comes) waits `orphan_seconds`, then becomes a quarantined
arrival, so nothing waits forever unseen.

The boundary: nothing outside a watched folder (or the batch root) is ever read. Symbolic
links are never followed, whatever they point to; FIFOs, sockets and devices are never
opened; each becomes a *contentless* arrival that is quarantined with its reason (the entry
itself is removed, not what it points to). A WFDB header may name signal files only by
plain name in its own folder. A file name that is not UTF-8 is quarantined with a reason. A
folder that is not walked (hidden, unreadable) is logged once per watcher run.

This module only looks: it never moves or deletes a file (see `ingest.intake.archive`,
`ingest.intake.quarantine` and `worker.intake` for what happens next).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingest.intake.archive import record_sha256
from ingest.readers.detect import (
    detect_format,
    is_regular_file,
    missing_companion_files,
    parse_wfdb_header,
    record_refusals,
    sidecar_path,
    wfdb_companion_files,
    wfdb_header_for,
    SINGLE_FILE_FORMATS,
    UNRECOGNISED,
)
from ingest.ecg import SourceFormat

log = logging.getLogger(__name__)

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
    # True for an entry that is not a regular file (a symbolic link, a FIFO, a socket...):
    # it is never opened or followed; quarantine keeps its reason, and removing it from the
    # inbox removes the entry itself (a link, not what it points to).
    contentless: bool = False

    @property
    def files(self) -> tuple[Path, ...]:
        return self.record_files + self.extra_files

    def identity(self) -> str:
        """The hex key the archive or quarantine files it under: the record's content hash,
        or for a contentless entry a hash of its place in the inbox (it has no content)."""
        if self.contentless:
            place = os.fsencode(self.main.relative_to(self.inbox)) if self.main.is_relative_to(self.inbox) \
                else os.fsencode(self.main)
            return hashlib.sha256(b"inbox entry\0" + place).hexdigest()
        return record_sha256(self.record_files)


def is_ignored(path: Path) -> bool:
    """Temporary or hidden names: a sender is still writing, or it is not ours to take (yet).

    Such a file is left alone while it changes; unchanged for the orphan wait, it is
    quarantined (its sender never finished, or it was never meant for us)."""
    name = path.name
    return name.startswith((".", "~")) or name.lower().endswith(IGNORED_SUFFIXES)


@dataclass
class Listing:
    """What is under a watched folder, sorted into what may be opened and what may not."""

    files: list[Path] = field(default_factory=list)  # regular files (whatever their names)
    refused: list[tuple[Path, str]] = field(default_factory=list)  # never opened: links, FIFOs...
    reported: list[tuple[Path, str]] = field(default_factory=list)  # folders not walked: hidden, unreadable


def _special_reason(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file: never opened (opening one waits for a writer forever)"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file: never opened"
    return "a device or other special file, not a file: never opened"


def _link_reason(path: Path) -> str:
    """Why a symbolic link is refused, saying what it points to (never where: paths stay out)."""
    try:
        mode = path.stat().st_mode  # where it points, without opening anything
        kind = ("to a folder" if stat.S_ISDIR(mode) else "to a file" if stat.S_ISREG(mode)
                else "to a special file")
    except FileNotFoundError:
        kind = "to nothing (dangling)"
    except OSError:
        kind = "that cannot be resolved (a loop)"
    return (f"a symbolic link {kind}: links are never followed, so nothing outside the inbox is read; "
            "put the file itself in the inbox")


def list_entries(root: Path) -> Listing:
    """Every entry under `root`, never following a symbolic link (hidden folders not walked)."""
    listing = Listing()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            if folder != root:
                listing.reported.append((folder, f"folder cannot be read ({exc.strerror}): not watched"))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    listing.refused.append((path, _link_reason(path)))
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name.startswith("."):
                        listing.reported.append((path, "hidden folder (its name starts with '.'): not watched"))
                    else:
                        pending.append(path)
                elif entry.is_file(follow_symlinks=False):
                    listing.files.append(path)
                else:
                    listing.refused.append((path, _special_reason(entry.stat(follow_symlinks=False).st_mode)))
            except OSError:  # gone while we looked: the next scan sees what is there
                continue
    listing.files.sort()
    return listing


def name_problem(path: Path) -> str | None:
    """Why a file's name cannot be kept as text (the database, logs and reasons are UTF-8)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        # The name itself stays out of the reason (it is logged and audited); the .reason file lists it.
        return "file name is not valid UTF-8: rename it and drop it again"
    return None


def wfdb_record_files(header: Path) -> list[Path]:
    """The companion files of a WFDB header, following segment headers one level down."""
    files = []
    for companion in wfdb_companion_files(header):
        files.append(companion)
        if companion.suffix.lower() == ".hea" and is_regular_file(companion):
            files.extend(wfdb_companion_files(companion))
    return files


def _wfdb_problems(header: Path) -> list[str]:
    problems = missing_companion_files(header)
    parsed = parse_wfdb_header(header)
    if parsed is not None and parsed.segments is not None:
        for segment in wfdb_companion_files(header):
            if is_regular_file(segment):
                problems += missing_companion_files(segment)
    return problems


def group_folder(
    inbox: Path, files: Iterable[Path], *, ready: Callable[[Path], bool], orphaned: Callable[[Path], bool],
    abandoned: Callable[[Path], bool] | None = None, waiting: Callable[[Path, str], None] | None = None,
) -> list[Arrival]:
    """Group the regular files of one folder into arrivals.

    `ready(path)`: the file is complete (stable); `orphaned(path)`: it has waited for its
    companions long enough to give up; `abandoned(path)`: a temporary or hidden name has not
    changed for that long (default: `orphaned`). Files that are not ready, or that wait for a
    companion, are left out (the next scan looks again); `waiting(path, why)` is told about
    each one that waits for something other than its own last write (the watcher logs it).
    """
    abandoned = abandoned or orphaned
    waiting = waiting or (lambda _path, _why: None)
    arrivals: list[Arrival] = []
    remaining: set[Path] = set()
    for path in files:
        if (problem := name_problem(path)) is not None:
            if ready(path):
                arrivals.append(Arrival(inbox, path, (path,), problem=problem))
        elif is_ignored(path):
            if abandoned(path):
                arrivals.append(Arrival(inbox, path, (path,), problem=(
                    "temporary or hidden name (it starts with '.' or '~', or ends in .part/.tmp/...), unchanged "
                    "for the orphan wait: its sender never finished; rename it to drop it again")))
            else:
                waiting(path, "a temporary or hidden name (.part, .tmp, a leading '.'): waiting for its sender "
                              "to rename it")
        else:
            remaining.add(path)
    claimed: set[Path] = set()

    # WFDB records first: their signal files and segment headers belong to the header.
    for header in sorted(p for p in remaining if p.suffix.lower() == ".hea"):
        if header in claimed or detect_format(header) is not SourceFormat.WFDB:
            continue
        companions = wfdb_record_files(header)
        claimed.update(companions)
        claimed.add(header)
        present = [c for c in companions if c in remaining]  # regular files of this folder only
        if (refusals := record_refusals(header)) and ready(header):
            # Never readable, whatever arrives later: at once, without the orphan wait.
            arrivals.append(Arrival(inbox, header, (header, *present), source_format=SourceFormat.WFDB,
                                    problem="WFDB record refused: " + "; ".join(refusals)))
            continue
        problems = _wfdb_problems(header)
        if problems:
            if orphaned(header):
                arrivals.append(Arrival(inbox, header, (header, *present), source_format=SourceFormat.WFDB,
                                        problem="incomplete WFDB record: " + "; ".join(problems)))
            else:
                waiting(header, "a WFDB header waiting for its record: " + "; ".join(problems))
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
            else:
                waiting(path, "a WFDB signal file waiting for its header (.hea)")
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
            waiting(path, "a demographics sidecar waiting for its ECG to be complete")
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

    Read-only. Incomplete WFDB records, unrecognised files, and entries that are never
    opened (symbolic links, FIFOs, hidden or unreadable folders) come out with a `problem`.
    """
    listing = list_entries(root)
    for path, reason in listing.refused + listing.reported:
        yield Arrival(root, path, (path,), problem=reason, contentless=True)
    for _folder, files in sorted(_by_folder(listing.files).items()):
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
    changed for `stable_seconds`. An entry that is not a regular file (a symbolic link, a
    FIFO, a socket) is handed out at once as a contentless arrival to quarantine; a folder it
    does not walk (hidden, unreadable) is logged once, not every scan. It keeps no other
    state: an arrival that the caller could not take (its files are still there) is simply
    handed out again next scan.
    """

    inboxes: list[Path]
    stable_seconds: float = 2.0
    orphan_seconds: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[Path, _Seen] = field(default_factory=dict, repr=False)
    _reported: set[Path] = field(default_factory=set, repr=False)
    _waiting: dict[Path, str] = field(default_factory=dict, repr=False)  # path -> why, as last logged

    def _log_waiting(self, inbox: Path, path: Path, why: str) -> None:
        """One log line per waiting file, again only when the reason changes (not every poll).

        Digits are left out of the comparison, so a signal file that grows while it is copied
        is one line, not one per scan. Like every inbox log line it names the inbox and a hash
        of the path, never the file's name (a name may carry a patient's).
        """
        key = re.sub(r"\d+", "#", why)
        if self._waiting.get(path) == key:
            return
        self._waiting[path] = key
        seen = self._seen.get(path)
        left = self.orphan_seconds - (self.clock() - seen.first_seen) if seen is not None else self.orphan_seconds
        log.info("inbox %s: waiting on %s (path hash %s); quarantined in %.0f s if nothing changes",
                 inbox.name, why, hashlib.sha256(os.fsencode(path)).hexdigest()[:12], max(left, 0.0))

    def _observe(self, path: Path, now: float) -> None:
        try:
            stat_result = path.lstat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return
        seen = self._seen.get(path)
        if seen is None:
            self._seen[path] = _Seen(stat_result.st_size, stat_result.st_mtime_ns, now, now)
        elif (seen.size, seen.mtime_ns) != (stat_result.st_size, stat_result.st_mtime_ns):
            seen.size, seen.mtime_ns, seen.since = stat_result.st_size, stat_result.st_mtime_ns, now

    def _report_once(self, inbox: Path, reported: list[tuple[Path, str]]) -> None:
        now_reported = {path for path, _ in reported}
        for path, reason in reported:
            if path not in self._reported:
                # The folder's name may name a patient: the log says which inbox and why only.
                log.warning("inbox %s: a %s (path hash %s)", inbox.name, reason,
                            hashlib.sha256(os.fsencode(path)).hexdigest()[:12])
        self._reported = {p for p in self._reported if not p.is_relative_to(inbox)} | now_reported

    def scan(self) -> list[Arrival]:
        """The arrivals complete now, in every inbox (folders are created if missing)."""
        now = self.clock()
        present: set[Path] = set()
        waiting_now: set[Path] = set()
        arrivals: list[Arrival] = []
        for inbox in self.inboxes:
            inbox.mkdir(parents=True, exist_ok=True)
            listing = list_entries(inbox)
            self._report_once(inbox, listing.reported)
            arrivals += [Arrival(inbox, path, (path,), problem=reason, contentless=True)
                         for path, reason in listing.refused]
            for path in listing.files:
                self._observe(path, now)
            present.update(listing.files)

            def ready(path: Path) -> bool:
                seen = self._seen.get(path)
                return seen is not None and now - seen.since >= self.stable_seconds

            def orphaned(path: Path) -> bool:
                seen = self._seen.get(path)
                return seen is not None and now - seen.first_seen >= self.orphan_seconds

            def abandoned(path: Path) -> bool:
                seen = self._seen.get(path)
                return seen is not None and now - seen.since >= max(self.orphan_seconds, self.stable_seconds)

            def waiting(path: Path, why: str, inbox: Path = inbox) -> None:
                waiting_now.add(path)
                self._log_waiting(inbox, path, why)

            for folder_files in _by_folder(listing.files).values():
                arrivals += group_folder(inbox, folder_files, ready=ready, orphaned=orphaned, abandoned=abandoned,
                                         waiting=waiting)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        self._waiting = {path: why for path, why in self._waiting.items() if path in waiting_now}
        return arrivals
