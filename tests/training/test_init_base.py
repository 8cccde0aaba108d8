"""init_base: a Qwen3-VL checkpoint + an ECG tower file become a loadable ECG-R1 starting point."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3VLForConditionalGeneration
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLConfig

from model.checkpoint import load_ecg_r1
from model.engines import load_engine
from model.modeling_ecg_r1 import EcgTower
from model.processing_ecg_r1 import make_image_processor
from model.tiny import SPECIAL_TOKENS, TINY_ECG, TINY_TEXT, TINY_VISION
from training.init_base import init_from_qwen3_vl


def qwen_like_tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE with Qwen's chat and vision tokens but no ECG tokens (like Qwen3-VL's)."""
    qwen_tokens = [t for t in SPECIAL_TOKENS if "ecg" not in t]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(["sinus rhythm at 72 bpm; normal ecg"] * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=qwen_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=[t for t in qwen_tokens
                                                              if t not in ("<|endoftext|>", "<|im_end|>")])


def test_qwen3_vl_plus_tower_file_becomes_an_ecg_r1_checkpoint(tmp_path: Path) -> None:
    tokenizer = qwen_like_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = Qwen3VLConfig(text_config={**TINY_TEXT, "vocab_size": len(tokenizer), "pad_token_id": 0},
                           vision_config=TINY_VISION, tie_word_embeddings=False, **ids)
    torch.manual_seed(0)
    qwen = Qwen3VLForConditionalGeneration(config)
    qwen.save_pretrained(tmp_path / "qwen")
    tokenizer.save_pretrained(tmp_path / "qwen")
    make_image_processor().save_pretrained(tmp_path / "qwen")
    tower = EcgTower(TINY_ECG)
    save_file({f"module.ecg.{k}": v.contiguous() for k, v in tower.state_dict().items()}, tmp_path / "tower.safetensors")

    out = init_from_qwen3_vl(tmp_path / "qwen", tmp_path / "ecg-r1", ecg_tower_path=tmp_path / "tower.safetensors",
                             dtype=torch.float32, ecg_config=TINY_ECG)
    model = load_ecg_r1(out)
    # Qwen3-VL's weights came through by name; the tower from its file
    layer = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model.state_dict()[layer], qwen.state_dict()[layer])
    assert torch.equal(model.model.ecg_tower.conv1.weight, tower.conv1.weight)
    # three new tokens in the release's order (pad, start, end), embeddings sized to the tokenizer
    n = len(tokenizer)
    assert (model.config.ecg_token_id, model.config.ecg_start_token_id, model.config.ecg_end_token_id) == (n, n + 1, n + 2)
    assert model.get_input_embeddings().weight.shape[0] == n + 3
    assert model.config.text_config.vocab_size == n + 3
    engine = load_engine("hf", out, max_new_tokens=2, device="cpu")
    assert engine.processor.ecg_token_id == model.config.ecg_token_id
