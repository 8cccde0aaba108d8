"""Export: the folder loads through load_ecg_r1 and the hf engine, and a demonstration model says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.checkpoint import load_ecg_r1
from model.engines import GenerationRequest, load_engine
from model.engines.base import DEMONSTRATION_BANNER
from training.config import load_sft_config
from training.export import export_checkpoint, export_folder, is_demonstration
from training.rows import read_rows
from training.sft import build_tiny, corpus_texts, load_sample

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "model" / "demo"


@pytest.fixture(scope="module")
def exported(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = list(read_rows(corpus))
    model, processor = build_tiny(corpus_texts(rows), load_sft_config("sft-tiny-cpu").tiny)
    out = tmp_path_factory.mktemp("exported")
    info = export_checkpoint(model, processor, out, demonstration=True)
    assert info.demonstration and info.parameters == sum(p.numel() for p in model.parameters())
    return out


def test_exported_folder_has_what_both_engines_read(exported: Path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "preprocessor_config.json", "generation_config.json"} <= names
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["ECGR1ForConditionalGeneration"] and config["model_type"] == "qwen3_vl"
    assert config["ecgwl_demonstration"] is True and is_demonstration(exported)
    # the demo's 32-pixel patches travel in both the model config and the preprocessor config
    assert config["vision_config"]["patch_size"] == 32
    assert json.loads((exported / "preprocessor_config.json").read_text())["patch_size"] == 32
    load_ecg_r1(exported)  # every key accounted for, or CheckpointError


def test_hf_engine_loads_it_and_labels_every_interpretation(exported: Path, corpus: Path) -> None:
    engine = load_engine("hf", exported, max_new_tokens=8, device="cpu")
    assert engine.is_demonstration
    assert engine.processor.image_processor.patch_size == 32
    row = next(read_rows(corpus))
    sample = load_sample(row, corpus)
    results = engine.generate([GenerationRequest(signal=sample.signal, image=sample.image),
                               GenerationRequest(signal=sample.signal)])
    assert len(results) == 2 and all(len(r.token_ids) <= 8 for r in results)
    interpretation = engine.to_interpretation(results[0].text, ("ecg", "image"))
    assert interpretation.is_demonstration
    assert interpretation.raw_text.startswith(DEMONSTRATION_BANNER)
    assert interpretation.parsed.narrative.startswith(DEMONSTRATION_BANNER)


def test_export_folder_rewrites_a_training_folder(exported: Path, tmp_path: Path) -> None:
    info = export_folder(exported, tmp_path / "again", demonstration=False)
    assert not info.demonstration and not is_demonstration(tmp_path / "again")
    assert info.size_bytes < 20 * 2**20


@pytest.mark.skipif(not (DEMO / "model.safetensors").is_file(), reason="model/demo not produced yet")
def test_the_shipped_demo_model_is_a_labelled_pipeline_output() -> None:
    total = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    assert total < 20 * 2**20
    assert is_demonstration(DEMO)
    engine = load_engine("hf", DEMO, max_new_tokens=4, device="cpu")
    assert engine.is_demonstration
    log = json.loads((DEMO / "training_log.json").read_text())
    assert log["notice"].startswith(DEMONSTRATION_BANNER) and log["command"].startswith("ecg-worklist train demo")
    report = json.loads((DEMO / "eval.json").read_text())
    assert any("demonstration model" in note for note in report["notes"])
    assert "NOT FOR CLINICAL USE" in (DEMO / "README.md").read_text()
