"""ECG-R1 as a vLLM model (vLLM 0.32, pinned: its multimodal processor API changes between releases).

vLLM already serves Qwen3-VL; ECG-R1 is Qwen3-VL plus one input. This module extends vLLM's
Qwen3-VL classes with a third modality, "ecg", and leaves the text and image paths untouched:

    LLM.generate({"prompt_token_ids": ids, "multi_modal_data": {"image": PIL, "ecg": (12, 5000)}})
      data parser   : "ecg" -> EcgSignalItems (prepare_signal: float32, NaN -> 0, pad/cut to 5000)
      HF processor  : sees only the image; the signals pass straight through as `ecg_signals`
      prompt update : the single <|ecg_pad|> of <|ecg_start|><|ecg_pad|><|ecg_end|> -> 101 copies
      embed_multimodal("ecg") : EcgTower -> projector -> [101, hidden] per ECG (zeros for deepstack)
      M-RoPE        : ECG tokens are text positions (only image/video features get grid positions)

The tower and projector are the transformers model's own modules (`model.modeling_ecg_r1`),
so both engines run the same code on the ECG; the image processor is the project's own too
(PIL backend, 768-token cap), so both engines see the same pixels.

Registered with vLLM by `model.vllm_plugin.register` (entry point `vllm.general_plugins`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, PretrainedConfig
from transformers.models.qwen3_vl import Qwen3VLProcessor
from vllm.config import VllmConfig
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.inputs import MultiModalDataDict
from vllm.model_executor.models.module_mapping import MultiModelKeys
from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalDataParser,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
)
from vllm.model_executor.models.utils import AutoWeightsLoader, StageMissingLayer, WeightsMapper
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFeatureSpec, MultiModalFieldConfig, MultiModalKwargsItem
from vllm.multimodal.parse import ModalityDataItems, MultiModalDataItems
from vllm.multimodal.processing import PromptReplacement, PromptUpdate

from model.checkpoint import CheckpointError, load_ecg_tower_state
from model.modeling_ecg_r1 import (
    ECG_END_TOKEN,
    ECG_PAD_TOKEN,
    ECG_START_TOKEN,
    EcgR1Config,
    EcgTower,
    build_ecg_projector,
)
from model.input_contract import contract_for_config
from model.processing_ecg_r1 import make_image_processor, prepare_signal

ECG_MODALITY = "ecg"
ECG_FIELD = "ecg_signals"  # the keyword under which signals reach embed_multimodal
ECG_PLACEHOLDER = ECG_START_TOKEN + ECG_PAD_TOKEN + ECG_END_TOKEN  # what a prompt carries per ECG


def ecg_r1_config(hf_config: PretrainedConfig) -> EcgR1Config:
    """The ECG settings of a checkpoint, with the release's defaults filled in.

    A released config.json says `model_type: qwen3_vl`, so vLLM reads it as a plain
    Qwen3VLConfig whose extra `ecg_*` fields are attributes; re-reading it as EcgR1Config
    applies the same defaults and checks as the transformers model.
    """
    if isinstance(hf_config, EcgR1Config):
        return hf_config
    return EcgR1Config.from_dict(hf_config.to_dict())


# -- input side: parsing, processing, dummy inputs ------------------------------------------


class EcgSignalItems(ModalityDataItems[list[np.ndarray], np.ndarray]):
    """The ECG signals of one prompt, each a prepared (12, samples) float32 array.

    They skip the HF processor (which knows nothing of ECGs) and reach the model as one
    batched tensor under `ecg_signals`.
    """

    def __init__(self, signals: list[np.ndarray]) -> None:
        super().__init__(signals, ECG_MODALITY)

    def get_count(self) -> int:
        return len(self.data)

    def get(self, index: int) -> np.ndarray:
        return self.data[index]

    def get_processor_data(self) -> Mapping[str, object]:
        return {}

    def get_passthrough_data(self) -> Mapping[str, object]:
        return {ECG_FIELD: torch.from_numpy(np.stack(self.data))}


class EcgR1DataParser(Qwen3VLMultiModalDataParser):
    """Qwen3-VL's parser plus an "ecg" entry: one (12, N) array, a list of them, or an (n, 12, N) stack."""

    def __init__(self, *args: Any, ecg_samples: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ecg_samples = ecg_samples

    def _get_subparsers(self) -> Mapping[str, Any]:
        return {**super()._get_subparsers(), ECG_MODALITY: self._parse_ecg_data}

    def _parse_ecg_data(self, data: object) -> EcgSignalItems | None:
        if data is None:
            return None
        if isinstance(data, (np.ndarray, torch.Tensor)):
            items = [data] if data.ndim == 2 else list(data)
        elif isinstance(data, (list, tuple)):
            items = list(data)
        else:
            raise ValueError(f"ecg input must be a (12, N) array or a list of them, got {type(data).__name__}")
        signals = []
        for item in items:
            if isinstance(item, torch.Tensor):
                item = item.detach().cpu().float().numpy()
            if not isinstance(item, np.ndarray):
                raise ValueError(f"ecg input must be a (12, N) array, got {type(item).__name__}")
            # The release's preparation, exactly as the transformers processor applies it.
            signals.append(prepare_signal(item, samples=self.ecg_samples))
        return EcgSignalItems(signals)


class EcgR1ProcessingInfo(Qwen3VLProcessingInfo):
    """Qwen3-VL's processing info, aware of the ECG modality and of ECG-R1's image settings."""

    @cached_property
    def ecg_config(self) -> EcgR1Config:
        return ecg_r1_config(self.get_hf_config())

    @property
    def ecg_num_tokens(self) -> int:
        return int(self.ecg_config.ecg_num_tokens)

    @cached_property
    def ecg_token_id(self) -> int:
        """The id of <|ecg_pad|>: from the config, else from the tokenizer (as the loader does)."""
        configured = self.ecg_config.ecg_token_id
        if configured is not None:
            return int(configured)
        token_id = self.get_tokenizer().convert_tokens_to_ids(ECG_PAD_TOKEN)
        if token_id is None:
            raise ValueError(f"the tokenizer has no {ECG_PAD_TOKEN} token and the config no ecg_token_id")
        return int(token_id)

    def get_hf_processor(self, **kwargs: object) -> Qwen3VLProcessor:
        """The checkpoint's Qwen3-VL processor, its image processor replaced by the project's.

        The project's one (transformers' PIL backend, capped at 768 visual tokens) is what the
        transformers engine uses: the torchvision backend resizes differently (pixel values
        differ by up to 2/255), and a released preprocessor_config.json has no cap.
        """
        processor = super().get_hf_processor(**kwargs)
        processor.image_processor = self._ecg_r1_image_processor
        return processor

    @cached_property
    def _ecg_r1_image_processor(self) -> Any:
        saved = super().get_hf_processor().image_processor  # the checkpoint's settings
        contract = contract_for_config(self.get_hf_config().to_dict())  # its "ecg_input" budget
        return make_image_processor(
            patch_size=saved.patch_size, merge_size=saved.merge_size,
            temporal_patch_size=saved.temporal_patch_size, image_mean=saved.image_mean,
            image_std=saved.image_std, max_image_tokens=contract.max_image_tokens,
            min_image_tokens=contract.min_image_tokens)

    def get_data_parser(self) -> EcgR1DataParser:
        return EcgR1DataParser(
            self.get_hf_config().vision_config.spatial_merge_size,
            video_needs_metadata=True,
            expected_hidden_size=self._get_expected_hidden_size(),
            allow_missing_mm_embeddings=self.allow_missing_mm_embeddings,
            ecg_samples=int(self.ecg_config.ecg_config["seq_length"]),
        )

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {**super().get_supported_mm_limits(), ECG_MODALITY: None}

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        return {**super().get_mm_max_tokens_per_item(seq_len, mm_counts), ECG_MODALITY: self.ecg_num_tokens}


class EcgR1DummyInputsBuilder(Qwen3VLDummyInputsBuilder):
    """Profiling inputs: Qwen3-VL's largest image/video plus all-zero ECGs."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return super().get_dummy_text(mm_counts) + ECG_PLACEHOLDER * mm_counts.get(ECG_MODALITY, 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int],
                          mm_options: MultiModalDummyOptions) -> MultiModalDataDict:
        data = dict(super().get_dummy_mm_data(seq_len, mm_counts, mm_options))
        settings = self.info.ecg_config.ecg_config
        shape = (int(settings["lead_num"]), int(settings["seq_length"]))
        data[ECG_MODALITY] = [np.zeros(shape, dtype=np.float32)] * mm_counts.get(ECG_MODALITY, 0)
        return data


class EcgR1MultiModalProcessor(Qwen3VLMultiModalProcessor):
    """Qwen3-VL's processor plus the ECG field and the <|ecg_pad|> expansion."""

    def _get_mm_fields_config(self, hf_inputs: BatchFeature,
                              hf_processor_mm_kwargs: Mapping[str, object]) -> Mapping[str, MultiModalFieldConfig]:
        fields = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        fields[ECG_FIELD] = MultiModalFieldConfig.batched(ECG_MODALITY)
        return fields

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, Any],
                            out_mm_kwargs: Any) -> Sequence[PromptUpdate]:
        updates = list(super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs))
        pad = self.info.ecg_token_id
        updates.append(PromptReplacement(modality=ECG_MODALITY, target=[pad],
                                         replacement=[pad] * self.info.ecg_num_tokens))
        return updates


# -- the model -------------------------------------------------------------------------------


@MULTIMODAL_REGISTRY.register_processor(
    EcgR1MultiModalProcessor,
    info=EcgR1ProcessingInfo,
    dummy_inputs=EcgR1DummyInputsBuilder,
)
class ECGR1ForConditionalGeneration(Qwen3VLForConditionalGeneration):
    """vLLM's Qwen3-VL with ECG-R1's `ecg_tower` and `ecg_projector`."""

    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            **Qwen3VLForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_prefix,
            "model.ecg_tower.": "ecg_tower.",
            "model.ecg_projector.": "ecg_projector.",
        }
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        """What a prompt carries for each item before expansion (as EcgR1Processor.prompt writes it)."""
        if modality == ECG_MODALITY:
            return ECG_PLACEHOLDER
        return super().get_placeholder_str(modality, i)

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "model") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        settings = ecg_r1_config(self.config)
        self.ecg_settings = settings
        self.checkpoint_folder = Path(vllm_config.model_config.model)
        vision_towers = list(self._tower_model_names)
        # Skipped (not even allocated) when limit_mm_per_prompt gives "ecg" 0.
        with self._mark_tower_model(vllm_config, ECG_MODALITY):
            self.ecg_tower = EcgTower(settings.ecg_config)
            self.ecg_projector = build_ecg_projector(settings.ecg_projector_type, settings.ecg_hidden_size,
                                                     self.config.text_config.hidden_size)
        self._tower_model_names = vision_towers + list(self._tower_model_names)

    # -- embeddings ------------------------------------------------------------------------

    def embed_multimodal(self, **kwargs: object) -> tuple[torch.Tensor, ...] | None:
        """Per-item embeddings in the order of `kwargs` (vLLM calls this once per modality batch)."""
        signals = kwargs.pop(ECG_FIELD, None)
        vision = super().embed_multimodal(**kwargs)
        ecg = self._embed_ecg(signals) if signals is not None else ()
        if vision is None and not ecg:
            return None
        return tuple(vision or ()) + ecg

    def _embed_ecg(self, signals: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """[n, 12, 5000] -> n x [101, hidden (+ deepstack width of zeros)]."""
        if not isinstance(signals, torch.Tensor):
            signals = torch.stack(list(signals))
        weight = self.ecg_tower.conv1.weight
        tokens = self.ecg_tower(signals.to(weight.device, weight.dtype))
        projected = self.ecg_projector(tokens.to(next(self.ecg_projector.parameters()).dtype))
        if self.use_deepstack:
            # Image embeddings carry their deepstack features in extra columns; ECG tokens take
            # no part in deepstack, so theirs are zeros (adding zero leaves the hidden state as is).
            zeros = projected.new_zeros(*projected.shape[:-1], self.multiscale_dim)
            projected = torch.cat([projected, zeros], dim=-1)
        return tuple(projected.unbind(0))

    def get_mrope_input_positions(self, input_tokens: list[int],
                                  mm_features: list[MultiModalFeatureSpec]) -> tuple[torch.Tensor, int]:
        """ECG tokens are ordinary text positions: only image/video features get grid positions."""
        vision = [f for f in mm_features if f.modality != ECG_MODALITY]
        return super().get_mrope_input_positions(input_tokens, vision)

    def get_mm_lora_token_counts(self, *, modality: str, mm_kwargs: MultiModalKwargsItem | None,
                                 num_mm_embeds: int) -> tuple[int, int | None]:
        if modality == ECG_MODALITY:
            return num_mm_embeds, num_mm_embeds
        return super().get_mm_lora_token_counts(modality=modality, mm_kwargs=mm_kwargs,
                                                num_mm_embeds=num_mm_embeds)

    def get_mm_mapping(self) -> MultiModelKeys:
        return MultiModelKeys.from_string_field(
            language_model="language_model",
            connector=["visual.merger", "visual.deepstack_merger_list", "ecg_projector"],
            tower_model=["visual.", "ecg_tower."],
        )

    # -- weights ---------------------------------------------------------------------------

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Checkpoint weights by their released names; the tower from a separate file when absent."""
        loaded = AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
        needs_tower = not isinstance(self.ecg_tower, StageMissingLayer)
        if needs_tower and not any(name.startswith("ecg_tower.") for name in loaded):
            loaded |= self._load_tower_file()
        return loaded

    def _load_tower_file(self) -> set[str]:
        """The tower from config `ecg_tower_path` (relative to the checkpoint folder), as load_ecg_r1 does."""
        configured = self.ecg_settings.ecg_tower_path
        if configured is None:
            raise CheckpointError(f"{self.checkpoint_folder}: the weights have no model.ecg_tower.* and config.json "
                                  "names no ecg_tower_path (pass ecg_tower_path= to the vLLM engine)")
        path = Path(configured)
        if not path.is_absolute() and not path.exists():
            path = self.checkpoint_folder / path
        state = load_ecg_tower_state(path)
        result = self.ecg_tower.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(f"ECG tower file {path}: missing {sorted(result.missing_keys)[:8]}, "
                                  f"unexpected {sorted(result.unexpected_keys)[:8]}")
        return {f"ecg_tower.{name}" for name in self.ecg_tower.state_dict()}


__all__ = [
    "ECG_FIELD",
    "ECG_MODALITY",
    "ECG_PLACEHOLDER",
    "ECGR1ForConditionalGeneration",
    "EcgR1DataParser",
    "EcgR1MultiModalProcessor",
    "EcgR1ProcessingInfo",
    "EcgSignalItems",
    "ecg_r1_config",
]
