"""ECG-R1 modelling: tower and projector shapes, released parameter names, ECG merge, M-RoPE, generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.modeling_ecg_r1 import (
    DEFAULT_ECG_CONFIG,
    ECGR1ForConditionalGeneration,
    EcgProjector,
    EcgTower,
    build_ecg_projector,
    freeze_for_training,
)
from model.processing_ecg_r1 import EcgR1Sample
from model.tiny import real_8b_config


def test_tower_real_shapes_and_open_clip_names():
    with torch.device("meta"):
        tower = EcgTower(DEFAULT_ECG_CONFIG)
        out = tower(torch.empty(2, 12, 5000))
    assert out.shape == (2, 101, 768)
    shapes = {name: tuple(p.shape) for name, p in tower.named_parameters()}
    assert shapes["conv1.weight"] == (768, 12, 50)  # no bias
    assert "conv1.bias" not in shapes
    assert shapes["class_embedding"] == (768,)
    assert shapes["positional_embedding"] == (101, 768)
    assert shapes["ln_pre.weight"] == (768,)
    assert shapes["transformer.resblocks.11.attn.in_proj_weight"] == (3 * 768, 768)
    assert shapes["transformer.resblocks.11.attn.out_proj.weight"] == (768, 768)
    assert shapes["transformer.resblocks.11.mlp.c_fc.weight"] == (4 * 768, 768)
    assert shapes["transformer.resblocks.11.mlp.c_proj.weight"] == (768, 4 * 768)
    assert "transformer.resblocks.12.ln_1.weight" not in shapes  # exactly 12 blocks
    assert tower.transformer.resblocks[0].attn.num_heads == 12


def test_tower_is_pre_ln_with_raw_last_block_output(tiny_model):
    """The output is the last block's raw tokens: not passed through ln_post."""
    tower = tiny_model.model.ecg_tower
    x = torch.randn(2, 12, 5000)
    with torch.no_grad():
        out = tower(x)
        manual = tower.conv1(x).transpose(1, 2)
        manual = torch.cat([tower.class_embedding.expand(2, 1, -1), manual], 1) + tower.positional_embedding
        manual = tower.ln_pre(manual)
        for block in tower.transformer.resblocks:
            manual = block(manual)
    assert out.shape == (2, 101, tower.width)
    torch.testing.assert_close(out, manual)
    assert not torch.allclose(out.mean(-1), torch.zeros(2, 101), atol=1e-3)  # no final norm: not centred


def test_tower_rejects_wrong_length(tiny_model):
    with pytest.raises(ValueError, match="4000 samples"):
        tiny_model.model.ecg_tower(torch.zeros(1, 12, 4000))


def test_projector_variants_and_names():
    mlp = build_ecg_projector("mlp2x_gelu", 768, 4096)
    assert isinstance(mlp, EcgProjector)
    assert {n: tuple(p.shape) for n, p in mlp.named_parameters()} == {
        "0.weight": (4096, 768), "0.bias": (4096,), "2.weight": (4096, 4096), "2.bias": (4096,)}
    assert isinstance(mlp[1], torch.nn.GELU)
    linear = build_ecg_projector("linear", 768, 4096)
    assert {n for n, _ in linear.named_parameters()} == {"weight", "bias"}
    assert mlp(torch.zeros(2, 101, 768)).shape == (2, 101, 4096)
    with pytest.raises(ValueError, match="unknown ecg_projector_type"):
        build_ecg_projector("qformer", 768, 4096)


def test_real_8b_model_parameter_names():
    with torch.device("meta"):
        model = ECGR1ForConditionalGeneration(real_8b_config())
    names = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert names["model.ecg_projector.0.weight"] == (4096, 768)
    assert names["model.ecg_projector.2.weight"] == (4096, 4096)
    assert names["model.ecg_tower.positional_embedding"] == (101, 768)
    assert names["model.language_model.embed_tokens.weight"] == (151936, 4096)
    assert names["lm_head.weight"] == (151936, 4096)
    assert "model.visual.deepstack_merger_list.2.linear_fc2.weight" in names
    assert "model.language_model.layers.35.self_attn.q_proj.weight" in names
    prefixes = {n.split(".")[0] if n.startswith("lm_head") else ".".join(n.split(".")[:2]) for n in names}
    assert prefixes == {"lm_head", "model.ecg_tower", "model.ecg_projector", "model.visual", "model.language_model"}


def _language_model_inputs(model, inputs):
    """Run a forward pass and capture what the language model receives."""
    seen = {}

    def hook(_module, _args, kwargs):
        seen.update(kwargs)

    handle = model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen


def test_ecg_embeddings_replace_the_pad_tokens(tiny_model, tiny_processor, signal, small_image):
    inputs = tiny_processor([EcgR1Sample(signal=signal, image=small_image)])
    seen = _language_model_inputs(tiny_model, inputs)
    ids = inputs["input_ids"][0]
    ecg_positions = (ids == tiny_processor.ecg_token_id).nonzero().squeeze(1)
    assert len(ecg_positions) == 101
    with torch.no_grad():
        expected = tiny_model.get_ecg_features(inputs["ecg_values"])[0]
        text_embeds = tiny_model.get_input_embeddings()(ids)
    embeds = seen["inputs_embeds"][0]
    torch.testing.assert_close(embeds[ecg_positions], expected)
    others = (ids != tiny_processor.ecg_token_id) & (ids != tiny_processor.image_token_id)
    torch.testing.assert_close(embeds[others], text_embeds[others])
    # deepstack touches the image positions only, never the ECG ones
    assert torch.equal(seen["visual_pos_masks"][0], ids == tiny_processor.image_token_id)


def test_ecg_positions_are_text_positions_for_mrope(tiny_model, tiny_processor, signal, small_image):
    inputs = tiny_processor([EcgR1Sample(signal=signal, image=small_image)])
    seen = _language_model_inputs(tiny_model, inputs)
    positions = seen["position_ids"][-3:]  # M-RoPE temporal/height/width axes, [3, B, L]
    ids = inputs["input_ids"][0]
    ecg = (ids == tiny_processor.ecg_token_id).nonzero().squeeze(1)
    t, h, w = positions[0, 0, ecg], positions[1, 0, ecg], positions[2, 0, ecg]
    assert torch.equal(t, h) and torch.equal(h, w)  # same on all three axes: a text position
    assert torch.equal(t, torch.arange(int(t[0]), int(t[0]) + 101))  # consecutive
    image = (ids == tiny_processor.image_token_id).nonzero().squeeze(1)
    assert not torch.equal(positions[1, 0, image], positions[2, 0, image])  # images do get 2-D positions


def test_ecg_signal_changes_the_output(tiny_model, tiny_processor, signal, other_signal):
    a = tiny_processor([EcgR1Sample(signal=signal)])
    b = tiny_processor([EcgR1Sample(signal=other_signal)])
    with torch.no_grad():
        la, lb = tiny_model(**a).logits, tiny_model(**b).logits
    first_ecg = int((a["input_ids"][0] == tiny_processor.ecg_token_id).nonzero()[0])
    torch.testing.assert_close(la[:, :first_ecg], lb[:, :first_ecg])  # causal: the prefix is unaffected
    assert not torch.allclose(la[:, -1], lb[:, -1])


def test_placeholder_count_mismatch_is_an_error(tiny_model, tiny_processor, signal):
    inputs = tiny_processor([EcgR1Sample(signal=signal)])
    inputs["ecg_values"] = torch.cat([inputs["ecg_values"]] * 2)
    with pytest.raises(ValueError, match="101 <\\|ecg_pad\\|> tokens but 2 ECG"):
        tiny_model(**inputs)


def test_generate_matches_a_greedy_loop_without_cache(tiny_model, tiny_processor, signal, small_image):
    """The KV-cached generate (ECG and image encoded at prefill only) equals recomputing everything."""
    inputs = tiny_processor([EcgR1Sample(signal=signal, image=small_image)])
    steps = 6
    with torch.no_grad():
        generated = tiny_model.generate(**inputs, max_new_tokens=steps, do_sample=False, eos_token_id=None,
                                        min_new_tokens=steps)
        ids = inputs["input_ids"]
        for _ in range(steps):
            extra = ids.shape[1] - inputs["input_ids"].shape[1]
            batch = dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids),
                         mm_token_type_ids=torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, extra)))
            logits = tiny_model(**batch, use_cache=False).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert generated.tolist() == ids.tolist()


def test_freeze_for_training(tiny_processor):
    from model.tiny import make_tiny_model

    model, _ = make_tiny_model(seed=1, processor=tiny_processor)
    counts = freeze_for_training(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("model.ecg_tower.") for n in trainable)
    assert not any(n.startswith("model.visual.blocks.") or n.startswith("model.visual.patch_embed") for n in trainable)
    assert any(n.startswith("model.visual.merger.") for n in trainable)
    assert any(n.startswith("model.visual.deepstack_merger_list.") for n in trainable)
    assert any(n.startswith("model.ecg_projector.") for n in trainable)
    assert "lm_head.weight" in trainable and "model.language_model.embed_tokens.weight" in trainable
    assert counts["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts["frozen"] > 0


def test_signal_dtype_follows_the_tower(tiny_processor, signal):
    """bf16 weights take the float32 signal (as on a GPU host)."""
    from model.tiny import make_tiny_model

    model, _ = make_tiny_model(seed=0, processor=tiny_processor)
    model = model.to(torch.bfloat16)
    inputs = tiny_processor([EcgR1Sample(signal=signal)])
    with torch.no_grad():
        out = model(**inputs).logits
    assert out.dtype == torch.bfloat16 and np.isfinite(out.float().numpy()).all()


def test_deepstack_features_whole_or_split_per_image_give_the_same_logits(tiny_model, tiny_processor, signal,
                                                                           small_image, monkeypatch):
    """transformers 5.19 splits the ViT's deepstack features per image; 5.17 (as on some GPU hosts)
    hands them over as one tensor for the batch. The model takes either, to the same logits."""
    from tests.model.conftest import ecg_like_image

    samples = [EcgR1Sample(signal=signal, image=small_image),
               EcgR1Sample(signal=signal, image=ecg_like_image(192, 128, 1))]
    inputs = tiny_processor(samples, padding_side="left")
    with torch.no_grad():
        split = tiny_model(**inputs).logits
    language = tiny_model.model if hasattr(tiny_model.model, "get_image_features") else tiny_model
    original = type(language).get_image_features

    def whole(self, *args, **kwargs):  # as transformers 5.17 returns them
        output = original(self, *args, **kwargs)
        output.deepstack_features = [torch.cat(feature, dim=0) for feature in output.deepstack_features]
        return output

    monkeypatch.setattr(type(language), "get_image_features", whole)
    with torch.no_grad():
        joined = tiny_model(**inputs).logits
    assert torch.equal(split, joined)
