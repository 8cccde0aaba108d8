"""Whether this host installed the readers: the libraries that decode ECG files and measure them.

A review or deliver host installs only the base package (pyproject.toml): it shows and sends
what the pipeline stored and never reads an ECG file. The readers come with the `watch` and
`cpu-worker` extras (and those that include them). A command or page that needs them asks
`missing_reader_library()` first and tells the operator which extra to install, instead of
failing half-way through a file (which the pipeline would take for a bad file).
"""

from __future__ import annotations

import importlib.util

# The import names of what the readers, preparation and measurement use beyond the base install.
READER_LIBRARIES = ("scipy", "PIL", "pydicom", "wfdb", "pypdfium2", "defusedxml")
READERS_EXTRA = "watch"


def missing_reader_library() -> str | None:
    """The first reader library this host cannot import (None: all are installed); nothing is imported."""
    for name in READER_LIBRARIES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ImportError:  # an import hook that refuses the name: absent all the same
            return name
    return None


def readers_hint(command: str, extra: str = READERS_EXTRA) -> str:
    """The one line that says what to install: `ecg-worklist watch needs the readers: pip install ...`."""
    return f"{command} needs the readers: pip install 'ecg-worklist[{extra}]'"
