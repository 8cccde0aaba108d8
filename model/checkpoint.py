"""Loading an ECG-R1 checkpoint: the released one, ours, or the tiny demonstration model.

    load_ecg_r1("PKUDigitalHealth/ECG-R1-8B-RL" | "/models/ecg-r1", ecg_tower_path=None, dtype=..., device=...)

Every weight must be accounted for: a checkpoint loads with no missing and no unexpected
keys, or `CheckpointError` says which ones. The released weights name the ECG tower
`model.ecg_tower.*`; where a checkpoint lacks those, the tower comes from a separate file
(`ecg_tower_path=`, or the config's `ecg_tower_path`), e.g. ECG-CoCa's own checkpoint.
Special-token ids come from the checkpoint's config, checked against its tokenizer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration, EcgR1Config

log = logging.getLogger(__name__)

TOWER_PREFIX = "model.ecg_tower."
# Prefixes under which tower weights are found in separate files: ours, DDP-wrapped CoCa, CoCa.
_TOWER_FILE_PREFIXES = (TOWER_PREFIX, "module.ecg.", "ecg.", "ecg_tower.")
_ECG_TOKENS = {"ecg_token_id": "<|ecg_pad|>", "ecg_start_token_id": "<|ecg_start|>", "ecg_end_token_id": "<|ecg_end|>"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded completely; the message names what is missing."""


def resolve_checkpoint(path_or_hub_id: str | Path) -> Path:
    """A local folder as is; otherwise a hub id fetched (or found in the local hub cache)."""
    path = Path(path_or_hub_id)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: a checkpoint is a folder (config.json, *.safetensors, tokenizer)")
    from huggingface_hub import snapshot_download  # only for hub ids

    try:
        return Path(snapshot_download(str(path_or_hub_id)))
    except Exception as exc:  # offline, unknown id, no access: say which and why
        raise CheckpointError(f"{path_or_hub_id}: not a local folder and not fetchable from the hub ({exc})") from exc


def checkpoint_keys(folder: Path) -> set[str]:
    """Parameter names stored in a checkpoint folder, read from the safetensors headers only."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors weights")
    keys: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            keys.update(handle.keys())
    return keys


def load_ecg_tower_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Tower weights from a separate file (safetensors, or a torch checkpoint with a `state_dict`),
    with any known prefix (`model.ecg_tower.`, `module.ecg.`, `ecg.`) removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ECG tower file {path} does not exist")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        try:  # weights_only: never run code from a pickled checkpoint
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"ECG tower file {path}: cannot be read as plain tensors ({exc}); "
                                  "convert it to .safetensors") from exc
        state = raw.get("state_dict", raw) if isinstance(raw, dict) else {}
    for prefix in _TOWER_FILE_PREFIXES:
        matched = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if matched:
            return matched
    return state  # bare tower keys (conv1.weight, ...)


def _resolve_token_ids(config: EcgR1Config, folder: Path) -> None:
    """Fill missing ECG ids from the tokenizer and refuse a config that disagrees with it."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for field, token in _ECG_TOKENS.items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise CheckpointError(f"{folder}: tokenizer has no {token} token")
        configured = getattr(config, field)
        if configured is None:
            setattr(config, field, token_id)
        elif configured != token_id:
            raise CheckpointError(f"{folder}: config {field}={configured} but the tokenizer says {token}={token_id}")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Our own key check replaces transformers' load report (missing tower keys are expected
    when the tower comes from a separate file)."""
    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def load_ecg_r1(path_or_hub_id: str | Path, *, ecg_tower_path: str | Path | None = None,
                dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                ) -> ECGR1ForConditionalGeneration:
    """Load ECG-R1 from a folder or hub id with every weight accounted for; eval mode on `device`."""
    folder = resolve_checkpoint(path_or_hub_id)
    config = EcgR1Config.from_pretrained(folder)
    _resolve_token_ids(config, folder)

    stored = checkpoint_keys(folder)
    tower_state = None
    if not any(k.startswith(TOWER_PREFIX) for k in stored):
        tower_file = ecg_tower_path or config.ecg_tower_path
        if tower_file is None:
            raise CheckpointError(f"{folder}: the weights have no {TOWER_PREFIX}* (ECG tower) and no ECG tower "
                                  "file was given (ecg_tower_path= or config.json 'ecg_tower_path')")
        tower_file = Path(tower_file)
        if not tower_file.is_absolute() and not tower_file.exists():
            tower_file = folder / tower_file
        tower_state = load_ecg_tower_state(tower_file)

    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    with _quiet_transformers():
        model, info = ECGR1ForConditionalGeneration.from_pretrained(
            folder, config=config, dtype=dtype, output_loading_info=True,
            device_map=str(device) if device.type == "cuda" else None)

    missing = set(info["missing_keys"])
    if tower_state is not None:
        result = model.model.ecg_tower.load_state_dict(tower_state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(f"ECG tower file {tower_file}: missing {sorted(result.missing_keys)[:8]}, "
                                  f"unexpected {sorted(result.unexpected_keys)[:8]}")
        missing = {k for k in missing if not k.startswith(TOWER_PREFIX)}
    problems = {"missing": sorted(missing), "unexpected": sorted(info["unexpected_keys"]),
                "mismatched": sorted(str(m) for m in info.get("mismatched_keys", []))}
    if any(problems.values()):
        detail = "; ".join(f"{kind} {len(keys)}: {keys[:8]}" for kind, keys in problems.items() if keys)
        raise CheckpointError(f"{folder}: weights do not match ECG-R1 ({detail})")

    model.to(device=device, dtype=dtype).eval()
    log.info("loaded ECG-R1 from %s (%s, %s%s)", folder, device, dtype,
             f", tower from {tower_file}" if tower_state is not None else "")
    return model


__all__ = ["CheckpointError", "checkpoint_keys", "load_ecg_r1", "load_ecg_tower_state", "resolve_checkpoint"]
