"""SFT: labels cover only the assistant tokens, IMD once per sample, the loss falls, checkpoints resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from model.dropout import choose_modalities
from model.processing_ecg_r1 import IGNORE_INDEX
from training.config import load_sft_config
from training.rows import read_rows
from training.sft import (SftCollator, SftDataset, build_tiny, corpus_texts, imd_rng, load_sample, prepare_model,
                          train_sft)
from training.tower import augment_batch_turned


@pytest.fixture(scope="module")
def rows(corpus: Path):
    return list(read_rows(corpus, split="train"))


def test_labels_only_on_the_assistant_tokens(corpus: Path, rows) -> None:
    model, processor = build_tiny(corpus_texts(rows), load_sft_config("sft-tiny-cpu").tiny)
    dataset = SftDataset(corpus, rows[:3], seed=0, p_drop=0.5, p_swap=0.1)
    batch = SftCollator(processor, max_length=4096)([dataset[i] for i in range(3)])
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for i, row in enumerate(rows[:3]):
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        kept = labels != IGNORE_INDEX
        assert (labels[kept] == ids[kept]).all()
        # the labelled tokens are exactly the answer + <|im_end|>, in one span at the end of the sequence
        expected = processor.tokenizer(row.answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        assert labels[kept].tolist() == expected
        positions = kept.nonzero().flatten()
        assert positions.tolist() == list(range(int(positions[0]), int(positions[0]) + len(expected)))
        assert ids[positions[-1]] == im_end
        # nothing of the prompt (ECG and image placeholders, system, user) carries a label
        assert not kept[:int(positions[0])].any()
        assert not kept[batch["attention_mask"][i] == 0].any()


def test_imd_is_applied_once_per_sample_and_reproducibly(corpus: Path, rows) -> None:
    dataset = SftDataset(corpus, rows, seed=3, p_drop=0.5, p_swap=0.1)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        for index in range(len(rows)):
            # one draw of choose_modalities from the (seed, epoch, index) rng, nothing more
            expected = choose_modalities(("ecg", "image"), imd_rng(3, epoch, index))
            assert dataset[index]["sample"].modalities() == expected
            assert dataset[index]["sample"].modalities() == expected  # same epoch, same prompt
    # The mix over many samples is the once-applied one: 25% ecg only, 25% image only, 45% both, 5% swapped
    # (applied twice it would be ~37.5% / 37.5% / 25% both).
    counts = Counter(choose_modalities(("ecg", "image"), imd_rng(3, 0, i)) for i in range(8000))
    share = {k: v / 8000 for k, v in counts.items()}
    assert share[("ecg",)] == pytest.approx(0.25, abs=0.02)
    assert share[("image",)] == pytest.approx(0.25, abs=0.02)
    assert share[("ecg", "image")] == pytest.approx(0.45, abs=0.02)
    assert share[("image", "ecg")] == pytest.approx(0.05, abs=0.01)
    # and the epochs differ: a sample is not stuck with one prompt for the whole run
    assert any(choose_modalities(("ecg", "image"), imd_rng(3, 0, i)) !=
               choose_modalities(("ecg", "image"), imd_rng(3, 1, i)) for i in range(20))


def test_an_augmented_signal_moves_each_epoch_and_keeps_its_beats_and_amplitudes(corpus: Path, rows) -> None:
    plain = SftDataset(corpus, rows[:2], seed=5, p_drop=0.0, p_swap=0.0)
    varied = SftDataset(corpus, rows[:2], seed=5, p_drop=0.0, p_swap=0.0, augment_signal=True)
    stored = load_sample(rows[0], corpus).signal
    assert np.array_equal(plain[0]["sample"].signal, stored)  # off: the row as stored
    first = varied[0]["sample"].signal
    assert np.array_equal(first, varied[0]["sample"].signal)  # same (epoch, row): same signal (resumable)
    varied.set_epoch(1)
    second = varied[0]["sample"].signal
    assert not np.allclose(first, second)  # another epoch: another view of the row
    assert varied[0]["target"] == plain[0]["target"]  # the reading it must give is the same
    for signal in (first, second):
        # the stored signal turned round in time (its beats where the turn puts them), amplitudes kept
        # (no gain: the target's voltages stay true), plus noise and wander well under a QRS
        lead = stored[1] - stored[1].mean()
        seen = signal[1] - signal[1].mean()
        turn = int(np.argmax(np.fft.irfft(np.fft.rfft(seen) * np.conj(np.fft.rfft(lead)), n=lead.size)))
        turned = np.roll(lead, turn)
        assert float(seen @ turned / (turned @ turned)) == pytest.approx(1.0, abs=0.03)  # no gain
        assert np.std(seen - turned) < 0.35 * np.std(lead) + 0.2


def test_augmentation_without_gain_makes_the_same_other_draws() -> None:
    signals = torch.zeros(3, 12, 500)
    signals[:, :, 100] = 1.0  # one spike a row: where the turn puts it, and at which height
    with_gain, offsets = augment_batch_turned(signals, torch.Generator().manual_seed(7))
    without, same_offsets = augment_batch_turned(signals, torch.Generator().manual_seed(7), gain=False)
    assert offsets == same_offsets
    for row, offset in enumerate(offsets):
        spike = (100 + offset) % 500
        background = without[row, :, (spike + 50) % 500]
        assert torch.allclose(without[row, :, spike] - background, torch.ones(12), atol=0.3)
        # the same noise and wander: only the spike's height differs
        others = [i for i in range(500) if i != spike]
        assert torch.allclose(with_gain[row][:, others], without[row][:, others], atol=1e-5)


def test_a_few_steps_lower_the_loss_and_a_checkpoint_resumes(corpus: Path, tmp_path: Path) -> None:
    config = load_sft_config("sft-tiny-cpu", max_steps=10, save_steps=5, logging_steps=1,
                             per_device_train_batch_size=2, global_batch_size=2, save_total_limit=3)
    result = train_sft(config, corpus, tmp_path, progress=False)
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.9 * first, losses
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()
    # the tiny config pretrains its ECG tower and freezes it (as the release freezes ECG-CoCa); the ViT trains
    assert (tmp_path / "tower_pretraining.json").is_file()
    from training.sft import load_model
    tower_parameters = sum(p.numel() for p in load_model(tmp_path)[0].model.ecg_tower.parameters())
    assert result.parameters["frozen"] == tower_parameters
    assert (tmp_path / "checkpoints" / "checkpoint-10").is_dir()

    # Continue the same run to 12 steps: it starts from checkpoint-10, not from scratch.
    more = load_sft_config("sft-tiny-cpu", max_steps=12, save_steps=5, logging_steps=1,
                           per_device_train_batch_size=2, global_batch_size=2, save_total_limit=3)
    resumed = train_sft(more, corpus, tmp_path, resume=True, progress=False)
    assert resumed.steps == 12
    new_steps = [step for step, _ in resumed.losses if step > 10]
    assert new_steps == [11, 12]
    assert all(loss < first for step, loss in resumed.losses if step > 10)


def test_gpu_config_keeps_the_release_recipe() -> None:
    config = load_sft_config("sft-8b-gpu")
    assert (config.learning_rate, config.num_train_epochs, config.warmup_ratio, config.weight_decay) == (2e-5, 1, 0.03, 0)
    assert config.max_length == 4096 and config.bf16 and config.gradient_checkpointing
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps * config.world_size == 64
    assert not config.train_ecg_tower and not config.train_vision_tower
    with pytest.raises(ValueError, match="global_batch_size"):
        load_sft_config("sft-8b-gpu", world_size=4)


def test_a_time_limit_stops_after_the_current_step(corpus: Path, tmp_path: Path) -> None:
    config = load_sft_config("sft-tiny-cpu", max_steps=50, save_steps=0, logging_steps=1,
                             per_device_train_batch_size=2, global_batch_size=2)
    result = train_sft(config, corpus, tmp_path, progress=False, time_limit_s=0.0)
    assert result.stopped_by_time and result.steps == 1
    assert (tmp_path / "model.safetensors").is_file()  # what was trained is saved


def test_the_tiny_shape_sets_the_attention_heads_and_layers_also_when_a_run_resumes(corpus: Path, rows,
                                                                                    tmp_path: Path) -> None:
    shape = load_sft_config("sft-tiny-cpu").tiny.model_copy(update={"text_attention_heads": 4, "text_layers": 4})
    model, processor = build_tiny(corpus_texts(rows), shape)
    attention = model.model.language_model.layers[0].self_attn
    assert model.config.text_config.num_attention_heads == 4
    assert len(model.model.language_model.layers) == model.config.text_config.num_hidden_layers == 4
    assert attention.q_proj.out_features == 4 * model.config.text_config.head_dim
    batch = SftCollator(processor, max_length=4096)([SftDataset(corpus, rows[:1], seed=0, p_drop=0.0, p_swap=0.0)[0]])
    assert torch.isfinite(model(**batch).loss)
    # A resumed run rebuilds the model from the saved tokenizer: with the same heads, or its checkpoint would not load.
    processor.save_pretrained(tmp_path)
    config = load_sft_config("sft-tiny-cpu", tiny=shape)
    resumed, _ = prepare_model(config, corpus, rows, tmp_path, resume=True)
    assert resumed.config.text_config.num_attention_heads == 4
    assert resumed.config.text_config.num_hidden_layers == 4
    shapes = {name: value.shape for name, value in model.state_dict().items()}
    assert {name: value.shape for name, value in resumed.state_dict().items()} == shapes
