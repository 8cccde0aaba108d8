"""A tiny ECG-R1 for tests, CI and the demonstration model, and the real 8B shapes for benchmarks.

The tiny model has the real model's wiring and input contract (12 x 5000 signal, 101 ECG
tokens, patch-16/merge-2 images capped at 768 tokens, M-RoPE, deepstack) with small widths,
and a small byte-level BPE tokenizer that carries Qwen's chat tokens and the ECG tokens.
It is saved and loaded through the same code as the released checkpoint
(`save_pretrained` / `model.checkpoint.load_ecg_r1`).

    model, processor = make_tiny_model(seed=0)
    save_tiny_model("/tmp/tiny-ecg-r1", seed=0)   # then load_ecg_r1("/tmp/tiny-ecg-r1")
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ingest.report_format import format_output
from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration, EcgR1Config
from model.processing_ecg_r1 import EcgR1Processor, make_image_processor

# Qwen's special tokens (in Qwen's order) followed by the ECG ones. `<think>`/`</think>` are
# added as ordinary (non-special) tokens, as in Qwen3, so decoded text keeps them.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<|ecg_pad|>", "<|ecg_start|>", "<|ecg_end|>",  # the release's order: pad, start, end
)
THINK_TOKENS: tuple[str, ...] = ("<think>", "</think>")

# A chat template equal to what EcgR1Processor.prompt writes (string contents only).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_TEXT: dict[str, Any] = {
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 3,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64,  # CPU vLLM needs head_dim 64
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                        "mrope_section": [12, 10, 10], "mrope_interleaved": True},  # sums to head_dim / 2
}
TINY_VISION: dict[str, Any] = {
    "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
    "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
    "out_hidden_size": 128, "num_position_embeddings": 256, "deepstack_visual_indexes": [0, 1],
}
TINY_ECG: dict[str, Any] = {"width": 64, "layers": 2, "heads": 4, "mlp_ratio": 4.0, "output_dim": 32,
                            "patch_size": 50, "seq_length": 5000, "lead_num": 12}
TINY_VOCAB_SIZE = 1024  # BPE target; the model's vocab is the tokenizer's length rounded up to 64


# -- tokenizer ------------------------------------------------------------------------------

_RHYTHMS = ["sinus rhythm", "sinus bradycardia", "sinus tachycardia", "atrial fibrillation", "atrial flutter"]
_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
_FINDINGS = ["left ventricular hypertrophy", "right bundle branch block", "left bundle branch block",
             "first degree AV block", "left axis deviation", "right axis deviation", "low QRS voltage",
             "inferior myocardial infarction", "anterior ST elevation", "nonspecific T wave abnormality",
             "prolonged QT", "premature ventricular complexes", "normal ECG"]


def protocol_corpus(n: int = 300, seed: int = 0) -> list[str]:
    """Synthetic texts in the ECG-R1 output format, for training a small tokenizer."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        hr, pr, qrs, qtc = rng.randint(40, 160), rng.randint(100, 300), rng.randint(70, 170), rng.randint(360, 520)
        lead, lead2 = rng.choice(_LEADS), rng.choice(_LEADS)
        rhythm, finding = rng.choice(_RHYTHMS), rng.choice(_FINDINGS)
        steps = {
            1: f"Paper speed 25 mm/s, 10 mm/mV. Heart rate {hr} bpm, {rhythm}; P waves upright in II, III and aVF.",
            2: f"PR interval {pr} ms, QRS duration {qrs} ms. Axis {rng.randint(-90, 180)} degrees; lead {lead} positive.",
            3: f"R wave in {lead2} {rng.randint(3, 30)} mm; S(V1) + R(V5) = {rng.randint(10, 50)} mm.",
            4: f"ST deviation {rng.choice(['+', '-'])}{rng.randint(0, 4)} mm in {lead}; no pathological Q waves.",
            5: f"QTc {qtc} ms; T waves {rng.choice(['upright', 'flat', 'inverted', 'tented'])} in {lead2}.",
            6: f"Findings support {finding} with {rhythm}.",
        }
        texts.append(format_output(steps, f"The ECG shows {rhythm} at {hr} bpm with {finding}.",
                                   [rhythm, finding]))
    return texts


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it with Qwen's chat/ECG tokens and a chat template."""
    backend = Tokenizer(models.BPE())
    # Digits one by one, as Qwen's own tokenizer splits them: with whole numbers as tokens (" 72") every
    # heart rate or interval is a class of its own that a few hundred rows show a handful of times, and a
    # small model cannot learn that 72 lies between 71 and 73; digit by digit it predicts tens, then units.
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(list(texts), trainer)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# -- configurations ---------------------------------------------------------------------------

def _token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
        ("ecg_token_id", "<|ecg_pad|>"), ("ecg_start_token_id", "<|ecg_start|>"),
        ("ecg_end_token_id", "<|ecg_end|>"))}
    return ids


def tiny_config(tokenizer: PreTrainedTokenizerBase, *, demonstration: bool = False) -> EcgR1Config:
    vocab = -(-len(tokenizer) // 64) * 64
    pad = tokenizer.pad_token_id
    return EcgR1Config(
        text_config={**TINY_TEXT, "vocab_size": vocab, "pad_token_id": pad},
        vision_config=TINY_VISION, ecg_config=TINY_ECG, ecg_projector_type="mlp2x_gelu",
        tie_word_embeddings=False, ecgwl_demonstration=demonstration, **_token_ids(tokenizer),
    )


def real_8b_config(tokenizer: PreTrainedTokenizerBase | None = None) -> EcgR1Config:
    """Qwen3-VL-8B-Instruct shapes + the ECG-CoCa tower, for random-weight benchmarks on a GPU.

    Token ids come from `tokenizer` when given (e.g. the tiny one); without it they are set
    past Qwen3's 151,669 tokens for benchmarking only: a real checkpoint's ids come from its
    own config and tokenizer.
    """
    ids = _token_ids(tokenizer) if tokenizer is not None else {
        "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
        "vision_end_token_id": 151653, "ecg_token_id": 151669, "ecg_start_token_id": 151670,
        "ecg_end_token_id": 151671}  # the release's order: pad, start, end
    return EcgR1Config(
        text_config={"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
                     "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
                     "head_dim": 128, "max_position_embeddings": 262144, "rms_norm_eps": 1e-6,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                         "mrope_section": [24, 20, 20], "mrope_interleaved": True},
                     "pad_token_id": tokenizer.pad_token_id if tokenizer is not None else None},
        vision_config={"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                       "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "out_hidden_size": 4096, "num_position_embeddings": 2304,
                       "deepstack_visual_indexes": [8, 16, 24], "hidden_act": "gelu_pytorch_tanh"},
        ecg_config={}, ecg_projector_type="mlp2x_gelu", ecg_model_config="coca_ViT-B-32",
        tie_word_embeddings=False, **ids,
    )


# -- tiny model -------------------------------------------------------------------------------

def make_tiny_processor(texts: Iterable[str] | None = None) -> EcgR1Processor:
    tokenizer = build_tiny_tokenizer(texts if texts is not None else protocol_corpus())
    return EcgR1Processor(tokenizer, make_image_processor())


def make_tiny_model(seed: int = 0, *, processor: EcgR1Processor | None = None,
                    demonstration: bool = False) -> tuple[ECGR1ForConditionalGeneration, EcgR1Processor]:
    """A randomly initialised tiny ECG-R1 (same seed, same weights) and its processor."""
    processor = processor or make_tiny_processor()
    config = tiny_config(processor.tokenizer, demonstration=demonstration)
    torch.manual_seed(seed)
    model = ECGR1ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=processor.stop_token_ids, pad_token_id=processor.tokenizer.pad_token_id,
        do_sample=False, max_new_tokens=2048)
    return model, processor


def save_tiny_model(path: str | Path, seed: int = 0, *, demonstration: bool = False) -> Path:
    """Write a tiny checkpoint (safetensors, config.json, tokenizer, preprocessor) like a released one."""
    model, processor = make_tiny_model(seed, demonstration=demonstration)
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


__all__ = [
    "SPECIAL_TOKENS",
    "TINY_ECG",
    "TINY_TEXT",
    "TINY_VISION",
    "build_tiny_tokenizer",
    "make_tiny_model",
    "make_tiny_processor",
    "protocol_corpus",
    "real_8b_config",
    "save_tiny_model",
    "tiny_config",
]
