"""An untrained ECG-R1 starting point from Qwen3-VL + the ECG-CoCa tower, for SFT from scratch on GPUs.

    python -m training.init_base --qwen Qwen/Qwen3-VL-8B-Instruct --ecg-tower /models/cpt_wfep_epoch_20.pt \
        --out /models/ecg-r1-8b-init
    then: sft-8b-gpu.toml with base_model = "/models/ecg-r1-8b-init"

What it does, as the release's model is built (ECG-R1-FACTS "Architecture"):
- the Qwen3-VL tokenizer gets `<|ecg_pad|>`, `<|ecg_start|>`, `<|ecg_end|>` as added special
  tokens, in the release's order (pad, start, end: ids 151669, 151670, 151671 on Qwen3's
  151,669 tokens); their ids are read back from the tokenizer (never assumed). The embeddings
  are resized to the tokenizer's length, the release's vocabulary of 151,672 rows (Qwen3's
  matrix has 151,936, spare rows included). The new rows start at the mean embedding;
- Qwen3-VL's weights (`model.visual.*`, `model.language_model.*`, `lm_head.*`) load by name;
- `model.ecg_tower.*` comes from the ECG-CoCa file (`module.ecg.*` keys), and the decoupled
  projector (Linear-GELU-Linear) starts random: SFT trains it;
- the folder is written like any ECG-R1 checkpoint, so `load_ecg_r1` and the engines load it.

Starting from the released `PKUDigitalHealth/ECG-R1-8B-SFT` needs none of this: point
`base_model` at it (and `ecg_tower_path` at the tower file when its weights lack the tower).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLConfig

from model.checkpoint import load_ecg_r1, load_ecg_tower_state, resolve_checkpoint
from model.modeling_ecg_r1 import ECG_END_TOKEN, ECG_PAD_TOKEN, ECG_START_TOKEN, ECGR1ForConditionalGeneration, \
    EcgR1Config
from model.processing_ecg_r1 import EcgR1Processor, make_image_processor
from training.sft import set_generation_config

ECG_TOKENS = (ECG_PAD_TOKEN, ECG_START_TOKEN, ECG_END_TOKEN)  # the release's order


def _image_settings(folder: Path) -> dict[str, object]:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    return {k: saved[k] for k in ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")
            if k in saved}


def init_from_qwen3_vl(qwen: str | Path, out: Path | str, *, ecg_tower_path: str | Path | None,
                       projector_type: str = "mlp2x_gelu", dtype: torch.dtype = torch.bfloat16,
                       ecg_config: dict[str, object] | None = None, seed: int = 0) -> Path:
    """Write an ECG-R1 checkpoint built from a Qwen3-VL checkpoint and an ECG tower file to `out`.

    `ecg_config` overrides the tower sizes (default: ECG-CoCa's ViT-B, as released)."""
    folder, out = resolve_checkpoint(qwen), Path(out)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": list(ECG_TOKENS)},
                                 replace_extra_special_tokens=False)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in ECG_TOKENS}

    values = Qwen3VLConfig.from_pretrained(folder).to_dict()
    values.update(architectures=["ECGR1ForConditionalGeneration"], ecg_projector_type=projector_type,
                  ecg_model_config="coca_ViT-B-32", ecg_token_id=ids[ECG_PAD_TOKEN],
                  ecg_start_token_id=ids[ECG_START_TOKEN], ecg_end_token_id=ids[ECG_END_TOKEN])
    if ecg_config is not None:
        values["ecg_config"] = ecg_config
    config = EcgR1Config.from_dict(values)

    torch.manual_seed(seed)  # the projector's random start
    model = ECGR1ForConditionalGeneration.from_pretrained(folder, config=config, dtype=dtype)
    if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # the release's vocabulary: the tokenizer's length
    with torch.no_grad():
        for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            known = matrix[:min(ids.values())]
            for token_id in ids.values():
                matrix[token_id] = known.mean(dim=0)
    if ecg_tower_path is not None:
        result = model.model.ecg_tower.load_state_dict(load_ecg_tower_state(ecg_tower_path), strict=False)
        if result.missing_keys:
            raise ValueError(f"{ecg_tower_path}: tower weights missing {result.missing_keys[:8]}")

    processor = EcgR1Processor(tokenizer, make_image_processor(**_image_settings(folder)))  # type: ignore[arg-type]
    set_generation_config(model, processor)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    load_ecg_r1(out)  # the check every checkpoint passes: all keys accounted for
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qwen", default="Qwen/Qwen3-VL-8B-Instruct", help="Qwen3-VL checkpoint folder or hub id")
    parser.add_argument("--ecg-tower", required=True, help="ECG-CoCa checkpoint (.pt with module.ecg.* or .safetensors)")
    parser.add_argument("--out", required=True, type=Path)
    options = parser.parse_args(argv)
    print(f"ECG-R1 starting point written to {init_from_qwen3_vl(options.qwen, options.out, ecg_tower_path=options.ecg_tower)}")


if __name__ == "__main__":
    main()


__all__ = ["ECG_TOKENS", "init_from_qwen3_vl"]
