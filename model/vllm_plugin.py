"""vLLM plugin entry point for ECG-R1 (declared in pyproject.toml under `vllm.general_plugins`).

vLLM calls `register()` in every process it starts (the front end, the engine core and each
worker), before it resolves a checkpoint's architecture. Registration must therefore be
cheap, idempotent and import nothing heavy: the model class is registered by its
"module:Class" string, so vLLM imports `model.vllm_ecg_r1` only when a checkpoint's
config.json names the `ECGR1ForConditionalGeneration` architecture. (The config itself
needs no registration: ECG-R1 keeps Qwen3-VL's `model_type`, which transformers knows.)
"""

from __future__ import annotations

ARCHITECTURE = "ECGR1ForConditionalGeneration"
MODEL_CLASS_PATH = "model.vllm_ecg_r1:ECGR1ForConditionalGeneration"


def register() -> None:
    """Make the ECG-R1 architecture known to vLLM's model registry."""
    from vllm import ModelRegistry

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS_PATH)
