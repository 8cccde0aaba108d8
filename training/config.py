"""Training configurations: the release's GPU recipe and the tiny CPU one, as pydantic models read from TOML.

    load_sft_config("sft-8b-gpu" | "sft-tiny-cpu" | path/to/file.toml) -> SftConfig
    load_rl_config("rl-8b-gpu" | "rl-tiny-cpu" | path)                 -> RlConfig
    load_demo_config("demo" | path)                                    -> DemoConfig

The files live in `training/configs/`; each value there carries a comment saying where it
comes from (ECG-R1-FACTS "Training" for the GPU files, the CPU time budget for the tiny ones).
A name without a suffix is looked up in that folder; anything else is read as a path.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


# Which of the ECG tower's tokens its pretraining head reads (training/tower.py): "mean", all 101 averaged;
# "cls", the first token alone (the summary the language model can find at one place).
TowerPool = Literal["mean", "cls"]
# Where the auxiliary "read the ECG" loss reads the language model (training/aux_ecg.py).
AuxEcgAt = Literal["answer_start", "heart_rate"]


class _Strict(BaseModel):
    # A misspelt key in a TOML file is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class TinyModelShape(_Strict):
    """How the tiny ECG-R1 is built when a stage starts from scratch (no `base_model`)."""

    bpe_vocab_size: int = 4096  # the byte-level BPE is trained on the corpus texts (fewer merges if they run out)
    image_patch_size: int = 32  # Qwen3-VL uses 16; 32 makes a 1056x640 page 165 visual tokens instead of 660
    # The language model's query heads (model.tiny's TINY_TEXT has 2; each 64 wide, which CPU vLLM needs, so more
    # heads widen the attention, not the model's 128-wide stream).
    text_attention_heads: int = Field(default=2, ge=1)
    # The language model's decoder layers (model.tiny's TINY_TEXT has 3); each adds about 0.2 M parameters (0.8 MB).
    text_layers: int = Field(default=3, ge=1)
    seed: int = 0


class SftConfig(_Strict):
    """Supervised fine-tuning (transformers Trainer). Field names follow TrainingArguments."""

    base_model: str | None = None  # checkpoint folder / hub id; None = a tiny model built from the corpus
    ecg_tower_path: str | None = None  # ECG-CoCa weights when the base checkpoint lacks model.ecg_tower.*
    tiny: TinyModelShape = Field(default_factory=TinyModelShape)
    learning_rate: float = 2e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides the epochs
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler_type: str = "cosine"
    max_grad_norm: float = 1.0
    max_length: int = 4096
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 8
    world_size: int = 8  # GPUs the global batch is planned for
    global_batch_size: int = 64
    bf16: bool = True
    gradient_checkpointing: bool = True
    train_ecg_tower: bool = False  # the release freezes the (pretrained) ECG-CoCa tower
    train_vision_tower: bool = False  # ... and Qwen3-VL's ViT (the merger always trains)
    pretrain_ecg_tower_epochs: int = 0  # tiny model only: label-prediction pretraining of its tower (training/tower.py)
    pretrain_ecg_tower_augment: bool = False  # vary each batch as recordings vary (training/tower.py)
    pretrain_ecg_tower_stretch: float = 0.0  # share of each augmented batch played slower/faster (training/tower.py)
    pretrain_ecg_tower_beats: float = 0.0  # weight of the per-patch "a QRS falls here" loss (training/tower.py)
    pretrain_ecg_tower_pool: TowerPool = "mean"  # the tokens its head reads (training/tower.py)
    pretrain_vision_tower_epochs: int = 0  # tiny model only: the same for its ViT, on the pages (training/vision_tower.py)
    pretrain_vision_tower_augment: bool = False  # shift each page by random pixels (training/vision_tower.py)
    p_drop: float = 0.5  # Interleaved Modality Dropout, once per sample
    p_swap: float = 0.1
    # Curriculum (tiny demo): the first `brief_epochs` epochs train on a brief target (Step 1's
    # rate-and-rhythm paragraph and the answer) so that most target tokens depend on the input.
    brief_epochs: float = 0.0
    # Auxiliary "read the ECG" loss (tiny demo, training/aux_ecg.py): a linear head on the LM's hidden states at the
    # first `aux_ecg_positions` answer positions predicts the row's labels and measurements; 0 = off (the release).
    aux_ecg_weight: float = 0.0
    aux_ecg_positions: int = 4
    # ... or ("heart_rate") the one position that writes the stated heart rate's first digit predicts the measured rate.
    aux_ecg_at: AuxEcgAt = "answer_start"
    # ... and (with "heart_rate") the stated rate's own digit tokens counted this many times more in the loss.
    aux_rate_digits_weight: float = 0.0
    # The answer's digits counted this many times in the SFT loss (training/digit_loss.py); 1.0 = plain cross-entropy.
    digit_loss_weight: float = 1.0
    # Tiny demo: each epoch's signal of a row varied as the tower's pretraining varies it (turned round in time,
    # noise, baseline wander; no gain, which voltage statements in the target rest on): training/sft.py.
    sft_augment_signal: bool = False
    deepspeed: str | None = None  # a DeepSpeed JSON (ZeRO-2 on GPUs, as the release), relative to configs/ or absolute
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    dataloader_num_workers: int = 4
    seed: int = 42

    @model_validator(mode="after")
    def _global_batch_adds_up(self) -> SftConfig:
        made = self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size
        if made != self.global_batch_size:
            raise ValueError(f"per_device_train_batch_size x gradient_accumulation_steps x world_size = {made}, "
                             f"not the global_batch_size {self.global_batch_size}")
        return self

    @model_validator(mode="after")
    def _one_loss_change_at_a_time(self) -> SftConfig:
        # Each replaces the trainer's loss (training/aux_ecg.py, training/digit_loss.py); they are not combined.
        if self.aux_ecg_weight > 0 and self.digit_loss_weight != 1.0:
            raise ValueError("aux_ecg_weight and digit_loss_weight != 1.0 cannot be used together")
        if self.aux_rate_digits_weight < 0:
            raise ValueError(f"aux_rate_digits_weight must be 0 or more, not {self.aux_rate_digits_weight}")
        if self.aux_rate_digits_weight > 0 and (self.aux_ecg_weight <= 0 or self.aux_ecg_at != "heart_rate"):
            raise ValueError("aux_rate_digits_weight needs aux_ecg_weight > 0 and aux_ecg_at = \"heart_rate\"")
        if self.digit_loss_weight <= 0:
            raise ValueError(f"digit_loss_weight must be above 0, not {self.digit_loss_weight}")
        return self


class RlConfig(_Strict):
    """GRPO with the DAPO settings of the release (see training/rl.py)."""

    base_model: str | None = None  # the SFT checkpoint; the demo passes its own
    ecg_tower_path: str | None = None
    engine: Literal["hf", "vllm"] = "hf"  # who samples the rollouts
    learning_rate: float = 1e-6
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 caps the number of policy updates
    prompts_per_step: int = 8  # prompts whose groups make one update (x num_generations completions)
    num_generations: int = 6
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 2048
    beta: float = 0.0  # KL weight: 0 = no reference model (DAPO)
    epsilon: float = 0.2  # lower clip of the ratio
    epsilon_high: float = 0.30  # upper clip ("clip-higher")
    loss_type: Literal["token"] = "token"  # token-level mean over every kept token of the batch (DAPO / TRL "bnpo")
    dynamic_sampling: bool = True  # drop groups whose rewards are all equal (zero advantage)
    max_resample_rounds: int = 3  # extra prompt batches drawn to refill a step emptied by dynamic sampling
    overlong_filtering: bool = True  # completions cut at max_completion_length carry no loss
    reward_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # diagnosis, evidence, format (EDER)
    # Part credit for an evidence phrase's number stated near the reference's (training/rewards.py); the release
    # scores only the phrase as written (False).
    evidence_graded_numbers: bool = False
    # IMD on the loss side, as the release (its template re-encodes each completion's prompt in train
    # mode): rollouts see the full prompt, the log-probabilities a prompt with dropout/swap.
    p_drop: float = 0.5
    p_swap: float = 0.1
    warmup_ratio: float = 0.01  # release: warm-up 0.01 of the updates (linear), then constant
    rollout_batch_size: int = 16  # completions generated together
    micro_batch_size: int = 4  # completions per forward/backward in the update
    bf16: bool = True
    gradient_checkpointing: bool = True
    train_ecg_tower: bool = False  # as SFT: the release's towers stay frozen
    train_vision_tower: bool = False
    save_steps: int = 50
    seed: int = 42
    # "fsdp": the policy update sharded over torchrun's processes with FSDP2 (training/sharding.py)
    shard: Literal["none", "fsdp"] = "none"
    fsdp_param_dtype: Literal["float32", "bfloat16"] = "float32"  # weights as all-gathered for compute
    fsdp_reduce_dtype: Literal["float32", "bfloat16"] = "float32"  # gradients as reduce-scattered

    @model_validator(mode="after")
    def _clip_range(self) -> RlConfig:
        if not 0 < self.epsilon < 1 or self.epsilon_high < self.epsilon:
            raise ValueError("need 0 < epsilon < 1 and epsilon_high >= epsilon")
        if self.num_generations < 2:
            raise ValueError("GRPO needs at least 2 generations per prompt (group-normalised advantages)")
        return self


class DemoConfig(_Strict):
    """`ecg-worklist train demo`: sizes chosen to finish well inside 30 minutes on 2 CPU cores."""

    corpus_count: int = 360
    # data/real's DEV split (never its test split) joins the training rows: real signals for the
    # tower and SFT. Relative to the repository; None leaves it out.
    real_dev: str | None = None
    seed: int = 20260
    sft: str = "sft-tiny-cpu"
    rl: str = "rl-tiny-cpu"
    eval_limit: int | None = 40  # test rows evaluated (model and protocol reader alike)
    eval_max_new_tokens: int = 1024
    eval_batch_size: int = 8


_Config = TypeVar("_Config", bound=BaseModel)


def config_path(name_or_path: str | Path) -> Path:
    """`sft-8b-gpu` -> training/configs/sft-8b-gpu.toml; a path as is."""
    text = str(name_or_path)
    if "/" not in text and not text.endswith(".toml"):
        return CONFIG_DIR / f"{text}.toml"
    return Path(text)


def _load(kind: type[_Config], name_or_path: str | Path, overrides: dict[str, object] | None) -> _Config:
    path = config_path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise FileNotFoundError(f"{path}: no such configuration (bundled: {known})")
    values = tomllib.loads(path.read_text(encoding="utf-8"))
    values.update(overrides or {})
    try:
        return kind.model_validate(values)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def load_sft_config(name_or_path: str | Path, **overrides: object) -> SftConfig:
    return _load(SftConfig, name_or_path, overrides)


def load_rl_config(name_or_path: str | Path, **overrides: object) -> RlConfig:
    return _load(RlConfig, name_or_path, overrides)


def load_demo_config(name_or_path: str | Path = "demo", **overrides: object) -> DemoConfig:
    return _load(DemoConfig, name_or_path, overrides)


def resolve_deepspeed(config: SftConfig) -> str | None:
    """The DeepSpeed file: absolute, or relative to training/configs/."""
    if config.deepspeed is None:
        return None
    path = Path(config.deepspeed)
    return str(path if path.is_absolute() else CONFIG_DIR / path)


__all__ = ["CONFIG_DIR", "DemoConfig", "RlConfig", "SftConfig", "TinyModelShape", "config_path",
           "load_demo_config", "load_rl_config", "load_sft_config", "resolve_deepspeed"]
