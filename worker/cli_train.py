"""Commands of `ecg-worklist train ...`: the bundled training pipeline (see training/README.md).

    train synth OUT         the bundled synthetic set (simulated 12-lead ECGs with known labels)
    train corpus DIR OUT    training rows from a folder of records (PTB-XL, MIMIC-IV-ECG, manifest CSV)
    train import-release F OUT  the ECG-R1 release's corpus JSONL (`solution` with <|answer|>) as training rows
    train sft / rl          supervised fine-tuning with modality dropout; GRPO/DAPO with evidence rewards
    train eval              held-out figures for a model and the protocol reader, side by side
    train eval-real         the same on real recordings (data/real's test split): rhythm, heart rate, variety
    train export            a checkpoint folder both engines load
    train demo              all of the above on the synthetic set: the shipped demonstration model

Each subcommand lives beside the code it runs (training/*.py) and is registered here;
torch and transformers are imported only when a subcommand runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from worker.cli_errors import needs_readers


@click.group()
@needs_readers("train")
def train() -> None:
    """Train ECG-R1: corpus -> SFT -> RL -> eval -> export (tiny config on CPU, 8B config on GPUs)."""


@train.command("eval")
@click.option("--model", "model_path", required=True, help="ECG-R1 checkpoint folder or hub id (hf engine).")
@click.option("--corpus", "corpus_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Corpus JSONL file (training.rows).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many rows.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("eval.json"), show_default=True,
              help="Where the JSON report goes.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None, help="Generation cap (default 2048).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available).")
def eval_command(model_path: str, corpus_file: Path, split: str, limit: int | None, out: Path,
                 max_new_tokens: int | None, batch_size: int, device: str | None) -> None:
    """Held-out figures for MODEL and the protocol reader, side by side (training/evaluate.py)."""
    from training.evaluate import evaluate, render_markdown, write_report

    report = evaluate(corpus_file, model_path, split=split, limit=limit, max_new_tokens=max_new_tokens,
                      batch_size=batch_size, device=device)
    write_report(report, out)
    click.echo(render_markdown(report))
    click.echo(f"report written to {out}")


@train.command("eval-real")
@click.option("--model", "model_path", required=True, help="ECG-R1 checkpoint folder (hf engine).")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("data/real"), show_default=True, help="The real recordings (references.csv).")
@click.option("--split", type=click.Choice(["test", "dev", "all"]), default="test", show_default=True,
              help="data/real's split: test is held out (never trained on); dev is the training side.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many records.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="JSON report.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--inputs", multiple=True, type=click.Choice(["signal+image", "signal only", "image only"]),
              help="Which inputs the model is given (default: all three).")
def eval_real_command(model_path: str, data_dir: Path, split: str, limit: int | None, out: Path | None,
                      batch_size: int, inputs: tuple[str, ...]) -> None:
    """Rhythm, stated heart rate and label variety of MODEL and the protocol reader on real ECGs (training/evaluate_real.py)."""
    from training.evaluate_real import evaluate_real

    report = evaluate_real(model_path, data_dir, split=split, limit=limit, batch_size=batch_size,
                           **({"inputs": inputs} if inputs else {}))
    if out is not None:
        out.write_text(report.model_dump_json(indent=1) + "\n", encoding="utf-8")
    click.echo(report.table())


@train.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", type=click.IntRange(min=1), default=600, show_default=True, help="How many ECGs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Record i depends only on (seed, i).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
def synth_command(out: Path, count: int, seed: int, workers: int) -> None:
    """The bundled synthetic set: simulated 12-lead ECGs with known labels -> OUT/corpus.jsonl."""
    from training.build import SUMMARY_FILE, CorpusSummary
    from training.synthetic import generate_synthetic_corpus

    path = generate_synthetic_corpus(out, count, seed, workers=workers)
    summary = CorpusSummary.model_validate_json((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    click.echo("\n".join(summary.lines()))
    hr = summary.extra.get("hr_error_bpm")
    if isinstance(hr, dict):
        click.echo(f"measured vs simulated heart rate (sinus rows): mean error {hr.get('mean')} bpm, "
                   f"max {hr.get('max')} bpm, within 2 bpm {hr.get('within_2_bpm')}/{hr.get('rows')}")
    click.echo(f"corpus written to {path}" + (f"; rejected records listed in {out / 'rejected.csv'}"
                                               if summary.rejected else ""))


@train.command("corpus")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--layout", type=click.Choice(["ptb-xl", "mimic-iv-ecg", "manifest"]), default=None,
              help="Folder layout (default: detected from the files present).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many records.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
def corpus_command(directory: Path, out: Path, layout: str | None, limit: int | None, workers: int) -> None:
    """Training rows from a folder of records (PTB-XL, MIMIC-IV-ECG, manifest CSV) -> OUT/corpus.jsonl."""
    from training.corpus import generate_corpus

    try:
        result = generate_corpus(directory, out, layout=layout, limit=limit,  # type: ignore[arg-type]
                                 workers=workers)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo("\n".join(result.summary.lines()))
    click.echo(f"corpus written to {result.path}; rejected records listed in {result.rejected_path}")


@train.command("import-release")
@click.argument("jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--ecg-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the rows' ECG (WFDB) paths are relative to (the release's ROOT_ECG_DIR).")
@click.option("--image-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the rows' image paths are relative to (the release's ROOT_IMAGE_DIR).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many lines.")
def import_release_command(jsonl: Path, out: Path, ecg_root: Path | None, image_root: Path | None,
                           limit: int | None) -> None:
    """The ECG-R1 release's corpus JSONL -> OUT/corpus.jsonl (training/release_corpus.py)."""
    from training.release_corpus import import_release_corpus

    result = import_release_corpus(jsonl, out, ecg_root=ecg_root, image_root=image_root, limit=limit)
    click.echo(f"{result.rows} rows ({result.splits}) written to {result.path}; {result.rejected} rejected "
               f"(listed in {out / 'rejected.csv'})")


@train.command("sft")
@click.option("--config", "config_name", default="sft-tiny-cpu", show_default=True,
              help="A name in training/configs (sft-tiny-cpu, sft-8b-gpu) or a TOML file.")
@click.option("--corpus", "corpus_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--base-model", default=None, help="Start from this checkpoint (overrides the config).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUT/checkpoints.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N training rows.")
def sft_command(config_name: str, corpus_file: Path, out: Path, base_model: str | None, resume: bool,
                limit: int | None) -> None:
    """Supervised fine-tuning with modality dropout (training/sft.py); on GPUs launch `python -m training.sft` with torchrun."""
    from training.config import load_sft_config
    from training.sft import train_sft

    overrides = {"base_model": base_model} if base_model else {}
    result = train_sft(load_sft_config(config_name, **overrides), corpus_file, out, resume=resume, limit=limit)
    losses = [loss for _, loss in result.losses]
    click.echo(f"SFT: {result.steps} steps on {result.rows} rows in {result.wall_s:.0f} s; "
               f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; model in {out}" if losses else f"model in {out}")


@train.command("rl")
@click.option("--config", "config_name", default="rl-tiny-cpu", show_default=True,
              help="A name in training/configs (rl-tiny-cpu, rl-8b-gpu) or a TOML file.")
@click.option("--corpus", "corpus_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", default=None, help="The SFT checkpoint folder (or hub id) to start from (default: the config's base_model).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Cap the number of updates.")
def rl_command(config_name: str, corpus_file: Path, policy: str | None, out: Path, max_steps: int | None) -> None:
    """GRPO with the release's DAPO settings and EDER rewards (training/rl.py)."""
    from training.config import load_rl_config
    from training.rl import train_rl

    overrides = {"max_steps": max_steps} if max_steps else {}
    result = train_rl(load_rl_config(config_name, **overrides), corpus_file, policy, out)
    curve = result.reward_curve()
    click.echo(f"RL: {len(curve)} steps in {result.wall_s:.0f} s; mean reward "
               f"{curve[0]:.3f} -> {curve[-1]:.3f}; model in {out}" if curve else f"model in {out}")


@train.command("export")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--demonstration/--no-demonstration", default=None,
              help="Set config.json ecgwl_demonstration (default: keep what SOURCE says).")
def export_command(source: Path, out: Path, demonstration: bool | None) -> None:
    """A checkpoint folder that both engines load, from an SFT/RL output folder (training/export.py)."""
    from training.export import export_folder

    info = export_folder(source, out, demonstration=demonstration)
    click.echo(f"exported {info.parameters:,} parameters ({info.size_bytes / 2**20:.1f} MB, demonstration="
               f"{info.demonstration}) to {out}: {', '.join(info.files)}")


@train.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demonstration checkpoint goes (default: a new folder demo-model-<UTC time>; "
                   "the shipped one is model/demo).")
@click.option("--minutes-budget", type=click.FloatRange(min=5), default=60.0, show_default=True,
              help="On a busy machine SFT stops at 45% and RL at 65% of this, so eval and export fit.")
@click.option("--config", "config_name", default="demo", show_default=True, help="training/configs/demo.toml or a file.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the corpus and intermediate checkpoints here (default: a temporary folder, removed).")
def demo_command(out: Path | None, minutes_budget: float, config_name: str, work: Path | None) -> None:
    """Synthetic corpus -> SFT -> short RL -> export -> eval: the shipped demonstration model (training/demo.py)."""
    from training.config import load_demo_config
    import datetime as dt

    from training.demo import run_demo

    out = out or Path("demo-model-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S"))
    _require_writable_folder(out)  # an hour of training must not end on a folder it cannot write
    record = run_demo(out, config=load_demo_config(config_name), minutes_budget=minutes_budget, work=work)
    click.echo(record.eval_table)
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in record.stage_seconds.items())
    click.echo(f"demonstration model written to {out} in {record.total_seconds / 60:.1f} min ({stages})")


def _require_writable_folder(out: Path) -> None:
    """Stop with one line unless `out` is (or can be made) a folder this process can write.

    (click's `file_okay=False` already refuses a file.)"""
    from worker.cli_errors import UserFacingError

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserFacingError(f"--out {out}: cannot write there ({error.strerror or error})") from None


commands: list[click.Command] = [train]
