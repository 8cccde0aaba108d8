"""The one interface every ECG-R1 engine (transformers, vLLM) implements.

An engine IS an `ingest.interpretation.Interpreter`: a batch of `PreparedEcg` in, one
`Interpretation` per ECG out, in order. Underneath, `generate` turns `GenerationRequest`s
into `GenerationResult`s (token ids and text); the engine-parity tests compare those.

Conventions both engines keep, so their outputs compare token for token:
- greedy decoding, `max_new_tokens` (2048 by default, as in the release);
- `GenerationResult.token_ids` are the generated ids up to and EXCLUDING the first stop
  token (`<|im_end|>` or `<|endoftext|>`); `finished` says whether a stop token was reached;
- `text` is `processor.decode(token_ids)` (special tokens dropped, `<think>` kept).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.interpretation import Interpretation
from ingest.prepare import PreparedEcg
from ingest.report_format import ParsedOutput, parse_output
from model.input_contract import ECGWL_CONTRACT, EcgInputContract
from model.processing_ecg_r1 import EcgR1Sample

INTERPRETER_NAME = "ecg-r1"
DEMONSTRATION_BANNER = "DEMONSTRATION MODEL - NOT FOR CLINICAL USE"
DEFAULT_MAX_NEW_TOKENS = 2048


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt: a (12, N) 500 Hz mV signal and/or an image, and optionally their prompt order."""

    signal: np.ndarray | None = None
    image: Any = None  # PIL.Image
    order: tuple[str, ...] | None = None

    def to_sample(self) -> EcgR1Sample:
        return EcgR1Sample(signal=self.signal, image=self.image, order=self.order)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.to_sample().modalities()


@dataclass(frozen=True)
class GenerationResult:
    token_ids: list[int]  # generated ids, first stop token and anything after it excluded
    text: str
    finished: bool  # True when a stop token ended the output (False: max_new_tokens reached)


def request_from_prepared(prepared: PreparedEcg, contract: EcgInputContract = ECGWL_CONTRACT) -> GenerationRequest:
    """Whatever the prepared ECG has, as the checkpoint's `contract` wants it: the signal in its
    lead order, rate and length, and the image (the source's page, or a page drawn now from the
    signal in the checkpoint's style); or image only (scans)."""
    signal = None if prepared.model_signal is None else contract.model_signal(prepared.model_signal)
    return GenerationRequest(signal=signal, image=prepared.page(style=contract.image_style))


def cut_at_stop(token_ids: Sequence[int], stop_ids: Sequence[int]) -> tuple[list[int], bool]:
    """Generated ids up to the first stop token (pads only ever follow one), and whether there was one."""
    ids = [int(t) for t in token_ids]
    for i, token in enumerate(ids):
        if token in stop_ids:
            return ids[:i], True
    return ids, False


class Engine(ABC):
    """ECG-R1 behind one interface; subclasses implement `generate`."""

    name: str = INTERPRETER_NAME
    version: str
    is_demonstration: bool
    # What the checkpoint was trained on (config.json "ecg_input"); engines built from a
    # checkpoint folder read it from there, engines built around a model object get ours.
    contract: EcgInputContract = ECGWL_CONTRACT

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy outputs for the requests, in order."""

    def interpret(self, batch: list[PreparedEcg]) -> list[Interpretation]:
        """One Interpretation per prepared ECG, in order; an ECG with nothing to read is flagged, not dropped."""
        requests = [request_from_prepared(p, self.contract) for p in batch]
        usable = [i for i, r in enumerate(requests) if r.signal is not None or r.image is not None]
        results = dict(zip(usable, self.generate([requests[i] for i in usable]), strict=True))
        out = []
        for i, request in enumerate(requests):
            if i in results:
                out.append(self.to_interpretation(results[i].text, request.modalities))
            else:
                parsed = parse_output("")
                parsed.problems.insert(0, "no signal or image to interpret")
                out.append(self._interpretation("", parsed, []))
        return out

    def to_interpretation(self, text: str, modalities: Sequence[str]) -> Interpretation:
        """The model's text kept verbatim (malformed output flagged by the parser, never dropped)."""
        if self.is_demonstration:
            text = f"{DEMONSTRATION_BANNER}\n{text}"
        parsed = parse_output(text)
        if self.is_demonstration and not parsed.narrative.startswith(DEMONSTRATION_BANNER):
            parsed.narrative = f"{DEMONSTRATION_BANNER}. {parsed.narrative}".strip()
        return self._interpretation(text, parsed, list(modalities))

    def _interpretation(self, text: str, parsed: ParsedOutput, modalities: list[str]) -> Interpretation:
        return Interpretation(interpreter=self.name, interpreter_version=self.version,
                              is_demonstration=self.is_demonstration, modalities=modalities,
                              raw_text=text, parsed=parsed)


__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DEMONSTRATION_BANNER",
    "Engine",
    "GenerationRequest",
    "GenerationResult",
    "cut_at_stop",
    "request_from_prepared",
]
