"""`ecg-worklist inspect/render/read` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from tests.ingest_readers.builders import write_scan_pdf
from worker.cli import main


def test_inspect_json_on_the_mortara_file(mortara_dicom_path: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", str(mortara_dicom_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["source_format"] == "dicom"
    assert summary["sampling_rate_hz"] == 1000.0 and summary["duration_s"] == 10.0
    assert summary["demographics"]["patient_id"] == "642341"
    assert summary["demographics"]["acquired_at"] == "2013-01-25T10:59:19"
    assert summary["device_measurements"]["qt_ms"] == 368
    assert summary["device_statements"] == ["RITMO SINUSALE", "ECG NORMALE"]
    # Prepared and measured: our measurements agree with the device's own within a few ms.
    assert summary["prepared"] is True and summary["has_image"] is True
    ours, device = summary["measurements"], summary["device_measurements"]
    assert abs(ours["hr_bpm"] - device["hr_bpm"]) < 3
    assert abs(ours["qrs_ms"] - device["qrs_ms"]) < 20
    assert abs(ours["qt_ms"] - device["qt_ms"]) < 40


def test_inspect_text_on_the_mortara_file(mortara_dicom_path: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", str(mortara_dicom_path)])
    assert result.exit_code == 0, result.output
    assert "dicom (Mortara Instrument, Inc. el250)" in result.stdout
    assert "12 leads x 10000 samples, 1000 Hz, 10 s" in result.stdout


def test_bad_file_exits_non_zero_with_file_and_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    for command in ("inspect", "render", "read"):
        args = [command, str(empty)] + (["-o", str(tmp_path / "x.png")] if command == "render" else [])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        assert result.stderr == f"{empty}: empty file (0 bytes)\n"
        assert result.stdout == ""


def test_render_writes_a_png_of_a_scan(tmp_path: Path) -> None:
    pdf = write_scan_pdf(tmp_path / "scan.pdf")
    out = tmp_path / "scan.png"
    result = CliRunner().invoke(main, ["render", str(pdf), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.width == 2200  # the PDF page, rendered at most 2200 px wide


def test_render_writes_the_12_lead_image_of_a_signal(tmp_path: Path, mortara_dicom_path: Path) -> None:
    out = tmp_path / "mortara.png"
    result = CliRunner().invoke(main, ["render", str(mortara_dicom_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert result.stdout.strip() == f"{out} ({image.width}x{image.height})"
        assert image.width > image.height  # the landscape paper layout


def test_read_prints_the_protocol_readers_draft(mortara_dicom_path: Path) -> None:
    result = CliRunner().invoke(main, ["read", str(mortara_dicom_path)])
    assert result.exit_code == 0, result.output
    first, _, text = result.stdout.partition("\n")
    assert first.startswith("DRAFT by protocol-reader") and "awaiting a cardiologist" in first
    assert text.startswith("<think>") and "**Step 6: Final Medical Reasoning**" in text
    # The Mortara device itself said "RITMO SINUSALE": the protocol reader agrees.
    answer = text.split("<answer>")[1].split("</answer>")[0]
    assert "sinus rhythm" in answer.split("; ")
    assert result.stderr == ""  # no format problems
