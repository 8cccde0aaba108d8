"""Supervised fine-tuning of ECG-R1 with Interleaved Modality Dropout (transformers `Trainer`).

    train_sft(load_sft_config("sft-tiny-cpu"), corpus_file, out_dir) -> SftResult
    python -m training.sft --config sft-8b-gpu --corpus corpus.jsonl --out runs/sft   (torchrun on GPUs)

One training example per corpus row: the row's signal (.npy) and image (.png), with IMD
applied ONCE per sample by an rng seeded from (seed, epoch, row index), so the modality mix
of every epoch is reproducible and a resumed run sees the same prompts it would have seen.
The collator builds inputs with `EcgR1Processor(samples, targets=answers)`: labels are the
assistant tokens (the answer + `<|im_end|>`) and -100 everywhere else, so the loss covers
only what the model must write.

What trains is the release's recipe (`model.modeling_ecg_r1.freeze_for_training`: LLM,
ECG projector and Qwen3-VL merger train; ECG tower and ViT frozen) unless the config
unfreezes a tower: the tiny CPU config does, because its towers are random, not pretrained
(see training/README.md "SFT").

Checkpoints: `out/checkpoints/checkpoint-N` (Trainer's own: weights, optimizer, scheduler,
rng) every `save_steps`; `resume=True` continues from the last one. The processor is saved
to `out/` before the first step, so a resumed run reads the same tokenizer; the final model
is saved to `out/` too.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import GenerationConfig, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

from model.checkpoint import load_ecg_r1
from model.dropout import apply_modality_dropout
from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration, EcgR1Config, freeze_for_training
from model.processing_ecg_r1 import IGNORE_INDEX, INSTRUCTION, SYSTEM_PROMPT, EcgR1Processor, EcgR1Sample, \
    make_image_processor
from model.tiny import build_tiny_tokenizer, tiny_config
from training.config import SftConfig, TinyModelShape, load_sft_config, resolve_deepspeed
from training.rows import TrainingRow, read_rows, resolve

log = logging.getLogger(__name__)


# -- inputs of one row ---------------------------------------------------------------------

def load_sample(row: TrainingRow, corpus_file: Path) -> EcgR1Sample:
    """The row's signal and image (whichever it has), before dropout; default prompt order."""
    signal_path, image_path = resolve(corpus_file, row.signal_path), resolve(corpus_file, row.image_path)
    signal = np.load(signal_path).astype(np.float32) if signal_path is not None else None
    image = None
    if image_path is not None:
        with Image.open(image_path) as opened:
            image = opened.convert("RGB")
    if signal is None and image is None:
        raise ValueError(f"row {row.id}: neither a signal nor an image")
    return EcgR1Sample(signal=signal, image=image)


def imd_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The dropout rng of one (epoch, sample): a pure function of the three, hence resumable."""
    return random.Random(f"imd:{seed}:{epoch}:{index}")


_STEP_ONE = re.compile(r"\*\*Step 1:[^*]*\*\*\n(.*?)(?=\n\s*\*\*Step 2|</think>)", re.DOTALL)
_ANSWER = re.compile(r"<answer>.*?</answer>", re.DOTALL)


def brief_target(answer: str) -> str:
    """The curriculum's first target: Step 1 (rate, rhythm) and the answer, in the output format.

    Nearly every token of it depends on the ECG (the heart rate, the rhythm, the labels), where
    the full reading is mostly fixed wording; a tiny model trained on the full text first learns
    the wording and ignores its input. A text without Step 1 or an answer is kept whole."""
    step, labels = _STEP_ONE.search(answer), _ANSWER.search(answer)
    if step is None or labels is None:
        return answer
    return f"<think>\n**Step 1: Technical, Rate & Rhythm**\n{step.group(1).strip()}\n</think>\n{labels.group(0)}"


def augmented_signal(sample: EcgR1Sample, seed: int, epoch: int, index: int) -> EcgR1Sample:
    """The sample with its signal varied for one (epoch, row), as the tiny tower's pretraining varies it
    (`training.tower.augment_batch_turned`: turned round in time, noise, baseline wander) but without
    the gain, since the target's voltage statements rest on the amplitudes. The target's rate, rhythm and
    intervals stay true. Why: a row whose ECG looks the same every epoch can be answered by recognising
    the row; one that moves cannot (issue 17). A pure function of its arguments, hence resumable."""
    from training.tower import augment_batch_turned

    # Seeded from a text as `imd_rng` is (random.Random hashes a str seed stably, unlike hash()).
    generator = torch.Generator().manual_seed(random.Random(f"sft-augment:{seed}:{epoch}:{index}").getrandbits(63))
    signal = torch.from_numpy(np.ascontiguousarray(sample.signal, dtype=np.float32))[None]
    varied, _ = augment_batch_turned(signal, generator, gain=False)
    return dataclasses.replace(sample, signal=varied[0].numpy())


class SftDataset(torch.utils.data.Dataset):
    """Rows of one corpus split as (sample after IMD, target text). `set_epoch` picks the epoch's dropout
    (and, for the first `brief_epochs` epochs, the brief curriculum target)."""

    def __init__(self, corpus_file: Path, rows: Sequence[TrainingRow], *, seed: int, p_drop: float,
                 p_swap: float, brief_epochs: float = 0.0, augment_signal: bool = False) -> None:
        self.corpus_file = corpus_file
        self.rows = list(rows)
        self.seed, self.p_drop, self.p_swap = seed, p_drop, p_swap
        self.brief_epochs = brief_epochs
        self.augment_signal = augment_signal
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        sample = load_sample(row, self.corpus_file)
        if self.augment_signal and sample.signal is not None:
            sample = augmented_signal(sample, self.seed, self.epoch, index)
        sample = apply_modality_dropout(sample, imd_rng(self.seed, self.epoch, index), self.p_drop, self.p_swap)
        target = brief_target(row.answer) if self.epoch < self.brief_epochs else row.answer
        return {"sample": sample, "target": target, "index": index}


class ImdEpochCallback(TrainerCallback):
    """Tell the dataset which epoch starts (also after a resume part-way through an epoch)."""

    def __init__(self, dataset: SftDataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.dataset.set_epoch(int((state.epoch or 0.0) + 1e-6))


class TimeLimitCallback(TrainerCallback):
    """Stop after the step during which `seconds` ran out (the demo's budget on a busy machine);
    the model is saved as it is then."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.stopped = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if time.monotonic() > self.deadline:
            control.should_training_stop = True
            self.stopped = True


@dataclass
class SftCollator:
    """Right-padded model inputs with labels on the assistant tokens only."""

    processor: EcgR1Processor
    max_length: int
    with_row_index: bool = False  # the aux ECG loss looks its targets up by dataset index


    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.processor([e["sample"] for e in examples], targets=[e["target"] for e in examples],
                               padding_side="right")
        data = dict(batch)
        if data["input_ids"].shape[1] > self.max_length:
            prompt_only = (data["labels"] == IGNORE_INDEX) & data["attention_mask"].bool()
            if prompt_only[:, self.max_length:].any():
                raise ValueError(f"a prompt is longer than max_length {self.max_length}: cutting it would cut "
                                 "its image or ECG tokens")
            # Only answer tokens lie past max_length: cut them (the release truncates at 4096 too).
            for key in ("input_ids", "attention_mask", "labels", "mm_token_type_ids"):
                data[key] = data[key][:, :self.max_length]
        if self.with_row_index:
            data["row_index"] = torch.tensor([e["index"] for e in examples])
        return data


# -- the model -----------------------------------------------------------------------------

def corpus_texts(rows: Sequence[TrainingRow]) -> list[str]:
    """What the tiny tokenizer is trained on: the prompts and every answer."""
    return [SYSTEM_PROMPT, INSTRUCTION] + [row.answer for row in rows]


def build_tiny(texts: Sequence[str], shape: TinyModelShape, *,
               demonstration: bool = False) -> tuple[ECGR1ForConditionalGeneration, EcgR1Processor]:
    """A tiny ECG-R1 (model.tiny widths, `shape.image_patch_size` image patches) with a tokenizer from `texts`."""
    tokenizer = build_tiny_tokenizer(texts, vocab_size=shape.bpe_vocab_size)
    processor = EcgR1Processor(tokenizer, make_image_processor(patch_size=shape.image_patch_size))
    torch.manual_seed(shape.seed)
    model = ECGR1ForConditionalGeneration(shaped_tiny_config(tokenizer, shape, demonstration=demonstration))
    set_generation_config(model, processor)
    return model, processor


def shaped_tiny_config(tokenizer: PreTrainedTokenizerBase, shape: TinyModelShape, *,
                       demonstration: bool = False) -> EcgR1Config:
    """model.tiny's configuration with the shape's image patch size, attention heads and decoder layers."""
    values = tiny_config(tokenizer, demonstration=demonstration).to_dict()
    values["vision_config"]["patch_size"] = shape.image_patch_size
    values["text_config"]["num_attention_heads"] = shape.text_attention_heads
    values["text_config"]["num_hidden_layers"] = shape.text_layers
    return EcgR1Config.from_dict(values)


def set_generation_config(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor) -> None:
    """Greedy, stop at <|im_end|>/<|endoftext|>, as the engines decode."""
    model.generation_config = GenerationConfig(eos_token_id=processor.stop_token_ids,
                                               pad_token_id=processor.tokenizer.pad_token_id,
                                               do_sample=False, max_new_tokens=2048)


def load_model(path: str | Path, *, ecg_tower_path: str | None = None, bf16: bool = False,
               ) -> tuple[ECGR1ForConditionalGeneration, EcgR1Processor]:
    """An ECG-R1 checkpoint (ours or the release) and its processor, float32 or bfloat16, on CPU.

    The Trainer moves it to the GPU (or DeepSpeed shards it)."""
    model = load_ecg_r1(path, ecg_tower_path=ecg_tower_path, dtype=torch.bfloat16 if bf16 else torch.float32)
    folder = Path(path) if Path(path).is_dir() else None
    processor = EcgR1Processor.from_pretrained(folder or _hub_folder(str(path)), ecg_num_tokens=model.config.ecg_num_tokens)
    set_generation_config(model, processor)
    return model, processor


def _hub_folder(hub_id: str) -> Path:
    from model.checkpoint import resolve_checkpoint

    return resolve_checkpoint(hub_id)


def set_trainable(model: ECGR1ForConditionalGeneration, *, train_ecg_tower: bool,
                  train_vision_tower: bool) -> dict[str, int]:
    """The release's freezing, then the towers the config asks to train. Returns parameter counts."""
    freeze_for_training(model)
    if train_ecg_tower:
        model.model.ecg_tower.requires_grad_(True)
    if train_vision_tower:
        model.model.visual.requires_grad_(True)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad)}


# -- training ------------------------------------------------------------------------------

@dataclass
class SftResult:
    out_dir: Path
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, logged training loss)
    parameters: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    wall_s: float = 0.0
    rows: int = 0
    stopped_by_time: bool = False
    aux_losses: list[float] = field(default_factory=list)  # aux ECG loss per step (unweighted), when on


def training_arguments(config: SftConfig, out_dir: Path, *, progress: bool) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps (transformers 5)
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler_type,
        max_grad_norm=config.max_grad_norm,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        deepspeed=resolve_deepspeed(config),
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps > 0 else "no",
        save_steps=max(config.save_steps, 1),
        save_total_limit=config.save_total_limit,
        dataloader_num_workers=config.dataloader_num_workers,
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,  # the examples are our own dicts, not model kwargs
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
    )


def prepare_model(config: SftConfig, corpus_file: Path, rows: Sequence[TrainingRow], out_dir: Path,
                  *, resume: bool) -> tuple[ECGR1ForConditionalGeneration, EcgR1Processor]:
    """The starting model and processor. A tiny model's tokenizer is trained once and saved to
    out_dir; a resumed run reads it back so its token ids match the checkpoint."""
    if config.base_model is not None:
        # bf16 weights only under DeepSpeed, which keeps fp32 master weights for the optimizer;
        # elsewhere `bf16` is autocast over fp32 weights (updates at lr 2e-5 would round away in bf16).
        return load_model(config.base_model, ecg_tower_path=config.ecg_tower_path,
                          bf16=config.bf16 and config.deepspeed is not None)
    saved = out_dir / "tokenizer.json"
    if resume and saved.is_file():
        processor = EcgR1Processor.from_pretrained(out_dir)
        torch.manual_seed(config.tiny.seed)
        model = ECGR1ForConditionalGeneration(shaped_tiny_config(processor.tokenizer, config.tiny))
        set_generation_config(model, processor)
        return model, processor
    model, processor = build_tiny(corpus_texts(rows), config.tiny)
    processor.save_pretrained(out_dir)
    if config.pretrain_ecg_tower_epochs > 0:
        from training.tower import pretrain_ecg_tower

        record = pretrain_ecg_tower(model.model.ecg_tower, corpus_file, rows, epochs=config.pretrain_ecg_tower_epochs,
                                    seed=config.seed, augment=config.pretrain_ecg_tower_augment,
                                    stretch=config.pretrain_ecg_tower_stretch, beats=config.pretrain_ecg_tower_beats,
                                    pool=config.pretrain_ecg_tower_pool)
        (out_dir / "tower_pretraining.json").write_text(record.model_dump_json(indent=1) + "\n")
        log.info("ECG tower pretrained: label accuracy %.3f (majority %.3f) in %.0f s", record.train_accuracy,
                 record.majority_accuracy, record.seconds)
    if config.pretrain_vision_tower_epochs > 0:
        from training.vision_tower import pretrain_vision_tower

        record = pretrain_vision_tower(model, processor, corpus_file, rows, epochs=config.pretrain_vision_tower_epochs,
                                       seed=config.seed, augment=config.pretrain_vision_tower_augment)
        (out_dir / "vision_pretraining.json").write_text(record.model_dump_json(indent=1) + "\n")
        log.info("ViT pretrained: label accuracy %.3f (majority %.3f) in %.0f s", record.train_accuracy,
                 record.majority_accuracy, record.seconds)
    return model, processor


def train_sft(config: SftConfig, corpus_file: Path, out_dir: Path, *, resume: bool | str = False,
              split: str = "train", limit: int | None = None, progress: bool = True,
              time_limit_s: float | None = None) -> SftResult:
    """Fine-tune on the corpus's `split` rows and save the model + processor to `out_dir`.

    `time_limit_s` ends training early (after the current step) once exceeded; the result says so."""
    started = time.monotonic()
    corpus_file, out_dir = Path(corpus_file), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(read_rows(corpus_file, split=split))[:limit]
    if not rows:
        raise ValueError(f"{corpus_file}: no {split} rows")
    # TrainingArguments first: under DeepSpeed ZeRO-3 it must exist before the model is built.
    args = training_arguments(config, out_dir, progress=progress)
    model, processor = prepare_model(config, corpus_file, rows, out_dir, resume=bool(resume))
    counts = set_trainable(model, train_ecg_tower=config.train_ecg_tower,
                           train_vision_tower=config.train_vision_tower)
    model.config.use_cache = False
    log.info("SFT on %d rows: %d trainable / %d frozen parameters", len(rows), counts["trainable"], counts["frozen"])

    dataset = SftDataset(corpus_file, rows, seed=config.seed, p_drop=config.p_drop, p_swap=config.p_swap,
                         brief_epochs=config.brief_epochs, augment_signal=config.sft_augment_signal)
    callbacks: list[TrainerCallback] = [ImdEpochCallback(dataset)]
    timer = TimeLimitCallback(time_limit_s - (time.monotonic() - started)) if time_limit_s is not None else None
    if timer is not None:
        callbacks.append(timer)
    aux = config.aux_ecg_weight > 0
    common: dict[str, Any] = dict(model=model, args=args, train_dataset=dataset,
                                  data_collator=SftCollator(processor, config.max_length, with_row_index=aux),
                                  processing_class=processor.tokenizer, callbacks=callbacks)
    if aux:
        from training.aux_ecg import AuxEcgTargets, AuxEcgTrainer

        trainer: Trainer = AuxEcgTrainer(**common, aux=AuxEcgTargets.from_rows(rows), weight=config.aux_ecg_weight,
                                         positions=config.aux_ecg_positions, at=config.aux_ecg_at,
                                         rate_digits_weight=config.aux_rate_digits_weight)
    elif config.digit_loss_weight != 1.0:
        from training.digit_loss import DigitWeightedTrainer, digit_token_ids

        trainer = DigitWeightedTrainer(**common, digit_ids=digit_token_ids(processor.tokenizer),
                                       weight=config.digit_loss_weight)
    else:
        trainer = Trainer(**common)
    checkpoint = resume if isinstance(resume, str) else (bool(resume) and _has_checkpoint(out_dir)) or None
    trainer.train(resume_from_checkpoint=checkpoint)

    model.config.use_cache = True
    trainer.save_model(str(out_dir))
    processor.save_pretrained(out_dir)
    losses = [(int(entry["step"]), float(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry]
    aux_losses = list(getattr(trainer, "aux_losses", []))
    return SftResult(out_dir=out_dir, losses=losses, parameters=counts, steps=trainer.state.global_step,
                     aux_losses=aux_losses,
                     wall_s=time.monotonic() - started, rows=len(rows),
                     stopped_by_time=timer is not None and timer.stopped)


def _has_checkpoint(out_dir: Path) -> bool:
    return any((out_dir / "checkpoints").glob("checkpoint-*"))


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m training.sft`: the entry point torchrun/accelerate launch on GPUs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="sft-8b-gpu", help="a name in training/configs or a TOML path")
    parser.add_argument("--corpus", required=True, type=Path, help="corpus JSONL (training.rows)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT")
    parser.add_argument("--base-model", help="override the config's base_model")
    parser.add_argument("--limit", type=int, help="use only the first N training rows")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    overrides = {"base_model": options.base_model} if options.base_model else {}
    result = train_sft(load_sft_config(options.config, **overrides), options.corpus, options.out,
                       resume=options.resume, limit=options.limit)
    print(f"SFT done: {result.steps} steps in {result.wall_s:.0f} s; model in {result.out_dir}")


if __name__ == "__main__":
    main()


__all__ = ["ImdEpochCallback", "SftCollator", "SftDataset", "SftResult", "TimeLimitCallback", "build_tiny", "corpus_texts", "imd_rng",
           "load_model", "load_sample", "set_trainable", "train_sft"]
