"""`ecg-worklist validate`: our measurements and protocol reader on the committed real recordings.

    ecg-worklist validate [--split dev|test|all] [--source NAME ...] [--delineator both|ours|neurokit2]
                          [--rate HZ] [--json] [--csv rows.csv] [--write-baseline]

Prints, per source and overall, the wave boundaries against LUDB's cardiologists, the global
measurements against the recording devices' own values and the annotated boundaries, and
the protocol reader's labels against the reference statements, beside neurokit2's dwt
delineator (installed with the `test` extra, for validation only). `--rate 250` presents every
record as a 250 Hz archive would hold it (resampled, then prepared as any 250 Hz recording): how far
the figures hold at another recording rate; the baseline is for the records as recorded. The work is in
`ingest.validation`; the set and its licences are described in data/real/MANIFEST.md.
Exit status 1 when a held figure is worse than data/real/baseline.json (--check-baseline).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from tqdm import tqdm

from ingest.validation.evaluate import evaluate
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.report import compare_with_baseline, format_text, write_baseline, write_rows_csv
from ingest.validation.run import NEUROKIT2, NEUROKIT2_LEADS, OURS
from worker.cli_errors import needs_readers

_DELINEATORS = {"both": (OURS, NEUROKIT2), "ours": (OURS,), "neurokit2": (NEUROKIT2,)}


@click.command("validate")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
              show_default=True, help="The real-data set (references.csv and the records).")
@click.option("--split", type=click.Choice(["dev", "test", "all"]), default="all", show_default=True,
              help="dev: tune on it; test: held out for reporting.")
@click.option("--source", "sources", multiple=True, help="Only these sources (repeatable), e.g. ludb.")
@click.option("--delineator", type=click.Choice(list(_DELINEATORS)), default="both", show_default=True)
@click.option("--neurokit2-leads", default=",".join(NEUROKIT2_LEADS), show_default=True,
              help="Leads neurokit2 delineates (comma-separated, or 'all').")
@click.option("--rate", "rate_hz", type=click.FloatRange(min=100.0, max=10000.0),
              help="Resample every record to this rate first, as a recording made at it (e.g. 250).")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON instead of tables.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one row per record and delineator here (to find the worst records).")
@click.option("--check-baseline", is_flag=True, help="Exit 1 if a figure is worse than data/real/baseline.json.")
@click.option("--write-baseline", is_flag=True, help="Rewrite data/real/baseline.json with this run's figures.")
@needs_readers()
def validate_command(data_dir: Path, split: str, sources: tuple[str, ...], delineator: str, neurokit2_leads: str,
                     rate_hz: float | None, as_json: bool, csv_path: Path | None, check_baseline: bool, write_baseline_flag: bool) -> None:
    """Measure and read every record of the real-data set and print how the figures compare."""
    from ingest.ecg import STANDARD_LEADS

    leads = STANDARD_LEADS if neurokit2_leads == "all" else tuple(neurokit2_leads.split(","))
    unknown = [lead for lead in leads if lead not in STANDARD_LEADS]
    if unknown:
        raise click.BadParameter(f"unknown lead(s) {', '.join(unknown)}", param_hint="--neurokit2-leads")
    if rate_hz is not None and (check_baseline or write_baseline_flag):
        raise click.UsageError("the baseline holds the records as recorded: leave out --rate")
    references = load_references(data_dir, split, list(sources) or None)
    if not references:
        raise click.UsageError(f"no records in {data_dir} for split {split} and sources {list(sources) or 'all'}")
    with tqdm(total=len(references), desc="validate", unit="ecg", disable=as_json) as bar:
        evaluation = evaluate(references, data_dir, split, _DELINEATORS[delineator], leads,
                              progress=lambda _key: bar.update(1), rate_hz=rate_hz)
    if as_json:
        click.echo(json.dumps(evaluation.model_dump(mode="json", exclude={"rows"}), indent=1))
    else:
        click.echo(format_text(evaluation))
    if csv_path is not None:
        write_rows_csv(evaluation.rows, csv_path)
        click.echo(f"per-record rows: {csv_path}", err=True)
    baseline_path = data_dir / "baseline.json"
    if write_baseline_flag:
        if sources:
            raise click.UsageError("--write-baseline needs the whole set: leave out --source")
        write_baseline(evaluation, baseline_path)
        click.echo(f"baseline written: {baseline_path}", err=True)
    elif check_baseline:
        worse = compare_with_baseline(evaluation, json.loads(baseline_path.read_text(encoding="utf-8")))
        for line in worse:
            click.echo(f"worse than the baseline: {line}", err=True)
        if worse:
            raise SystemExit(1)
        click.echo("no figure is worse than the baseline", err=True)


# click passes --write-baseline as `write_baseline`, which would shadow the imported function.
validate_command.params[-1].name = "write_baseline_flag"

commands: list[click.Command] = [validate_command]
