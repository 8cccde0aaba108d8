"""The demo's written record: every report says it is a demonstration model."""

from __future__ import annotations

from model.engines.base import DEMONSTRATION_BANNER
from training.config import load_demo_config
from training.demo import COMMAND, DemoRecord, demo_readme


def test_readme_and_log_say_demonstration_and_how_to_reproduce() -> None:
    record = DemoRecord(config=load_demo_config(), stage_seconds={"corpus": 10.0, "sft": 300.0},
                        sft_losses=[(1, 6.5), (2, 5.0), (3, 4.0), (4, 0.3)], sft_steps=4,
                        rl_steps=[{"reward_mean": 1.0}, {"reward_mean": 1.2}],
                        tower_pretraining={"losses": [1.6, 0.2], "seconds": 11.0, "train_accuracy": 0.93,
                                           "majority_accuracy": 0.88, "hr_error_sd": 0.11},
                        vision_pretraining={"losses": [1.7, 0.3], "seconds": 600.0, "train_accuracy": 0.95,
                                            "majority_accuracy": 0.88, "hr_error_sd": 0.2},
                        eval_table="| figure | model | reader |\n", export={"parameters": 10, "size_bytes": 2**20})
    text = demo_readme(record)
    assert f"**{DEMONSTRATION_BANNER}.**" in text and COMMAND in text
    assert "| figure | model | reader |" in text and "seed 20260" in text
    assert "1.000 -> 1.200" in text and "heart-rate error 0.11 SD" in text
    assert "ViT pretraining" in text and "loss 1.700 -> 0.300" in text
    assert record.notice.startswith(DEMONSTRATION_BANNER)


def test_demo_sizes_fit_the_budget() -> None:
    config = load_demo_config()
    assert config.corpus_count <= 800 and config.eval_limit is not None and config.eval_limit <= 50
    assert config.real_dev == "data/real"


def test_real_rows_for_training_come_from_the_dev_split_only(tmp_path) -> None:
    import csv

    from ingest.validation.references import load_references
    from training.demo import REPO_ROOT, real_dev_manifest

    data = REPO_ROOT / "data" / "real"
    manifest = real_dev_manifest(data, tmp_path / "manifest.csv")
    with manifest.open(newline="") as handle:
        listed = {row["path"] for row in csv.DictReader(handle)}
    dev = {str(r.file(data).resolve()) for r in load_references(data, split="dev")}
    test = {str(r.file(data).resolve()) for r in load_references(data, split="test")}
    assert listed == dev and not listed & test and len(test) > 100
