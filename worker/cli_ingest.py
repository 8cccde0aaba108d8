"""Commands of `ecg-worklist` for looking at one ECG file (see worker/cli.py for the table of contents).

    ecg-worklist inspect FILE [--json]   what was read and measured, and what the device said
    ecg-worklist render FILE -o out.png  the 12-lead image the interpreters see (a PDF: page 1)
    ecg-worklist read FILE               the protocol reader's draft (awaits a cardiologist)

A file that cannot be used exits with status 1 and prints `FILE: reason` on stderr, the
same text the watcher writes beside a quarantined file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import click

from ingest.ecg import Ecg
from ingest.errors import IngestError
from ingest.inspect import format_summary, summarize
from ingest.prepare import PreparedEcg, prepare
from ingest.protocol import ProtocolReader
from ingest.readers.read import read_ecg
from worker.cli_errors import needs_readers


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(1)


def _read(path: Path) -> Ecg:
    from worker.settings import Settings  # the operator's input limits (ECGWL_INPUT_LIMITS__...)

    try:
        return read_ecg(path, Settings().input_limits)
    except IngestError as exc:
        _fail(str(exc))


def _prepare(ecg: Ecg) -> PreparedEcg:
    """The model window, the 12-lead image and the measured features (a PDF: its page image)."""
    try:
        return prepare(ecg)
    except IngestError as exc:
        _fail(str(exc))


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@needs_readers()
def inspect_command(file: Path, as_json: bool) -> None:
    """Read FILE (DICOM, WFDB .hea or PDF), prepare it, and summarise what was found."""
    ecg = _read(file)
    prepared = _prepare(ecg)
    summary = summarize(ecg, prepared)
    if as_json:
        click.echo(json.dumps(summary.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        click.echo(format_summary(summary))


@click.command("render")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the PNG.")
@needs_readers()
def render_command(file: Path, output: Path) -> None:
    """Write the 12-lead image of FILE (the page image for a PDF) as a PNG."""
    folder = output.expanduser().absolute().parent
    if not folder.is_dir():  # said before the reading work, not after it
        _fail(f"-o {output}: the folder {folder} does not exist")
    ecg = _read(file)
    prepared = _prepare(ecg)
    image = prepared.page()
    if image is None:
        _fail(f"{file}: nothing to render (no signal and no page image)")
    try:
        image.save(output, format="PNG")
    except OSError as exc:
        _fail(f"-o {output}: cannot write it ({exc.strerror or exc})")
    click.echo(f"{output} ({image.width}x{image.height})")


@click.command("read")
@click.argument("file", type=click.Path(path_type=Path))
@needs_readers()
def read_command(file: Path) -> None:
    """Print the protocol reader's draft interpretation of FILE (a draft: never a signed report)."""
    ecg = _read(file)
    prepared = _prepare(ecg)
    reader = ProtocolReader()
    interpretation = reader.interpret([prepared])[0]
    click.echo(f"DRAFT by {interpretation.interpreter} {interpretation.interpreter_version}: "
               "preliminary, awaiting a cardiologist's signature")
    click.echo(interpretation.raw_text)
    for problem in interpretation.parsed.problems:
        click.echo(f"format problem: {problem}", err=True)


commands: list[click.Command] = [inspect_command, render_command, read_command]
