"""Run Python code as a review-only host would: the reader libraries cannot be imported.

A fresh interpreter (`subprocess`) whose first import hook refuses every library the
`watch`/`cpu-worker` extras add (`ingest.host.READER_LIBRARIES`, and celery), exactly as
Python does when they are not installed (ModuleNotFoundError naming the module). The code
under test runs unchanged: this is the host's real behaviour, not a stand-in for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ingest.host import READER_LIBRARIES

REPO = Path(__file__).resolve().parent.parent
ABSENT = (*READER_LIBRARIES, "celery", "kombu", "torch", "transformers")

_BLOCKER = f"""
import importlib.abc, sys
ABSENT = {ABSENT!r}
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def run_without_readers(code: str, *args: str,
                        env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` (after the import hook) with `args` as sys.argv[1:]; stdout and stderr captured.
    `env` changes this environment: a value of None removes the variable."""
    changes = env or {}
    full = {k: v for k, v in os.environ.items() if k not in changes} | {k: v for k, v in changes.items() if v is not None}
    return subprocess.run([sys.executable, "-c", _BLOCKER + code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=full, check=False, stdin=subprocess.DEVNULL)
