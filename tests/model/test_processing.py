"""The ECG-R1 processor: prompt text, placeholder expansion, padding, signal preparation, image cap."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from model.processing_ecg_r1 import (
    INSTRUCTION,
    SYSTEM_PROMPT,
    EcgR1Processor,
    EcgR1Sample,
    make_image_processor,
    prepare_signal,
)
from tests.model.conftest import ecg_like_image


def _runs(ids: torch.Tensor, token_id: int) -> list[int]:
    """Lengths of the runs of `token_id` in a 1-D id tensor."""
    runs, current = [], 0
    for value in ids.tolist() + [None]:
        if value == token_id:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def test_system_prompt_and_instruction_are_the_releases():
    assert SYSTEM_PROMPT == ("You are a helpful, harmless clinical ECG assistant. "
                             "Provide concise, evidence-based interpretations.")
    assert INSTRUCTION.startswith("Interpret the provided ECG image, identify key features")
    assert INSTRUCTION.endswith("supported by the observed evidence.")


@pytest.mark.parametrize(("order", "tags"), [
    (("ecg", "image"), "<|ecg_start|><|ecg_pad|><|ecg_end|><|vision_start|><|image_pad|><|vision_end|>"),
    (("image", "ecg"), "<|vision_start|><|image_pad|><|vision_end|><|ecg_start|><|ecg_pad|><|ecg_end|>"),
    (("ecg",), "<|ecg_start|><|ecg_pad|><|ecg_end|>"),
    (("image",), "<|vision_start|><|image_pad|><|vision_end|>"),
])
def test_prompt_text(tiny_processor, order, tags):
    assert tiny_processor.prompt(order) == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{tags}\n{INSTRUCTION}<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_prompt_needs_a_modality(tiny_processor):
    with pytest.raises(ValueError, match="at least one modality"):
        tiny_processor.prompt(())


def test_exact_placeholder_expansion(tiny_processor, signal, small_image):
    batch = tiny_processor([EcgR1Sample(signal=signal, image=small_image)])
    ids = batch["input_ids"][0]
    p = tiny_processor
    start = int((ids == p.ecg_start_token_id).nonzero().item())
    end = int((ids == p.ecg_end_token_id).nonzero().item())
    assert end - start == 102 and bool((ids[start + 1:end] == p.ecg_token_id).all())
    assert _runs(ids, p.ecg_token_id) == [101]

    grid = batch["image_grid_thw"][0]
    expected_image_tokens = int(grid.prod()) // 4  # 2 x 2 merge
    assert expected_image_tokens == 48  # 256 x 192 -> 16 x 12 patches -> 8 x 6 tokens
    vs = int((ids == p.vision_start_token_id).nonzero().item())
    ve = int((ids == p.vision_end_token_id).nonzero().item())
    assert ve - vs == expected_image_tokens + 1 and bool((ids[vs + 1:ve] == p.image_token_id).all())
    assert vs == end + 1  # <ecg><image>, adjacent
    assert batch["pixel_values"].shape[0] == int(grid.prod())
    # the tokens each modality stands for, and nothing else, are marked as image for M-RoPE
    assert torch.equal(batch["mm_token_type_ids"][0].bool(), ids == p.image_token_id)


def test_text_round_trips_through_the_tokenizer(tiny_processor, signal):
    batch = tiny_processor([EcgR1Sample(signal=signal)])
    text = tiny_processor.tokenizer.decode(batch["input_ids"][0])
    assert text == tiny_processor.expand_placeholders(tiny_processor.prompt(("ecg",)), [])


def test_left_padding_for_a_mixed_batch(tiny_processor, signal, other_signal, small_image):
    samples = [EcgR1Sample(signal=signal, image=small_image), EcgR1Sample(signal=other_signal),
               EcgR1Sample(image=ecg_like_image(128, 128, seed=3))]
    batch = tiny_processor(samples)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(1).tolist()
    assert lengths[0] > lengths[1] and lengths[0] > lengths[2]
    assert ids.shape[1] == max(lengths)
    pad = tiny_processor.tokenizer.pad_token_id
    for row, length in enumerate(lengths):
        assert mask[row, -length:].all() and not mask[row, :-length].any()  # pads on the LEFT
        assert bool((ids[row, :-length] == pad).all())
        single = tiny_processor([samples[row]])["input_ids"][0]
        assert torch.equal(ids[row, -length:], single)
    assert batch["ecg_values"].shape == (2, 12, 5000)  # one per prompt with <ecg>, in batch order
    assert torch.equal(batch["ecg_values"][1], torch.from_numpy(other_signal))
    assert batch["image_grid_thw"].tolist() == [[1, 12, 16], [1, 8, 8]]


def test_order_must_match_the_inputs(tiny_processor, signal):
    with pytest.raises(ValueError, match="does not match"):
        tiny_processor([EcgR1Sample(signal=signal, order=("ecg", "image"))])


def test_training_targets_get_labels(tiny_processor, signal):
    target = "<think>\n**Step 1: Technical, Rate & Rhythm**\nSinus rhythm.\n</think>\nNormal.\n<answer>sinus rhythm</answer>"
    batch = tiny_processor([EcgR1Sample(signal=signal)], targets=[target], padding_side="right")
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    supervised = labels != -100
    assert tiny_processor.tokenizer.decode(ids[supervised]) == target + "<|im_end|>"
    prompt_length = len(tiny_processor([EcgR1Sample(signal=signal)])["input_ids"][0])
    assert not supervised[:prompt_length].any() and supervised[prompt_length:].all()


def test_prepare_signal_follows_the_release():
    raw = np.ones((12, 6000), dtype=np.float64)
    raw[0, 0], raw[1, 1], raw[2, 2] = np.nan, np.inf, -np.inf
    out = prepare_signal(raw)
    assert out.dtype == np.float32 and out.shape == (12, 5000)
    assert out[0, 0] == 0 and out[1, 1] == 0 and out[2, 2] == 0 and out[3, 4999] == 1  # truncated at the end
    short = prepare_signal(np.full((12, 3000), 2.0))
    assert (short[:, :3000] == 2).all() and (short[:, 3000:] == 0).all()  # zero-padded at the end
    with pytest.raises(ValueError, match=r"\(12, N\)"):
        prepare_signal(np.zeros((8, 5000)))


def test_image_tokens_capped_at_768():
    page = ecg_like_image(2200, 1700)
    capped = make_image_processor()
    uncapped = make_image_processor(max_image_tokens=None)  # Qwen3-VL's own limits
    capped_tokens = int(capped(images=[page], return_tensors="pt")["image_grid_thw"].prod()) // 4
    uncapped_tokens = int(uncapped(images=[page], return_tensors="pt")["image_grid_thw"].prod()) // 4
    assert 700 <= capped_tokens <= 768
    assert 3600 <= uncapped_tokens <= 3700  # ~3,660 without the cap
    tiny = EcgR1Processor(_tokenizer(), capped)
    assert tiny.num_image_tokens(1700, 2200) == capped_tokens
    assert tiny.num_image_tokens(4000, 4000) <= 768
    assert tiny.num_image_tokens(20, 20) >= 4  # min_pixels: never fewer than 4 tokens


def _tokenizer():
    from model.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer(["sinus rhythm"] * 10, vocab_size=300)


def test_processor_save_and_load_keeps_ids_and_cap(tiny_processor, tmp_path, signal, small_image):
    tiny_processor.save_pretrained(tmp_path)
    loaded = EcgR1Processor.from_pretrained(tmp_path)
    sample = EcgR1Sample(signal=signal, image=small_image)
    a, b = tiny_processor([sample]), loaded([sample])
    assert torch.equal(a["input_ids"], b["input_ids"])
    torch.testing.assert_close(a["pixel_values"], b["pixel_values"])
    assert loaded.num_image_tokens(1700, 2200) <= 768


def test_missing_special_tokens_are_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel()
    backend.train_from_iterator(["abc"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>")
    with pytest.raises(ValueError, match="lacks the special token"):
        EcgR1Processor(plain)


def test_processing_needs_no_torchvision():
    code = ("import sys, numpy as np\n"
            "from PIL import Image\n"
            "from model.tiny import make_tiny_processor\n"
            "from model.processing_ecg_r1 import EcgR1Sample\n"
            "p = make_tiny_processor()\n"
            "b = p([EcgR1Sample(signal=np.zeros((12, 5000)), image=Image.new('RGB', (64, 64)))])\n"
            "assert 'pixel_values' in b\n"
            "print('torchvision' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_tiny_tokenizer_keeps_think_and_drops_chat_tokens(tiny_processor):
    tokenizer = tiny_processor.tokenizer
    for token in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>",
                  "<|ecg_start|>", "<|ecg_pad|>", "<|ecg_end|>", "<think>", "</think>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    text = "<think>\nSinus rhythm, 72 bpm.\n</think>\nNormal ECG.\n<answer>normal ECG</answer>"
    ids = tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tiny_processor.decode(ids) == text
    rendered = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT},
                                              {"role": "user", "content": "<ecg>\n" + INSTRUCTION}],
                                             tokenize=False, add_generation_prompt=True)
    assert rendered == tiny_processor.prompt(("ecg",)).replace("<|ecg_start|><|ecg_pad|><|ecg_end|>", "<ecg>")


def test_tiny_tokenizer_splits_numbers_into_digits():
    """As Qwen's tokenizer does: a heart rate is read digit by digit, never as one whole-number token,
    even when the corpus repeats that number often enough for BPE to merge it."""
    from model.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(["Heart rate 143 bpm, QTc 451 ms."] * 50, vocab_size=400)
    text = "Heart rate 143 bpm, QTc 451 ms."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == ["1", "4", "3", "4", "5", "1"]
    assert tokenizer.decode(ids) == text
