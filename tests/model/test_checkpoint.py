"""Checkpoint loading: our round trip, a release-shaped checkpoint, a separate tower file, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model.checkpoint import CheckpointError, checkpoint_keys, load_ecg_r1
from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration
from model.processing_ecg_r1 import EcgR1Processor, EcgR1Sample

TOWER = "model.ecg_tower."


def write_release_style_checkpoint(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, folder: Path,
                                   *, include_tower: bool = True, extra: dict | None = None,
                                   drop: tuple[str, ...] = ()) -> Path:
    """Weights under the released key names in two shards + index, a config.json shaped like the
    release's (model_type qwen3_vl, ECGR1 architecture, ecg_* fields, only the pad id recorded,
    a training-time tower path that does not exist here) and the tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if (include_tower or not k.startswith(TOWER)) and k not in drop}
    state.update(extra or {})
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / file), metadata={"format": "pt"})
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    total = sum(t.numel() * t.element_size() for t in state.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))

    config = model.config.to_dict()
    for ours in ("ecg_start_token_id", "ecg_end_token_id", "ecg_num_tokens", "ecgwl_demonstration"):
        config.pop(ours, None)
    config.update(architectures=["ECGR1ForConditionalGeneration"], model_type="qwen3_vl",
                  ecg_model_config="coca_ViT-B-32", ecg_tower_path="/mnt/train/ecg_coca/cpt_wfep_epoch_20.pt")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    processor.tokenizer.save_pretrained(folder)
    return folder


def _logits(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, signal, image) -> torch.Tensor:
    with torch.no_grad():
        return model(**processor([EcgR1Sample(signal=signal, image=image)])).logits


def test_round_trip_through_save_pretrained(tiny_checkpoint, tiny_model, tiny_processor, signal, small_image):
    loaded = load_ecg_r1(tiny_checkpoint)
    assert isinstance(loaded, ECGR1ForConditionalGeneration) and not loaded.training
    original = tiny_model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    assert torch.equal(_logits(loaded, tiny_processor, signal, small_image),
                       _logits(tiny_model, tiny_processor, signal, small_image))
    saved = json.loads((tiny_checkpoint / "config.json").read_text())
    assert saved["architectures"] == ["ECGR1ForConditionalGeneration"] and saved["model_type"] == "qwen3_vl"
    assert saved["ecg_token_id"] == tiny_processor.ecg_token_id and saved["ecg_num_tokens"] == 101


def test_release_shaped_checkpoint_loads_every_key(tmp_path, tiny_model, tiny_processor, signal, small_image):
    folder = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "release")
    keys = checkpoint_keys(folder)
    assert {k.split(".")[0] if k.startswith("lm_head") else ".".join(k.split(".")[:2]) for k in keys} == {
        "lm_head", "model.ecg_tower", "model.ecg_projector", "model.visual", "model.language_model"}
    assert "model.ecg_tower.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "model.ecg_projector.2.weight" in keys

    loaded = load_ecg_r1(folder)  # raises on any missing, unexpected or mismatched key
    assert loaded.config.ecg_start_token_id == tiny_processor.ecg_start_token_id  # filled from the tokenizer
    assert torch.equal(_logits(loaded, tiny_processor, signal, small_image),
                       _logits(tiny_model, tiny_processor, signal, small_image))


def test_tower_from_a_separate_coca_file(tmp_path, tiny_model, tiny_processor, signal, small_image):
    folder = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "no-tower", include_tower=False)
    assert not any(k.startswith(TOWER) for k in checkpoint_keys(folder))
    # ECG-CoCa's own training checkpoint: the whole CoCa model under `module.`, tower under `module.ecg.`
    coca = {f"module.ecg.{k}": v.clone() for k, v in tiny_model.model.ecg_tower.state_dict().items()}
    coca["module.text.proj.weight"] = torch.zeros(4, 4)
    tower_file = tmp_path / "cpt_wfep_epoch_20.pt"
    torch.save({"epoch": 20, "name": "coca", "state_dict": coca}, tower_file)

    loaded = load_ecg_r1(folder, ecg_tower_path=tower_file)
    assert torch.equal(_logits(loaded, tiny_processor, signal, small_image),
                       _logits(tiny_model, tiny_processor, signal, small_image))


def test_tower_file_named_in_the_config(tmp_path, tiny_model, tiny_processor, signal):
    folder = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "cfg-tower", include_tower=False)
    save_file({k: v.contiguous() for k, v in tiny_model.model.ecg_tower.state_dict().items()},
              str(folder / "ecg_tower.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["ecg_tower_path"] = "ecg_tower.safetensors"  # relative to the checkpoint folder
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_ecg_r1(folder)
    for name, tensor in loaded.model.ecg_tower.state_dict().items():
        assert torch.equal(tensor, tiny_model.model.ecg_tower.state_dict()[name])


def test_no_tower_anywhere_is_a_clear_error(tmp_path, tiny_model, tiny_processor):
    folder = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "bare", include_tower=False)
    config = json.loads((folder / "config.json").read_text())
    config.pop("ecg_tower_path")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"no model\.ecg_tower\.\* \(ECG tower\) and no ECG tower file"):
        load_ecg_r1(folder)


def test_unreadable_tower_path_is_named(tmp_path, tiny_model, tiny_processor):
    folder = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "bad-path", include_tower=False)
    with pytest.raises(CheckpointError, match="cpt_wfep_epoch_20.pt does not exist"):
        load_ecg_r1(folder)  # config.json's ecg_tower_path points at the training machine


def test_unexpected_and_missing_keys_are_refused(tmp_path, tiny_model, tiny_processor):
    extra = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "extra",
                                           extra={"model.ecg_tower.attn_pool.query": torch.zeros(4, 4)})
    with pytest.raises(CheckpointError, match=r"unexpected 1: \['model\.ecg_tower\.attn_pool\.query'\]"):
        load_ecg_r1(extra)
    missing = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "missing",
                                             drop=("model.ecg_projector.2.weight",))
    with pytest.raises(CheckpointError, match=r"missing 1: \['model\.ecg_projector\.2\.weight'\]"):
        load_ecg_r1(missing)


def test_config_token_id_must_agree_with_the_tokenizer(tmp_path, tiny_model, tiny_processor):
    folder = write_release_style_checkpoint(tiny_model, tiny_processor, tmp_path / "ids")
    config = json.loads((folder / "config.json").read_text())
    config["ecg_token_id"] = tiny_processor.ecg_token_id + 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="ecg_token_id"):
        load_ecg_r1(folder)


def test_not_a_checkpoint(tmp_path):
    file = tmp_path / "weights.bin"
    file.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_ecg_r1(file)
