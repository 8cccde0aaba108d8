"""From ECG inputs to ECG-R1 model inputs: the prompt, the signal tensor and the image patches.

    sample (signal 12xN and/or PIL image, prompt order)
      -> chat prompt: system prompt, user turn "<ecg><image>\\n<instruction>" (tags of what is present)
      -> `<ecg>`   = <|ecg_start|> + 101 x <|ecg_pad|> + <|ecg_end|>
         `<image>` = <|vision_start|> + n x <|image_pad|> + <|vision_end|>, n from the image grid
      -> input_ids (LEFT padded for generation), attention_mask, mm_token_type_ids,
         ecg_values [N_ecg, 12, 5000], pixel_values + image_grid_thw

Images are capped at 768 visual tokens (max_pixels = 768 * 32 * 32): the release was
evaluated that way and accuracy drops without the cap. Image processing uses transformers'
PIL backend, so no torchvision is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ingest.ecg import MODEL_WINDOW_SAMPLES
from model.prompts import ECG_TAG, IMAGE_TAG, INSTRUCTION, SYSTEM_PROMPT

MODALITIES = ("ecg", "image")  # default prompt order
ECG_START, ECG_PAD, ECG_END = "<|ecg_start|>", "<|ecg_pad|>", "<|ecg_end|>"
VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"

ECG_LEADS = 12
MAX_IMAGE_TOKENS = 768  # the release's cap
MIN_IMAGE_TOKENS = 4
IGNORE_INDEX = -100  # label value of tokens that carry no loss


@dataclass
class EcgR1Sample:
    """One prompt's inputs. `order` is the prompt order of the modalities given (None: ecg, image)."""

    signal: np.ndarray | None = None  # (12, N) mV, 500 Hz
    image: Any = None  # PIL.Image
    order: tuple[str, ...] | None = None
    instruction: str = INSTRUCTION

    def modalities(self) -> tuple[str, ...]:
        present = tuple(m for m in MODALITIES if (self.signal if m == "ecg" else self.image) is not None)
        if self.order is None:
            return present
        if sorted(self.order) != sorted(present):
            raise ValueError(f"prompt order {self.order} does not match the inputs given {present}")
        return tuple(self.order)


def prepare_signal(signal: np.ndarray, samples: int = MODEL_WINDOW_SAMPLES) -> np.ndarray:
    """The release's signal preparation: float32 (12, samples), NaN/Inf -> 0, zero-pad or truncate at the end.

    No resampling, filtering or normalisation (the signal must already be 500 Hz, in mV).
    """
    data = np.asarray(signal, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] != ECG_LEADS:
        raise ValueError(f"ECG-R1 takes a (12, N) signal, got shape {data.shape}")
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    out = np.zeros((ECG_LEADS, samples), dtype=np.float32)
    n = min(samples, data.shape[1])
    out[:, :n] = data[:, :n]
    return out


def make_image_processor(patch_size: int = 16, merge_size: int = 2, temporal_patch_size: int = 2,
                         image_mean: Sequence[float] = (0.5, 0.5, 0.5), image_std: Sequence[float] = (0.5, 0.5, 0.5),
                         max_image_tokens: int | None = MAX_IMAGE_TOKENS,
                         min_image_tokens: int = MIN_IMAGE_TOKENS) -> Qwen2VLImageProcessorPil:
    """Qwen3-VL's image processor (PIL backend). `max_image_tokens=None` leaves Qwen3-VL's own, uncapped size."""
    unit = (patch_size * merge_size) ** 2  # pixels per visual token after the 2x2 merge
    size = ({"shortest_edge": 65536, "longest_edge": 16777216} if max_image_tokens is None  # Qwen3-VL defaults
            else {"shortest_edge": min_image_tokens * unit, "longest_edge": max_image_tokens * unit})
    return Qwen2VLImageProcessorPil(patch_size=patch_size, merge_size=merge_size,
                                    temporal_patch_size=temporal_patch_size, image_mean=list(image_mean),
                                    image_std=list(image_std), size=size)


class EcgR1Processor:
    """Tokenizer + image processor + the ECG-R1 prompt. Special-token ids come from the tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_processor: Qwen2VLImageProcessorPil | None = None,
                 *, ecg_num_tokens: int = 101, system_prompt: str = SYSTEM_PROMPT,
                 ecg_samples: int = MODEL_WINDOW_SAMPLES) -> None:
        self.tokenizer = tokenizer
        self.ecg_samples = ecg_samples  # the tower's input length: signals are cut or padded to it
        self.image_processor = image_processor or make_image_processor()
        self.ecg_num_tokens = ecg_num_tokens
        self.system_prompt = system_prompt
        ids = {token: tokenizer.convert_tokens_to_ids(token)
               for token in (ECG_START, ECG_PAD, ECG_END, VISION_START, IMAGE_PAD, VISION_END)}
        unknown = [t for t, i in ids.items() if i is None or i == tokenizer.unk_token_id or
                   tokenizer.convert_ids_to_tokens(i) != t]
        if unknown:
            raise ValueError(f"tokenizer lacks the special token(s) {unknown}")
        self.ecg_start_token_id, self.ecg_token_id, self.ecg_end_token_id = ids[ECG_START], ids[ECG_PAD], ids[ECG_END]
        self.vision_start_token_id, self.image_token_id = ids[VISION_START], ids[IMAGE_PAD]
        self.vision_end_token_id = ids[VISION_END]
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token (batched generation pads on the left)")

    # -- loading and saving ---------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, *, max_image_tokens: int | None = MAX_IMAGE_TOKENS,
                        min_image_tokens: int = MIN_IMAGE_TOKENS, ecg_num_tokens: int | None = None,
                        ) -> EcgR1Processor:
        """Tokenizer from `path`; image settings from its preprocessor_config.json, with the
        visual-token budget given (the 768-token cap unless told; engines pass the checkpoint's)."""
        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        settings: dict[str, Any] = {}
        if (path / "preprocessor_config.json").is_file():
            saved = json.loads((path / "preprocessor_config.json").read_text())
            settings = {k: saved[k] for k in ("patch_size", "merge_size", "temporal_patch_size",
                                              "image_mean", "image_std") if k in saved}
        if ecg_num_tokens is None and (path / "config.json").is_file():
            ecg_num_tokens = json.loads((path / "config.json").read_text()).get("ecg_num_tokens")
        ecg_samples = MODEL_WINDOW_SAMPLES
        if (path / "config.json").is_file():
            tower = json.loads((path / "config.json").read_text()).get("ecg_config") or {}
            ecg_samples = int(tower.get("seq_length", ecg_samples))
        return cls(tokenizer, make_image_processor(**settings, max_image_tokens=max_image_tokens,
                                                   min_image_tokens=min_image_tokens),
                   ecg_num_tokens=ecg_num_tokens or 101, ecg_samples=ecg_samples)

    def save_pretrained(self, path: str | Path) -> None:
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)

    # -- prompt ---------------------------------------------------------------------------

    def prompt(self, order: Sequence[str], instruction: str = INSTRUCTION) -> str:
        """The chat prompt with one placeholder per modality (before expansion), ending at the assistant turn."""
        tags = "".join({"ecg": ECG_TAG, "image": IMAGE_TAG}[m] for m in order)
        if not tags:
            raise ValueError("a prompt needs at least one modality (ecg or image)")
        user = f"{tags}\n{instruction}"
        user = user.replace(ECG_TAG, ECG_START + ECG_PAD + ECG_END)
        user = user.replace(IMAGE_TAG, VISION_START + IMAGE_PAD + VISION_END)
        return (f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n"
                f"<|im_start|>user\n{user}<|im_end|>\n"
                f"<|im_start|>assistant\n")

    def expand_placeholders(self, prompt: str, image_token_counts: Sequence[int]) -> str:
        """Repeat <|ecg_pad|> to the ECG token count and each image's <|image_pad|> to its token count."""
        prompt = prompt.replace(ECG_PAD, ECG_PAD * self.ecg_num_tokens)
        pieces = prompt.split(IMAGE_PAD)
        if len(pieces) - 1 != len(image_token_counts):
            raise ValueError(f"prompt has {len(pieces) - 1} image placeholder(s), {len(image_token_counts)} image(s) given")
        out = [pieces[0]]
        for count, piece in zip(image_token_counts, pieces[1:], strict=True):
            out += [IMAGE_PAD * count, piece]
        return "".join(out)

    def num_image_tokens(self, height: int, width: int) -> int:
        """Visual tokens an image of this size costs after the 2x2 merge."""
        ip = self.image_processor
        patches = ip.get_number_of_image_patches(height, width, {})
        return patches // (ip.merge_size ** 2)

    # -- batches --------------------------------------------------------------------------

    def __call__(self, samples: Sequence[EcgR1Sample], targets: Sequence[str] | None = None,
                 padding_side: str = "left") -> BatchFeature:
        """Model inputs for a batch. With `targets` (training), each target + <|im_end|> is
        appended and `labels` mark only the target tokens."""
        orders = [s.modalities() for s in samples]
        images = [s.image.convert("RGB") for s, o in zip(samples, orders, strict=True) if "image" in o]
        signals = [prepare_signal(s.signal, self.ecg_samples) for s, o in zip(samples, orders, strict=True)
                   if "ecg" in o]

        data: dict[str, Any] = {}
        counts: list[int] = []
        if images:
            vision = self.image_processor(images=images, return_tensors="pt")
            data["pixel_values"], data["image_grid_thw"] = vision["pixel_values"], vision["image_grid_thw"]
            counts = (vision["image_grid_thw"].prod(-1) // self.image_processor.merge_size ** 2).tolist()
        if signals:
            data["ecg_values"] = torch.from_numpy(np.stack(signals))

        sequences, label_masks = [], []
        image_index = 0
        for i, (sample, order) in enumerate(zip(samples, orders, strict=True)):
            n_images = order.count("image")
            text = self.expand_placeholders(self.prompt(order, sample.instruction),
                                            counts[image_index:image_index + n_images])
            image_index += n_images
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            is_target = [False] * len(ids)
            if targets is not None:
                target_ids = self.tokenizer(targets[i] + "<|im_end|>", add_special_tokens=False)["input_ids"]
                ids, is_target = ids + target_ids, is_target + [True] * len(target_ids)
            sequences.append(ids)
            label_masks.append(is_target)

        data.update(self._pad(sequences, label_masks, padding_side, with_labels=targets is not None))
        return BatchFeature(data=data)

    def _pad(self, sequences: list[list[int]], label_masks: list[list[bool]], side: str,
             with_labels: bool) -> dict[str, torch.Tensor]:
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        length = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(sequences), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        labels = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
        for row, (ids, is_target) in enumerate(zip(sequences, label_masks, strict=True)):
            span = slice(length - len(ids), length) if side == "left" else slice(0, len(ids))
            input_ids[row, span] = torch.tensor(ids)
            attention_mask[row, span] = 1
            labels[row, span] = torch.where(torch.tensor(is_target), torch.tensor(ids), IGNORE_INDEX)
        # Qwen3-VL's M-RoPE needs each token's modality: text (and ECG) 0, image 1.
        mm_token_type_ids = ((input_ids == self.image_token_id) & attention_mask.bool()).int()
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "mm_token_type_ids": mm_token_type_ids}
        if with_labels:
            out["labels"] = labels
        return out

    def decode(self, token_ids: Sequence[int]) -> str:
        """Generated ids to text; <think>/</think> are ordinary added tokens and stay in the text."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    @property
    def stop_token_ids(self) -> list[int]:
        """<|im_end|> ends the assistant turn; <|endoftext|> where the tokenizer has it."""
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        return [i for i in ids if i is not None and i != self.tokenizer.unk_token_id]


__all__ = [
    "INSTRUCTION",
    "MAX_IMAGE_TOKENS",
    "SYSTEM_PROMPT",
    "EcgR1Processor",
    "EcgR1Sample",
    "make_image_processor",
    "prepare_signal",
]
