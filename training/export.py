"""Export: a trained ECG-R1 as a checkpoint folder that `model/` loads with both engines.

    export_checkpoint(model, processor, out, demonstration=True) -> ExportInfo
    export_folder("runs/rl", "model/demo", demonstration=True)     # from a saved training folder
    ecg-worklist train export RUN_DIR OUT [--demonstration]

The folder is what the release ships and what `model.checkpoint.load_ecg_r1`,
`load_engine("hf", ...)` and `load_engine("vllm", ...)` read:

    config.json              EcgR1Config: model_type "qwen3_vl", architectures ["ECGR1ForConditionalGeneration"],
                             the ecg_* fields and, for the demonstration model, "ecgwl_demonstration": true
    generation_config.json   greedy, stop at <|im_end|>/<|endoftext|> (the engines replace it anyway)
    model.safetensors        every weight, the ECG tower included (no separate tower file)
    tokenizer.json, tokenizer_config.json, chat_template.jinja
    preprocessor_config.json the image processor (patch/merge sizes; the engines apply the 768-token cap)

Training state (optimizer, scheduler, Trainer checkpoints) never goes into it. After writing,
the folder is loaded back with `load_ecg_r1` (every key accounted for) as a check.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel

from model.checkpoint import load_ecg_r1
from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration
from model.processing_ecg_r1 import EcgR1Processor
from training.sft import set_generation_config

# Files of an exported folder; anything else that export wrote before is replaced.
WEIGHT_PATTERNS = ("*.safetensors", "model.safetensors.index.json")


class ExportInfo(BaseModel):
    path: str
    parameters: int
    size_bytes: int
    demonstration: bool
    files: list[str]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def export_checkpoint(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, out: Path | str, *,
                      demonstration: bool | None = None, dtype: torch.dtype | None = None,
                      verify: bool = True) -> ExportInfo:
    """Write `model` + `processor` to `out` (created; old weights there replaced) and check it loads.

    `verify=False` skips loading it back (RL's vLLM sync of an 8B policy every step)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for pattern in WEIGHT_PATTERNS:  # a previous export may have been sharded differently
        for stale in out.glob(pattern):
            stale.unlink()
    if demonstration is not None:
        model.config.ecgwl_demonstration = demonstration
    if dtype is not None:
        model = model.to(dtype)
    model.config.use_cache = True
    set_generation_config(model, processor)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    loaded = load_ecg_r1(out) if verify else model  # raises CheckpointError naming any missing/unexpected key
    return ExportInfo(path=str(out), parameters=sum(p.numel() for p in loaded.parameters()),
                      size_bytes=folder_size(out), demonstration=bool(loaded.config.ecgwl_demonstration),
                      files=sorted(f.name for f in out.iterdir() if f.is_file()))


def export_folder(source: Path | str, out: Path | str, *, demonstration: bool | None = None,
                  ecg_tower_path: str | None = None) -> ExportInfo:
    """Re-export a saved training folder (SFT or RL output, or a Trainer checkpoint with a processor)."""
    source = Path(source)
    model = load_ecg_r1(source, ecg_tower_path=ecg_tower_path)
    processor_dir = source if (source / "tokenizer.json").is_file() or (source / "tokenizer_config.json").is_file() \
        else source.parent.parent  # Trainer checkpoints (out/checkpoints/checkpoint-N) keep the processor in out/
    processor = EcgR1Processor.from_pretrained(processor_dir, ecg_num_tokens=model.config.ecg_num_tokens)
    return export_checkpoint(model, processor, out, demonstration=demonstration)


def is_demonstration(folder: Path | str) -> bool:
    return bool(json.loads((Path(folder) / "config.json").read_text()).get("ecgwl_demonstration", False))


__all__ = ["ExportInfo", "export_checkpoint", "export_folder", "folder_size", "is_demonstration"]
