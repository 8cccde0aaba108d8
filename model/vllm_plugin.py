"""vLLM plugin entry point for ECG-R1 (declared in pyproject.toml under `vllm.general_plugins`).

vLLM calls `register()` in every process it starts (the front end, the engine core and each
worker), before it resolves a checkpoint's architecture. Registration must therefore be
cheap, idempotent and import nothing heavy: the model class is registered by its
"module:Class" string, so vLLM imports `model.vllm_ecg_r1` only when it is asked for. Our
engine always asks for `OWN_ARCHITECTURE`, so the release's plugin (entry point `ecg_r1`,
registering its own class as `ECGR1ForConditionalGeneration`) installed beside ours cannot
replace our class; ours is declared as `ecgwl_ecg_r1`, so both plugins load. (The config itself
needs no registration: ECG-R1 keeps Qwen3-VL's `model_type`, which transformers knows.)
"""

from __future__ import annotations

ARCHITECTURE = "ECGR1ForConditionalGeneration"  # the name checkpoints carry (ours and the release's)
# The name our engine asks vLLM for (config override, `model.engines.vllm_engine`): the release's own
# vLLM plugin registers its class under ARCHITECTURE too, and whichever plugin runs last would
# otherwise decide, silently, which class serves a checkpoint. Nobody else registers this one.
OWN_ARCHITECTURE = "EcgwlECGR1ForConditionalGeneration"
MODEL_CLASS_PATH = "model.vllm_ecg_r1:ECGR1ForConditionalGeneration"


def register() -> None:
    """Make ECG-R1 known to vLLM's model registry under our own name, and under the checkpoints'
    name unless another plugin (the release's) already took it."""
    from vllm import ModelRegistry

    supported = ModelRegistry.get_supported_archs()
    if OWN_ARCHITECTURE not in supported:
        ModelRegistry.register_model(OWN_ARCHITECTURE, MODEL_CLASS_PATH)
    if ARCHITECTURE not in supported:
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS_PATH)
