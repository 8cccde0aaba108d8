"""The archive formats through the whole pipeline: `ecg-worklist batch` over one real file of
each (GE MUSE, Philips, HL7 aECG, SCP-ECG) and a corpus of non-ECG files, in-process (SQLite).
Every ECG becomes a draft; no non-ECG file gets one. A non-ECG file that looks like one of
the formats at first sight (a damaged MUSE export, an XML bomb with a MUSE root) is registered
and then quarantined by preparation with its reason; the rest are not usable at intake."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from reports import store
from tests.ingest_readers.test_archive_formats import AECG, MUSE, PHILIPS_104, SCP_HUFFMAN, _non_ecg_corpus
from tests.worker.helpers import reports, studies
from worker.cli import main
from worker.settings import Settings


def test_batch_drafts_every_archive_format_and_accepts_no_non_ecg_file(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    for path in (MUSE, PHILIPS_104, AECG, SCP_HUFFMAN):
        (root / "ecgs").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "ecgs" / path.name)
    corpus = _non_ecg_corpus(root / "other")
    env = {"ECGWL_DATA_DIR": str(tmp_path / "var"), "ECGWL_DATABASE_URL": "", "ECGWL_REDIS_URL": ""}
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env, catch_exceptions=False).exit_code == 0
    result = runner.invoke(main, ["batch", "--no-progress", str(root)], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    looks_like_ecg = {"bomb.xml", "broken_muse.xml", "empty_philips.xml", "fake.scp"}
    assert (f"{4 + len(corpus)} items found: {4 + len(looks_like_ecg)} new, 0 already registered, "
            f"{len(corpus) - len(looks_like_ecg)} not usable") in result.output
    assert "draft reports awaiting cardiologist sign-off: 4" in result.output

    engine = store.make_engine(Settings(data_dir=tmp_path / "var").effective_database_url)
    rows = studies(engine)
    ecgs = [row for row in rows if "/ecgs/" in row.source_path]
    others = [row for row in rows if "/other/" in row.source_path]
    assert sorted(row.source_format for row in ecgs) == ["hl7_aecg", "muse_xml", "philips_xml", "scp_ecg"]
    assert all(row.state == "awaiting_signoff" for row in ecgs)
    assert sorted(Path(row.source_path).name for row in others) == sorted(looks_like_ecg)
    assert all(row.state == "quarantined" for row in others)  # 0 non-ECG files accepted
    assert len(reports(engine)) == 4
    engine.dispose()
