"""The straight format-16 WFDB read gives what `wfdb.rdrecord` gives, bit for bit, or steps aside.

Compared on every WFDB record of data/real (PTB-XL, LUDB, the CinC .mat records...) and on
headers written to exercise WFDB's defaults: an omitted baseline (the ADC zero), a gain of 0
(200), missing samples (NaN), microvolts, a byte offset, a base date and time, comments.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from ingest.readers import wfdb as wfdb_reader
from ingest.readers.wfdb import load_wfdb
from ingest.readers.wfdb_format16 import read_format16

REPO = Path(__file__).resolve().parents[2]
REAL_HEADERS = sorted((REPO / "data" / "real").rglob("*.hea"))
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _by_wfdb(header: Path):  # noqa: ANN202 - a wfdb.Record
    return load_wfdb().rdrecord(str(header.with_suffix("")), physical=True)


def _assert_same_record(header: Path) -> None:
    ours = read_format16(header)
    assert ours is not None, f"{header.name}: expected the straight read"
    theirs = _by_wfdb(header)
    assert ours.p_signal.dtype == theirs.p_signal.dtype == np.float64
    np.testing.assert_array_equal(ours.p_signal, theirs.p_signal, err_msg=header.name)  # NaN where NaN
    assert ours.record_name == theirs.record_name
    assert ours.fs == float(theirs.fs)
    assert ours.sig_name == theirs.sig_name
    assert ours.units == theirs.units
    assert ours.fmt == [str(fmt) for fmt in theirs.fmt]
    assert ours.comments == theirs.comments
    assert ours.base_date == theirs.base_date
    assert ours.base_time == theirs.base_time


def test_the_comparison_covers_the_real_set() -> None:
    assert len(REAL_HEADERS) > 300  # the set this file's comparison stands on


@pytest.mark.parametrize("header", REAL_HEADERS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_real_record_reads_as_wfdb_reads_it(header: Path) -> None:
    _assert_same_record(header)


def _write(folder: Path, signal_lines: list[str], digital: np.ndarray, *, record_line: str = "rec 12 500 {n}",
           offset: int = 0, comments: tuple[str, ...] = ()) -> Path:
    (folder / "rec.dat").write_bytes(b"\x00" * offset + digital.astype("<i2").tobytes())
    lines = [record_line.format(n=digital.shape[0]), *signal_lines, *comments]
    header = folder / "rec.hea"
    header.write_text("\n".join(lines) + "\n")
    return header


def _digital(samples: int = 1000, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, size=(samples, 12)).astype(np.int16)


def test_wfdb_defaults_missing_samples_offset_date_and_comments(tmp_path: Path) -> None:
    digital = _digital()
    digital[10, 3] = -32768  # a missing sample
    digital[500:520, 7] = -32768
    lines = []
    for index, lead in enumerate(LEADS):
        if index == 0:
            spec = "rec.dat 16+40 1000/mV 16 5 0 0 0"  # no baseline: the ADC zero, 5
        elif index == 1:
            spec = "rec.dat 16+40 0(-12)/mV 16 0 0 0 0"  # gain 0: 200
        elif index == 2:
            spec = "rec.dat 16x1+40 4.88(0)/uV 16 0 0 0 0"  # microvolts, one sample per frame
        else:
            spec = f"rec.dat 16+40 {200 + index}.5({index})/mV 16 0 0 0 0"
        lines.append(f"{spec} {lead}")
    header = _write(tmp_path, lines, digital, record_line="rec 12 500 {n} 13:05:09.25 02/11/2021", offset=40,
                    comments=("# Age: 63", "#Sex: F  ", "#  Dx: 426783006"))
    _assert_same_record(header)
    ours = read_format16(header)
    assert ours is not None and np.isnan(ours.p_signal[10, 3]) and ours.p_signal[0, 0] == (digital[0, 0] - 5) / 1000
    assert ours.base_date == dt.date(2021, 11, 2) and ours.base_time == dt.time(13, 5, 9, 250000)


def test_a_record_without_baselines_or_adc_zeros_uses_zero(tmp_path: Path) -> None:
    lines = [f"rec.dat 16 1000/mV {lead}" for lead in LEADS]
    _assert_same_record(_write(tmp_path, lines, _digital(seed=4)))


@pytest.mark.parametrize("change", [
    lambda line: line.replace(" 16 ", " 212 ", 1),  # another format
    lambda line: line.replace(" 16 ", " 16x2 ", 1),  # two samples per frame
    lambda line: line.replace(" 16 ", " 16:3 ", 1),  # skew
    lambda line: line.replace("1000/mV", "1000"),  # units left to wfdb's default
    lambda line: line.replace(" 1000/mV", " "),  # no gain
])
def test_other_layouts_are_left_to_wfdb(tmp_path: Path, change) -> None:  # noqa: ANN001
    lines = [f"rec.dat 16 1000/mV 16 0 0 0 0 {lead}" for lead in LEADS]
    lines[4] = change(lines[4])
    assert read_format16(_write(tmp_path, lines, _digital())) is None


def test_several_signal_files_and_missing_counts_are_left_to_wfdb(tmp_path: Path) -> None:
    lines = [f"rec.dat 16 1000/mV 16 0 0 0 0 {lead}" for lead in LEADS]
    assert read_format16(_write(tmp_path, [*lines[:6], *(line.replace("rec.dat", "other.dat") for line in lines[6:])],
                                _digital())) is None
    assert read_format16(_write(tmp_path, lines, _digital(), record_line="rec 12 500")) is None  # no sample count
    assert read_format16(_write(tmp_path, lines, _digital(), record_line="rec/2 12 500 {n}")) is None  # segments


def test_the_reader_gives_the_same_ecg_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `read_wfdb`: the straight read and wfdb's give equal ECGs (signal, leads, demographics)."""
    sample = [header for header in REAL_HEADERS if "ptbxl" in header.parts][0]
    mat = [header for header in REAL_HEADERS if header.with_suffix(".mat").exists()][0]
    for header in (sample, mat):
        straight = wfdb_reader.read_wfdb(header)
        with monkeypatch.context() as patch:
            patch.setattr(wfdb_reader, "read_format16", lambda path: None)
            by_wfdb = wfdb_reader.read_wfdb(header)
        np.testing.assert_array_equal(straight.signal, by_wfdb.signal)
        assert straight.model_dump(exclude={"signal"}) == by_wfdb.model_dump(exclude={"signal"})
