"""ECG-R1 inference engines behind one interface (`model.engines.base.Engine`, an `Interpreter`).

    engine = load_engine("hf", "/models/ecg-r1")          # transformers, CPU or GPU
    engine = load_engine("vllm", "/models/ecg-r1")        # vLLM (optional extra, imported lazily)
    interpretations = engine.interpret(prepared_batch)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from model.engines.base import Engine, GenerationRequest, GenerationResult

EngineKind = Literal["hf", "vllm"]


def load_engine(kind: EngineKind, model_path: str | Path, **options: Any) -> Engine:
    """The engine `kind` serving the checkpoint at `model_path` (a folder or hub id)."""
    if kind == "hf":
        from model.engines.hf_engine import HfEngine

        return HfEngine.from_pretrained(model_path, **options)
    if kind == "vllm":
        # vLLM is an optional extra with its own environment: import it only when asked for.
        from model.engines.vllm_engine import VllmEngine

        return VllmEngine.from_pretrained(model_path, **options)
    raise ValueError(f"unknown engine kind {kind!r} (expected 'hf' or 'vllm')")


__all__ = ["Engine", "EngineKind", "GenerationRequest", "GenerationResult", "load_engine"]
