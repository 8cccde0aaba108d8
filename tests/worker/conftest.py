"""Fixtures of the pipeline tests: settings in a temporary folder, an in-process context on
SQLite, and copies of the bundled sample ECGs (samples/, made by scripts/make_samples.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reports import store
from worker.context import PipelineContext
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
# The files of each sample ECG (a WFDB record is a header, its signal file and a sidecar).
SAMPLE_FILES = {
    "dicom": ["demo-dicom.dcm"],
    "wfdb": ["demo-wfdb.hea", "demo-wfdb.dat", "demo-wfdb.json"],
    "pdf": ["demo-report.pdf"],
    "scan": ["demo-scan.pdf", "demo-scan.pdf.json"],
}


def copy_sample(kind: str, folder: Path) -> list[Path]:
    """Copy one sample ECG's files into `folder`; returns the copies (in SAMPLE_FILES order).

    The demographics sidecar is copied first, as a sender writes it before the record: a
    watcher running meanwhile must not find the record complete and take it without its
    sidecar (a late sidecar is rightly left to the orphan wait).
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = SAMPLE_FILES[kind]
    for name in sorted(names, key=lambda name: not name.endswith(".json")):
        shutil.copy2(SAMPLES / name, folder / name)
    return [folder / name for name in names]


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings rooted in the test's folder: SQLite under var/, one inbox, no broker."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var", "inbox_dirs": [tmp_path / "inbox"], "database_url": None,
            "redis_url": None, "stable_seconds": 0.0, "poll_seconds": 0.1, "interpret_batch_size": 3,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def ctx(make_settings: Callable[..., Settings]) -> Iterator[PipelineContext]:
    """An in-process pipeline context on a migrated SQLite database."""
    settings = make_settings()
    store.upgrade(settings.effective_database_url)
    context = PipelineContext.create(settings)
    yield context
    context.close()
