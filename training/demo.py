"""The demonstration model: synthetic corpus -> SFT -> short RL -> export -> eval, on a CPU.

    ecg-worklist train demo [--out model/demo] [--minutes-budget 30] [--work DIR]
    run_demo(out=Path("model/demo")) -> DemoRecord

Its output is the embedded default model of a fresh install (`model/demo`, loaded when
`ECGWL_INTERPRETER=model` and no `ECGWL_MODEL_PATH`): a tiny ECG-R1 (~2M parameters, a few
MB) with its own BPE tokenizer, `ecgwl_demonstration: true` in config.json (every
interpretation it makes starts with "DEMONSTRATION MODEL - NOT FOR CLINICAL USE"), the
held-out evaluation next to the protocol reader's (eval.json), the training record
(training_log.json) and a README.md with the table, the command, the seed and the wall times.

Stages and their budget: the sizes in training/configs/demo.toml, sft-tiny-cpu.toml and
rl-tiny-cpu.toml are chosen for ~15-20 minutes on 2 cores. On a busy machine SFT stops
after the step that passes 45% of `--minutes-budget` and RL between steps at 65%, so
evaluation and export always fit; the record and the README say when that happened.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from pydantic import BaseModel, Field

from model.engines.base import DEMONSTRATION_BANNER
from training.config import DemoConfig, load_demo_config, load_rl_config, load_sft_config

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "model" / "demo"
MAX_DEMO_BYTES = 20 * 1024 * 1024  # the shipped folder stays under ~20 MB
SFT_BUDGET_SHARE = 0.45  # SFT stops after the step that passes this share of the budget (busy machines)
RL_BUDGET_SHARE = 0.65  # RL stops between steps once this share of the budget is spent
COMMAND = "ecg-worklist train demo --out model/demo"


class DemoRecord(BaseModel):
    """What the demo run did, written to training_log.json beside the weights."""

    notice: str = f"{DEMONSTRATION_BANNER}: a tiny model trained on simulated ECGs to show the pipeline."
    command: str = COMMAND
    config: DemoConfig
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    total_seconds: float = 0.0
    corpus_rows: dict[str, int] = Field(default_factory=dict)
    sft_losses: list[tuple[int, float]] = Field(default_factory=list)
    sft_parameters: dict[str, int] = Field(default_factory=dict)
    sft_steps: int = 0
    sft_stopped_by_time: bool = False
    tower_pretraining: dict[str, object] = Field(default_factory=dict)  # training/tower.py's record
    vision_pretraining: dict[str, object] = Field(default_factory=dict)  # training/vision_tower.py's record
    rl_steps: list[dict[str, object]] = Field(default_factory=list)
    rl_stopped_by_time: bool = False
    export: dict[str, object] = Field(default_factory=dict)
    eval_table: str = ""
    machine: dict[str, object] = Field(default_factory=dict)


def _machine() -> dict[str, object]:
    import os

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def run_demo(out: Path = DEMO_DIR, *, config: DemoConfig | None = None, minutes_budget: float = 30.0,
             work: Path | None = None, keep_work: bool = False, progress: bool = True) -> DemoRecord:
    """Run every stage and write the demonstration checkpoint to `out`."""
    from training.evaluate import evaluate, render_markdown, write_report
    from training.export import export_checkpoint, folder_size
    from training.rl import train_rl
    from training.rows import read_rows
    from training.sft import load_model, train_sft
    from training.synthetic import generate_synthetic_corpus

    config = config or load_demo_config()
    budget_s = minutes_budget * 60.0
    started = time.monotonic()
    work_dir = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="ecgwl-demo-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    record = DemoRecord(config=config, machine=_machine())

    def stage(name: str, since: float) -> float:
        now = time.monotonic()
        record.stage_seconds[name] = round(now - since, 1)
        return now

    try:
        t = time.monotonic()
        corpus = generate_synthetic_corpus(work_dir / "corpus", config.corpus_count, seed=config.seed,
                                           progress=progress, workers=2)
        if config.real_dev:
            corpus = with_real_dev(corpus, REPO_ROOT / config.real_dev, work_dir, progress=progress)
        for split in ("train", "val", "test"):
            record.corpus_rows[split] = sum(1 for _ in read_rows(corpus, split=split))
        t = stage("corpus", t)

        sft_time = max(60.0, SFT_BUDGET_SHARE * budget_s - (time.monotonic() - started))
        sft_config = load_sft_config(config.sft, seed=config.seed)
        sft = train_sft(sft_config, corpus, work_dir / "sft", progress=progress, time_limit_s=sft_time)
        record.sft_losses, record.sft_parameters = sft.losses, sft.parameters
        record.sft_steps, record.sft_stopped_by_time = sft.steps, sft.stopped_by_time
        tower_file = work_dir / "sft" / "tower_pretraining.json"
        vision_file = work_dir / "sft" / "vision_pretraining.json"
        if tower_file.is_file():
            record.tower_pretraining = json.loads(tower_file.read_text())
        if vision_file.is_file():
            record.vision_pretraining = json.loads(vision_file.read_text())
        t = stage("sft", t)

        model, processor = load_model(work_dir / "sft")
        rl_time = max(0.0, RL_BUDGET_SHARE * budget_s - (time.monotonic() - started))
        # RL keeps the towers SFT froze frozen (a pretrained ViT is not retrained by a few reward steps).
        rl_config = load_rl_config(config.rl, seed=config.seed, train_ecg_tower=sft_config.train_ecg_tower,
                                   train_vision_tower=sft_config.train_vision_tower)
        rl = train_rl(rl_config, corpus, work_dir / "sft", work_dir / "rl",
                      time_limit_s=rl_time, progress=progress, model=model, processor=processor)
        record.rl_steps = [asdict(step) for step in rl.steps]
        record.rl_stopped_by_time = rl.stopped_by_time
        t = stage("rl", t)

        info = export_checkpoint(model.eval(), processor, out, demonstration=True)
        record.export = info.model_dump()
        t = stage("export", t)

        report = evaluate(corpus, out, split="test", limit=config.eval_limit,
                          max_new_tokens=config.eval_max_new_tokens, batch_size=config.eval_batch_size,
                          device="cpu", progress=progress)
        write_report(report, out / "eval.json")
        record.eval_table = render_markdown(report)
        stage("eval", t)
    finally:
        if not keep_work and work is None:
            shutil.rmtree(work_dir, ignore_errors=True)

    record.total_seconds = round(time.monotonic() - started, 1)
    (out / "training_log.json").write_text(record.model_dump_json(indent=1) + "\n", encoding="utf-8")
    (out / "README.md").write_text(demo_readme(record), encoding="utf-8")
    size = folder_size(out)
    record.export["size_bytes"] = size
    if size > MAX_DEMO_BYTES:
        raise RuntimeError(f"{out} is {size / 2**20:.1f} MB, over the {MAX_DEMO_BYTES / 2**20:.0f} MB the project ships")
    return record


def real_dev_manifest(data_dir: Path, out: Path) -> Path:
    """A manifest CSV (training.corpus layout) of data/real's DEV records, all in the train split.

    The test split is never listed: it is what `train eval-real` reports on. Labels are the
    references' codes mapped to the vocabulary (`ingest.validation.labels`); a record whose codes
    map to nothing gets the protocol reader's labels (empty column)."""
    import csv

    from ingest.validation.references import load_references

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels", "split"])
        for reference in load_references(data_dir, split="dev"):
            if reference.split != "dev":  # belt and braces: the held-out split never trains
                raise ValueError(f"{reference.key}: not a dev record")
            writer.writerow([str(reference.file(data_dir).resolve()), ";".join(reference.labels.labels), "train"])
    return out


def with_real_dev(synthetic: Path, data_dir: Path, work_dir: Path, *, progress: bool = True) -> Path:
    """One corpus file holding the synthetic rows and data/real's dev rows (train split only)."""
    from training.corpus import generate_corpus
    from training.rows import read_rows, write_rows

    manifest = real_dev_manifest(data_dir, work_dir / "real" / "manifest.csv")
    real = generate_corpus(manifest, work_dir / "real", layout="manifest", progress=progress, workers=2)
    merged = work_dir / "all" / "corpus.jsonl"

    def moved(path: Path, rows):  # paths stay relative to the merged file's folder
        prefix = "../" + path.parent.name + "/"
        for row in rows:
            yield row.model_copy(update={
                "signal_path": prefix + row.signal_path if row.signal_path else None,
                "image_path": prefix + row.image_path if row.image_path else None})

    write_rows(merged, [*moved(synthetic, read_rows(synthetic)), *moved(real.path, read_rows(real.path))])
    return merged


def _config_file(name: str) -> str:
    """How a stage's config is shown: a name under training/configs, or the file given as a path."""
    return name if name.endswith(".toml") else f"training/configs/{name}.toml"


def _tower_line(tower: dict[str, object]) -> str:
    if not tower:
        return "not run"
    losses = tower.get("losses") or [0.0]
    return (f"{len(losses)} epochs in {tower.get('seconds')} s, loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
            f"per-label accuracy on the training rows {tower.get('train_accuracy')} (always-majority "
            f"{tower.get('majority_accuracy')}), heart-rate error {tower.get('hr_error_sd')} SD"
            + (f"; per-patch beat loss {beats[0]:.3f} -> {beats[-1]:.3f}" if (beats := tower.get("beat_losses")) else ""))


def _quarter(values: list[float], *, first: bool) -> str:
    if not values:
        return "n/a"
    n = max(1, len(values) // 4)
    part = values[:n] if first else values[-n:]
    return f"{sum(part) / len(part):.3f}"


def _curve(values: list[float]) -> str:
    return " -> ".join(f"{v:.3f}" for v in values) if values else "n/a"


def _trained_on(record: DemoRecord) -> str:
    if record.config.real_dev:
        return (f"simulated 12-lead ECGs and the development split of the real recordings in "
                f"`{record.config.real_dev}` (their held-out test split is never trained on)")
    return "simulated 12-lead ECGs only"


def _real_rows(record: DemoRecord) -> str:
    return f" + the dev split of `{record.config.real_dev}`" if record.config.real_dev else ""


def demo_readme(record: DemoRecord) -> str:
    """model/demo/README.md: what this is, how it was made, what it scored."""
    losses = [loss for _, loss in record.sft_losses]
    rewards = [float(s["reward_mean"]) for s in record.rl_steps]
    stages = ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in record.stage_seconds.items())
    size_mb = float(record.export.get("size_bytes", 0)) / 2**20
    first_last = (f"{sum(losses[:3]) / len(losses[:3]):.3f} (first 3 logged steps) -> "
                  f"{sum(losses[-3:]) / len(losses[-3:]):.3f} (last 3)") if losses else "n/a"
    return f"""# model/demo: the demonstration model

**{DEMONSTRATION_BANNER}.** A tiny ECG-R1 ({record.export.get('parameters', 0):,} parameters, {size_mb:.1f} MB)
trained on {_trained_on(record)}, to show the whole pipeline working on a laptop. It is
the embedded default of a fresh install, and `config.json` says `"ecgwl_demonstration": true`,
so every interpretation it makes starts with "{DEMONSTRATION_BANNER}". Its readings are not
medical advice; production points `ECGWL_MODEL_PATH` at the released ECG-R1 checkpoint.

Reproduce (same seed, same sizes; wall times vary with the machine and its load):

    {record.command}

## How it was made

- corpus: {record.corpus_rows} rows: {record.config.corpus_count} simulated (`training.synthetic`, seed {record.config.seed}){_real_rows(record)}
- ECG tower pretraining (`training/tower.py`, the tiny stand-in for ECG-CoCa, then frozen):
  {_tower_line(record.tower_pretraining)}
- ViT pretraining (`training/vision_tower.py`, the tiny stand-in for Qwen3-VL's pretrained ViT, then frozen):
  {_tower_line(record.vision_pretraining)}
- SFT (`{_config_file(record.config.sft)}`): {record.sft_steps} steps{' (stopped by the time budget)' if record.sft_stopped_by_time else ''}, training loss {first_last};
  parameters {record.sft_parameters}
- RL (`{_config_file(record.config.rl)}`, GRPO/DAPO): {len(rewards)} steps, mean EDER reward per step
  {_curve(rewards)}{' (stopped by the time budget)' if record.rl_stopped_by_time else ''};
  mean of the first quarter of the steps {_quarter(rewards, first=True)}, of the last quarter {_quarter(rewards, first=False)}
- wall time: {stages}; total {record.total_seconds / 60:.1f} min on {record.machine.get('cpus')} CPUs
  ({record.machine.get('platform')}, torch {record.machine.get('torch')})

## Held-out evaluation (demonstration model vs the protocol reader)

{record.eval_table}
The protocol reader wrote the training answers from measured features, so agreeing with the
reference is easy for it; the model has to learn that reading from the signal and the image.

Files: `config.json`, `generation_config.json`, `model.safetensors`, the tokenizer
(`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`), `preprocessor_config.json`,
`eval.json` (the full report), `training_log.json` (this run's record).
"""


__all__ = ["COMMAND", "DEMO_DIR", "DemoRecord", "demo_readme", "run_demo"]
