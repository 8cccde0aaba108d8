"""The transformers engine: ECG-R1 with `model.generate`, on CPU (float32) or GPU (bfloat16).

Batches are LEFT padded with an attention mask, so every row's prompt ends where generation
starts; decoding is greedy. Used by the tests, the demonstration model and GPU hosts without vLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import GenerationConfig

from model.checkpoint import load_ecg_r1, resolve_checkpoint
from model.engines.base import DEFAULT_MAX_NEW_TOKENS, Engine, GenerationRequest, GenerationResult, cut_at_stop
from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration
from model.input_contract import ECGWL_CONTRACT, EcgInputContract, contract_for_checkpoint
from model.processing_ecg_r1 import EcgR1Processor


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class HfEngine(Engine):
    def __init__(self, model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, *, version: str,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, batch_size: int = 8,
                 contract: EcgInputContract = ECGWL_CONTRACT) -> None:
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be positive")
        self.model = model.eval()
        self.processor = processor
        self.version = version
        self.is_demonstration = bool(model.config.ecgwl_demonstration)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.contract = contract
        self.stop_ids = processor.stop_token_ids
        if model.config.ecg_token_id != processor.ecg_token_id:
            raise ValueError(f"model ecg_token_id {model.config.ecg_token_id} != tokenizer's {processor.ecg_token_id}")
        # transformers fills unset generation settings from the checkpoint's generation_config.json
        # (Qwen3-VL ships sampling settings there): replace it so decoding is plain greedy.
        self.model.generation_config = self._generation_config()

    @classmethod
    def from_pretrained(cls, model_path: str | Path, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, ecg_tower_path: str | Path | None = None,
                        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, batch_size: int = 8,
                        contract: EcgInputContract | None = None, version: str | None = None) -> HfEngine:
        """`contract`: the input contract, by default the checkpoint's own (config.json "ecg_input")."""
        folder = resolve_checkpoint(model_path)
        contract = contract or contract_for_checkpoint(folder)
        device = torch.device(device) if device is not None else default_device()
        model = load_ecg_r1(folder, ecg_tower_path=ecg_tower_path, dtype=dtype, device=device)
        processor = EcgR1Processor.from_pretrained(folder, max_image_tokens=contract.max_image_tokens,
                                                   min_image_tokens=contract.min_image_tokens,
                                                   ecg_num_tokens=model.config.ecg_num_tokens)
        return cls(model, processor, version=version or str(model_path), max_new_tokens=max_new_tokens,
                   batch_size=batch_size, contract=contract)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _generation_config(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                eos_token_id=self.stop_ids, pad_token_id=self.processor.tokenizer.pad_token_id)

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            inputs = self.processor([r.to_sample() for r in chunk], padding_side="left").to(self.device)
            output = self.model.generate(**inputs, generation_config=self.model.generation_config)
            new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
            for row in new_tokens:
                ids, finished = cut_at_stop(row, self.stop_ids)
                results.append(GenerationResult(token_ids=ids, text=self.processor.decode(ids), finished=finished))
        return results


__all__ = ["HfEngine", "default_device"]
