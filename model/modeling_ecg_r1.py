"""ECG-R1: Qwen3-VL with an ECG signal encoder, written in the transformers style.

    ecg_values [B, 12, 5000] --EcgTower--> [B, 101, ecg_width] --EcgProjector--> [B, 101, hidden]
        --> replace the embeddings of the 101 `<|ecg_pad|>` tokens of each prompt
    pixel_values --Qwen3-VL ViT + merger (+ deepstack)--> replace the `<|image_pad|>` embeddings
    --> Qwen3-VL language model (M-RoPE; ECG tokens are ordinary text positions)

Parameter names follow the released checkpoint (`PKUDigitalHealth/ECG-R1-8B-RL`):
`model.ecg_tower.*` (ECG-CoCa's 1-D ViT, open_clip naming), `model.ecg_projector.*`
(`0.*` and `2.*` of Linear-GELU-Linear, or a bare Linear), and Qwen3-VL's own
`model.visual.*`, `model.language_model.*`, `lm_head.*`.

The release keeps Qwen3-VL's `model_type` ("qwen3_vl") and tells itself apart by
`architectures = ["ECGR1ForConditionalGeneration"]` plus extra `ecg_*` fields in
config.json; `EcgR1Config` reads and writes exactly that shape, so a released config
loads unchanged and our own checkpoints look like the release to any other tool (vLLM).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLCausalLMOutputWithPast,
    Qwen3VLForConditionalGeneration,
    Qwen3VLModel,
    Qwen3VLModelOutputWithPast,
    Qwen3VLPreTrainedModel,
)

# ECG-CoCa's signal encoder as used by ECG-R1 (open_clip "coca_ViT-B-32" ECG config).
DEFAULT_ECG_CONFIG: dict[str, Any] = {
    "seq_length": 5000,  # samples per lead (10 s at 500 Hz)
    "lead_num": 12,
    "patch_size": 50,  # -> 100 patches + CLS = 101 tokens
    "width": 768,
    "layers": 12,
    "heads": 12,  # head width 64
    "mlp_ratio": 4.0,
    "output_dim": 512,  # CoCa's contrastive projection: stored in the weights, unused by ECG-R1
    "layer_norm_eps": 1e-5,
}

ECG_START_TOKEN = "<|ecg_start|>"
ECG_PAD_TOKEN = "<|ecg_pad|>"
ECG_END_TOKEN = "<|ecg_end|>"


@strict
class EcgR1Config(Qwen3VLConfig):
    """Qwen3-VL's configuration plus the ECG fields the release writes into config.json.

    `ecg_token_id` (the id of `<|ecg_pad|>`) and the start/end ids are read from the
    checkpoint; `load_ecg_r1` fills any that a config lacks from its tokenizer.
    """

    ecg_config: dict | None = None  # tower sizes, see DEFAULT_ECG_CONFIG
    ecg_projector_type: str = "mlp2x_gelu"  # "mlp2x_gelu" (released) or "linear"
    ecg_hidden_size: int | None = None  # written by the release: the tower width
    ecg_model_config: str | None = None  # written by the release: "coca_ViT-B-32"
    ecg_tower_path: str | None = None  # a separate tower file, used when the weights lack it
    ecg_token_id: int | None = None
    ecg_start_token_id: int | None = None
    ecg_end_token_id: int | None = None
    ecg_num_tokens: int | None = None  # 101 for 5000 samples / 50 per patch + CLS
    ecgwl_demonstration: bool = False  # True only for the bundled demonstration model
    ecg_input: dict | None = None  # the input contract (lead order, rate, image style): model.input_contract

    def __post_init__(self, **kwargs):
        self.ecg_config = {**DEFAULT_ECG_CONFIG, **(self.ecg_config or {})}
        if self.ecg_hidden_size is None:
            self.ecg_hidden_size = self.ecg_config["width"]
        elif self.ecg_hidden_size != self.ecg_config["width"]:
            raise ValueError(f"ecg_hidden_size {self.ecg_hidden_size} != ecg_config width "
                             f"{self.ecg_config['width']}")
        expected_tokens = self.ecg_config["seq_length"] // self.ecg_config["patch_size"] + 1
        if self.ecg_num_tokens is None:
            self.ecg_num_tokens = expected_tokens
        elif self.ecg_num_tokens != expected_tokens:
            raise ValueError(f"ecg_num_tokens {self.ecg_num_tokens} != {expected_tokens} "
                             "(seq_length / patch_size + CLS)")
        super().__post_init__(**kwargs)
        if not self.architectures:
            self.architectures = ["ECGR1ForConditionalGeneration"]


class EcgResidualBlock(nn.Module):
    """One pre-LN transformer block (open_clip's ResidualAttentionBlock names)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, hidden))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class EcgTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            [EcgResidualBlock(width, heads, mlp_ratio, eps) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class EcgTower(nn.Module):
    """ECG-CoCa's 1-D ViT: [B, leads, samples] -> the last block's tokens [B, 1 + patches, width].

    ECG-R1 takes the raw output of the last block (CLS + patch tokens) with no final norm,
    pooling or projection. `ln_post` and `proj` exist only because the released weights
    carry them (CoCa's contrastive head); they are never used here.
    """

    def __init__(self, ecg_config: dict[str, Any]) -> None:
        super().__init__()
        cfg = {**DEFAULT_ECG_CONFIG, **ecg_config}
        width, self.patch_size, self.seq_length = cfg["width"], cfg["patch_size"], cfg["seq_length"]
        if self.seq_length % self.patch_size:
            raise ValueError(f"seq_length {self.seq_length} is not a multiple of patch_size {self.patch_size}")
        self.num_tokens = self.seq_length // self.patch_size + 1
        self.width = width
        self.conv1 = nn.Conv1d(cfg["lead_num"], width, kernel_size=self.patch_size,
                               stride=self.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(self.num_tokens, width))
        self.ln_pre = nn.LayerNorm(width, eps=cfg["layer_norm_eps"])
        self.transformer = EcgTransformer(width, cfg["layers"], cfg["heads"], cfg["mlp_ratio"],
                                          cfg["layer_norm_eps"])
        self.ln_post = nn.LayerNorm(width, eps=cfg["layer_norm_eps"])  # unused (see docstring)
        self.proj = nn.Parameter(torch.zeros(width, cfg["output_dim"]))  # unused (see docstring)

    def forward(self, ecg_values: torch.Tensor) -> torch.Tensor:
        if ecg_values.shape[-1] != self.seq_length:
            raise ValueError(f"ECG input has {ecg_values.shape[-1]} samples, the tower takes {self.seq_length}")
        x = self.conv1(ecg_values).transpose(1, 2)  # [B, patches, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        return self.transformer(x)


class EcgProjector(nn.Sequential):
    """The "decoupled" projector, `mlp{N}x_gelu`: Linear(ecg, hidden), then (GELU, Linear(hidden, hidden)) x (N-1).

    An nn.Sequential so that parameter names are `0.*`, `2.*`, ... as in the release.
    """

    def __init__(self, ecg_hidden_size: int, hidden_size: int, depth: int = 2) -> None:
        layers: list[nn.Module] = [nn.Linear(ecg_hidden_size, hidden_size)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(hidden_size, hidden_size)]
        super().__init__(*layers)


def build_ecg_projector(projector_type: str, ecg_hidden_size: int, hidden_size: int) -> nn.Module:
    """`linear` is a bare nn.Linear (names `weight`, `bias`); `mlpNx_gelu` is an EcgProjector."""
    if projector_type == "linear":
        return nn.Linear(ecg_hidden_size, hidden_size)
    match = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
    if not match:
        raise ValueError(f"unknown ecg_projector_type {projector_type!r} (expected 'linear' or 'mlpNx_gelu')")
    return EcgProjector(ecg_hidden_size, hidden_size, depth=int(match.group(1)))


def _init_ecg_tower_parameters(module: nn.Module) -> None:
    """The tower's bare parameters, which transformers' generic init does not know."""
    if isinstance(module, EcgTower):
        scale = module.width ** -0.5  # open_clip's init for the CLS and position embeddings
        init.normal_(module.class_embedding, std=scale)
        init.normal_(module.positional_embedding, std=scale)
        init.normal_(module.proj, std=scale)


class ECGR1Model(Qwen3VLModel):
    """Qwen3-VL's inner model with `ecg_tower` and `ecg_projector` beside `visual` and `language_model`."""

    config: EcgR1Config

    def __init__(self, config: EcgR1Config) -> None:
        super().__init__(config)
        self.ecg_tower = EcgTower(config.ecg_config)
        self.ecg_projector = build_ecg_projector(config.ecg_projector_type, config.ecg_hidden_size,
                                                 config.text_config.hidden_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        _init_ecg_tower_parameters(module)

    def get_ecg_features(self, ecg_values: torch.Tensor) -> torch.Tensor:
        """[B, 12, 5000] signals -> [B, 101, hidden] embeddings for the `<|ecg_pad|>` positions."""
        tower_dtype = self.ecg_tower.conv1.weight.dtype
        tokens = self.ecg_tower(ecg_values.to(self.ecg_tower.conv1.weight.device, tower_dtype))
        return self.ecg_projector(tokens.to(self._projector_dtype()))

    def _projector_dtype(self) -> torch.dtype:
        return next(self.ecg_projector.parameters()).dtype

    def merge_ecg_embeddings(self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor,
                             ecg_embeds: torch.Tensor) -> torch.Tensor:
        """Put each ECG's tokens, in order, where the prompts have `<|ecg_pad|>`."""
        if self.config.ecg_token_id is None:
            raise ValueError("config.ecg_token_id is not set: the id of <|ecg_pad|> must come from the tokenizer")
        ecg_mask = input_ids == self.config.ecg_token_id
        n_slots, n_tokens = int(ecg_mask.sum()), ecg_embeds.shape[0] * ecg_embeds.shape[1]
        if n_slots != n_tokens:
            raise ValueError(f"prompts have {n_slots} {ECG_PAD_TOKEN} tokens but {ecg_embeds.shape[0]} ECG(s) "
                             f"give {n_tokens} embeddings")
        ecg_embeds = ecg_embeds.reshape(-1, ecg_embeds.shape[-1]).to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(ecg_mask.unsqueeze(-1).expand_as(inputs_embeds), ecg_embeds)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        mm_encoder_outputs: dict[str, Any] | None = None,
        ecg_values: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Qwen3VLModelOutputWithPast:
        if input_ids is None:
            # Placeholders are found by token id: the ECG and image embeddings need the ids.
            raise ValueError("ECG-R1 needs input_ids (placeholders are located by token id)")
        if pixel_values_videos is not None or video_grid_thw is not None:
            raise NotImplementedError("ECG-R1 takes images and ECG signals, not videos")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        if ecg_values is not None:
            inputs_embeds = self.merge_ecg_embeddings(input_ids, inputs_embeds, self.get_ecg_features(ecg_values))

        # The image path is Qwen3-VL's own: ViT + merger replace <|image_pad|>, deepstack
        # features are added to the first LLM layers at the same (and only those) positions.
        visual_pos_masks = None
        deepstack_visual_embeds = None
        image_output = (mm_encoder_outputs or {}).get("image")
        if image_output is None and pixel_values is not None:
            image_output = self.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        if image_output is not None:
            image_embeds = torch.cat(image_output.pooler_output, dim=0).to(inputs_embeds.device, inputs_embeds.dtype)
            image_mask, _ = self.get_placeholder_mask(input_ids, inputs_embeds=inputs_embeds,
                                                      image_features=image_embeds)
            inputs_embeds = inputs_embeds.masked_scatter(image_mask, image_embeds)
            visual_pos_masks = image_mask[..., 0]
            # Split per image since transformers 5.19; one tensor for the whole batch before it.
            deepstack_visual_embeds = [feature if isinstance(feature, torch.Tensor) else torch.cat(feature, dim=0)
                                       for feature in image_output.deepstack_features]

        if position_ids is None:
            # ECG tokens have mm_token_type_ids == 0: plain text positions for M-RoPE.
            position_ids = self.compute_3d_position_ids(
                input_ids=input_ids, inputs_embeds=inputs_embeds, image_grid_thw=image_grid_thw,
                attention_mask=attention_mask, past_key_values=past_key_values,
                mm_token_type_ids=mm_token_type_ids,
            )

        outputs = self.language_model(
            input_ids=None,
            position_ids=position_ids,
            attention_mask=attention_mask,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            visual_pos_masks=visual_pos_masks,
            deepstack_visual_embeds=deepstack_visual_embeds,
            **kwargs,
        )
        return Qwen3VLModelOutputWithPast(**outputs, rope_deltas=self.rope_deltas)


class ECGR1ForConditionalGeneration(Qwen3VLForConditionalGeneration):
    """The released architecture: Qwen3-VL for conditional generation with an ECG input.

    forward/generate take, besides Qwen3-VL's inputs, `ecg_values` [N_ecg, 12, 5000]: one
    signal per prompt that contains an `<|ecg_start|>` + 101 x `<|ecg_pad|>` + `<|ecg_end|>`
    block, in batch order.
    """

    config_class = EcgR1Config
    config: EcgR1Config

    def __init__(self, config: EcgR1Config) -> None:
        # Qwen3VLForConditionalGeneration.__init__ would build a plain Qwen3VLModel; build ours.
        Qwen3VLPreTrainedModel.__init__(self, config)
        self.model = ECGR1Model(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        _init_ecg_tower_parameters(module)

    def get_ecg_features(self, ecg_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_ecg_features(ecg_values)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        ecg_values: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Qwen3VLCausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            mm_encoder_outputs=mm_encoder_outputs,
            ecg_values=ecg_values,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels,
                                      vocab_size=self.config.text_config.vocab_size, **kwargs)
        return Qwen3VLCausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions, rope_deltas=outputs.rope_deltas,
        )

    def prepare_inputs_for_generation(self, *args: Any, ecg_values: torch.Tensor | None = None,
                                      is_first_iteration: bool | None = False, **kwargs: Any) -> dict[str, Any]:
        """Like pixel_values, the signal is encoded once, at prefill; later steps read the KV cache."""
        model_inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["ecg_values"] = ecg_values
        return model_inputs


def freeze_for_training(model: ECGR1ForConditionalGeneration) -> dict[str, int]:
    """ECG-R1's SFT recipe: ECG tower and ViT frozen; projector, merger and LLM trainable.

    The Qwen3-VL "merger" is the ViT's patch merger plus its deepstack mergers. Returns the
    number of trainable and frozen parameters, for the training log.
    """
    model.requires_grad_(True)
    model.model.ecg_tower.requires_grad_(False)
    visual = model.model.visual
    visual.requires_grad_(False)
    visual.merger.requires_grad_(True)
    visual.deepstack_merger_list.requires_grad_(True)
    model.model.ecg_tower.eval()  # frozen: no dropout/statistics either way, but say so
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}


__all__ = [
    "DEFAULT_ECG_CONFIG",
    "ECGR1ForConditionalGeneration",
    "ECGR1Model",
    "EcgProjector",
    "EcgR1Config",
    "EcgTower",
    "build_ecg_projector",
    "freeze_for_training",
]
