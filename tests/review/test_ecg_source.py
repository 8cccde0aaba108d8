"""The study's ECG for the page (reports/review/ecg_source.py): from the display copy or the file, drawn, cached."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from reports.review import ecg_source
from reports.review.ecg_source import VIEW_VERSION, ViewCache
from tests.review.svg_reading import read_drawing
from tests.review.synthetic import write_record

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def mortara(tmp_path: Path) -> Path:
    return Path(shutil.copy(get_testdata_file("waveform_ecg.dcm"), tmp_path / "mortara.dcm"))


def test_the_devices_statements_and_measurements_and_a_1000_hz_drawing(mortara: Path, tmp_path: Path) -> None:
    cache = ViewCache(tmp_path / "views")
    view = cache.view("ab" * 32, mortara)
    assert view.has_signal and view.problem is None
    assert view.device_name and "el250" in view.device_name
    assert [s.text for s in view.device_statements] == ["RITMO SINUSALE", "ECG NORMALE"]
    device = view.device_measurements
    assert (device.pr_ms, device.qrs_ms, device.qt_ms, device.qtc_ms, device.qrs_axis_deg) == (161, 75, 368, 370, 52)
    assert view.sampling_rate_hz == 1000 and view.shown_s == pytest.approx(10.0)  # the recording's own rate
    drawing = read_drawing(gzip.decompress(cache.svg_gz("ab" * 32, mortara)).decode())
    rhythm = [xs for lead, is_rhythm, xs, _ in drawing.traces if is_rhythm]
    assert sum(len(xs) for xs in rhythm) >= 10_000  # every one of the 10,000 samples of lead II


def test_cached_by_content_hash_and_version_and_the_file_is_not_read_again(mortara: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ViewCache(tmp_path / "views")
    first = cache.view("cd" * 32, mortara)
    svg = cache.svg_gz("cd" * 32, mortara)
    kept = sorted(p.name for p in (tmp_path / "views" / "cd").iterdir())
    assert kept == [f"{'cd' * 32}.v{VIEW_VERSION}.json", f"{'cd' * 32}.v{VIEW_VERSION}.svg.gz"]
    mortara.unlink()  # from now on only the cache can answer

    def no_reading(path: Path):  # noqa: ANN202
        raise AssertionError("the file was read again")

    monkeypatch.setattr("ingest.readers.read.read_ecg", no_reading)
    assert cache.view("cd" * 32, mortara) == first and cache.svg_gz("cd" * 32, mortara) == svg
    # A new drawing version ignores the old files.
    monkeypatch.setattr(ecg_source, "VIEW_VERSION", VIEW_VERSION + 1)
    with pytest.raises(AssertionError, match="read again"):
        cache.view("cd" * 32, mortara)


def test_an_unreadable_file_says_why_and_is_not_cached(tmp_path: Path) -> None:
    cache = ViewCache(tmp_path / "views")
    view = cache.view("ef" * 32, tmp_path / "gone.dcm")
    assert not view.has_signal and "could not be read again" in view.problem and "file not found" in view.problem
    assert not (tmp_path / "views").exists()
    assert cache.svg_gz("ef" * 32, tmp_path / "gone.dcm") is None


def test_a_scan_has_no_drawing(tmp_path: Path) -> None:
    cache = ViewCache(tmp_path / "views")
    scan = Path(shutil.copy(REPO / "samples" / "demo-scan.pdf", tmp_path / "scan.pdf"))
    view = cache.view("12" * 32, scan)
    assert not view.has_signal and view.problem is None and "page image" in view.notes[0]
    assert cache.svg_gz("12" * 32, scan) is None
    # Its page is what people see: a PNG encoded once, on this first request, and kept.
    assert view.has_page
    page = cache.page_png("12" * 32, scan)
    assert page is not None and page.startswith(b"\x89PNG")
    assert list((tmp_path / "views").rglob("*.page.png"))
    scan.unlink()
    assert cache.page_png("12" * 32, scan) == page  # served from the cache, the file is not read again


def test_a_recording_has_no_page_image(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    cache = ViewCache(tmp_path / "views")
    mortara = Path(get_testdata_file("waveform_ecg.dcm"))
    assert cache.page_png("34" * 32, mortara) is None and not cache.view("34" * 32, mortara).has_page


def test_a_longer_record_shows_its_first_10_s_and_says_so(tmp_path: Path) -> None:
    import numpy as np
    import wfdb

    from ingest.ecg import STANDARD_LEADS
    from tests.review.synthetic import twelve_lead

    long = np.concatenate([twelve_lead(1000), twelve_lead(1000)], axis=1)  # 20 s
    wfdb.wrsamp("long", fs=500, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=long.T,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    view = ViewCache(None).view("34" * 32, tmp_path / "long.hea")
    assert view.shown_s == pytest.approx(10.0) and view.recorded_s == pytest.approx(20.0)
    assert view.notes == ["first 10 s of 20 s shown (the part the interpreter read)"]
    short = write_record(tmp_path, "short", 1000, {"patient_id": "X"})
    assert ViewCache(None).view("56" * 32, short).notes == []


def _prepared(root: Path, sha256: str, source: Path) -> Path:
    """The display copy preparation keeps for `source`, as the prepare stage writes it."""
    from ingest.readers.read import read_ecg

    folder = ecg_source.prepared_folder(root, sha256)
    ecg = read_ecg(source)
    ecg_source.save_display_copy(folder, ecg, ecg.pages[0] if ecg.signal is None and ecg.pages else None)
    return folder


def test_a_display_copy_draws_what_the_file_draws_without_the_file(mortara: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from_file = ViewCache(None)
    view, svg = from_file.view("ab" * 32, mortara), gzip.decompress(from_file.svg_gz("ab" * 32, mortara)).decode()
    folder = _prepared(tmp_path / "prepared", "ab" * 32, mortara)
    assert sorted(p.name for p in folder.iterdir()) == ["display.json", "display.npy"]
    mortara.unlink()

    def no_reading(path: Path):  # noqa: ANN202
        raise AssertionError("the file was read")

    monkeypatch.setattr("ingest.readers.read.read_ecg", no_reading)
    from_copy = ViewCache(tmp_path / "views", tmp_path / "prepared")
    assert from_copy.view("ab" * 32, mortara) == view
    copied = read_drawing(gzip.decompress(from_copy.svg_gz("ab" * 32, mortara)).decode())
    original = read_drawing(svg)
    assert [(lead, rhythm) for lead, rhythm, _, _ in copied.traces] == [(lead, rhythm) for lead, rhythm, _, _ in
                                                                       original.traces]
    for (_, _, xs, ys), (_, _, xs0, ys0) in zip(copied.traces, original.traces, strict=True):
        assert np.array_equal(xs, xs0)  # every sample at the recording's own rate, at the same place on the paper
        assert np.abs(np.asarray(ys) - np.asarray(ys0)).max() <= 0.01  # float32: within the 0.01 mm written


def test_a_review_host_without_readers_draws_from_the_copy_and_names_the_extra_otherwise(mortara: Path,
                                                                                         tmp_path: Path) -> None:
    from tests.without_readers import run_without_readers

    _prepared(tmp_path / "prepared", "ab" * 32, mortara)
    scan = Path(shutil.copy(REPO / "samples" / "demo-scan.pdf", tmp_path / "scan.pdf"))
    _prepared(tmp_path / "prepared", "12" * 32, scan)
    code = """
import json, sys
from pathlib import Path
import reports.review.app  # the whole web app imports on such a host
from reports.review.ecg_source import ViewCache
cache = ViewCache(None, Path(sys.argv[1]))
out = {}
for name, sha, source in (("copy", "ab" * 32, sys.argv[2]), ("none", "cd" * 32, sys.argv[2]), ("scan", "12" * 32, sys.argv[3])):
    view = cache.view(sha, Path(source))
    out[name] = [view.has_signal, view.sampling_rate_hz, view.problem, view.device_name]
out["svg"] = len(cache.svg_gz("ab" * 32, Path(sys.argv[2])) or b"")
out["page"] = (cache.page_png("12" * 32, Path(sys.argv[3])) or b"")[:4].hex()
cache.prepared_root.joinpath("12", "12" * 32, "display.page.png").unlink()  # a copy without its page
out["no page"] = cache.view("12" * 32, Path(sys.argv[3])).problem
print(json.dumps(out))
"""
    result = run_without_readers(code, str(tmp_path / "prepared"), str(mortara), str(scan))
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout)
    assert out["copy"][:3] == [True, 1000.0, None] and "el250" in out["copy"][3] and out["svg"] > 10_000
    hint = "pip install 'ecg-worklist[watch]'"
    assert out["none"][0] is False and hint in out["none"][2] and "prepared before display copies" in out["none"][2]
    assert out["scan"][:3] == [False, None, None] and out["page"] == b"\x89PNG".hex()  # the kept page
    assert hint in out["no page"] and "scan's page image" in out["no page"]
