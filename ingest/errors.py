"""The one error a reader or preparation step raises for input it cannot use.

It always names the file and the reason, so the caller can quarantine the file with a
`.reason` text beside it and a person can act on it without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """A file that cannot become a canonical ECG. `reason` is short and human-readable."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
