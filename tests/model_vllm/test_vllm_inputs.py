"""ECG-R1's input side inside vLLM, without starting an engine: the plugin, the "ecg" data
parser, and the processor's placeholder expansion compared with the transformers processor."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_vllm.conftest import ecg_page, ecg_signal

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def mm_processor(tiny_checkpoint: Path):
    """vLLM's multimodal processor for the tiny checkpoint, as the engine builds it."""
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    from model.vllm_plugin import register

    register()
    config = ModelConfig(model=str(tiny_checkpoint), limit_mm_per_prompt={"image": 1, "ecg": 1, "video": 0},
                         mm_processor_cache_gb=0)
    return MULTIMODAL_REGISTRY.create_processor(config)


@pytest.fixture(scope="module")
def processor(tiny_checkpoint: Path):
    from model.processing_ecg_r1 import EcgR1Processor

    return EcgR1Processor.from_pretrained(tiny_checkpoint)


def _process(mm_processor, processor, order, data):
    ids = processor.tokenizer(processor.prompt(order), add_special_tokens=False)["input_ids"]
    return mm_processor(ids, mm_processor.info.parse_mm_data(data))


def test_entry_point_registers_the_architecture():
    from vllm import ModelRegistry

    from model.vllm_plugin import ARCHITECTURE, register

    [plugin] = [ep for ep in entry_points(group="vllm.general_plugins") if ep.name == "ecgwl_ecg_r1"]
    assert plugin.value == "model.vllm_plugin:register"
    plugin.load()()
    register()  # vLLM loads plugins once per process, several times in all: must be idempotent
    assert ARCHITECTURE in ModelRegistry.get_supported_archs()
    from model.vllm_ecg_r1 import ECGR1ForConditionalGeneration

    assert ECGR1ForConditionalGeneration.get_placeholder_str("ecg", 0) == "<|ecg_start|><|ecg_pad|><|ecg_end|>"
    assert ECGR1ForConditionalGeneration.get_placeholder_str("image", 0) == "<|vision_start|><|image_pad|><|vision_end|>"


def test_the_checkpoint_resolves_to_the_ecg_r1_processor(mm_processor):
    from model.vllm_ecg_r1 import EcgR1MultiModalProcessor

    assert isinstance(mm_processor, EcgR1MultiModalProcessor)
    assert mm_processor.info.ecg_num_tokens == 101
    assert mm_processor.info.allowed_mm_limits == {"image": 1, "video": 0, "ecg": 1}


@pytest.mark.parametrize("order", [("ecg", "image"), ("image", "ecg"), ("ecg",), ("image",)])
def test_vllm_expands_the_prompt_exactly_as_the_transformers_processor(mm_processor, processor, order):
    from model.processing_ecg_r1 import EcgR1Sample

    signal, image = ecg_signal(0), ecg_page(2200, 1700)  # an uncapped page would cost ~3,660 tokens
    data = {m: signal if m == "ecg" else image for m in order}
    out = _process(mm_processor, processor, order, data)

    sample = EcgR1Sample(signal=data.get("ecg"), image=data.get("image"), order=order)
    expected = processor([sample])["input_ids"][0].tolist()
    assert out["prompt_token_ids"] == expected

    ids = np.array(out["prompt_token_ids"])
    ranges = out["mm_placeholders"]
    if "ecg" in order:
        [ecg] = ranges["ecg"]
        assert ecg.length == 101 and (ids[ecg.offset:ecg.offset + 101] == processor.ecg_token_id).all()
        assert ids[ecg.offset - 1] == processor.ecg_start_token_id and ids[ecg.offset + 101] == processor.ecg_end_token_id
        assert (ids == processor.ecg_token_id).sum() == 101
    if "image" in order:
        [img] = ranges["image"]
        assert 700 < img.length <= 768  # the release's cap, whatever the page size
        assert (ids == processor.image_token_id).sum() == img.length
    assert set(ranges) == set(order)


def test_the_signal_reaches_the_model_prepared_as_the_release_does(mm_processor, processor):
    """(12, N) in any length: NaN/Inf -> 0, right-padded with zeros (or cut) to 5000, float32."""
    raw = ecg_signal(1)[:, :3000].astype(np.float64)
    raw[3, 10] = np.nan
    raw[5, 20] = np.inf
    out = _process(mm_processor, processor, ("ecg",), {"ecg": raw})
    [item] = out["mm_kwargs"]["ecg"]
    tensor = item["ecg_signals"].data
    assert tensor.shape == (12, 5000) and tensor.dtype == torch.float32
    assert tensor[3, 10] == 0 and tensor[5, 20] == 0
    assert (tensor[:, 3000:] == 0).all()
    assert torch.equal(tensor[0, :3000], torch.from_numpy(raw[0].astype(np.float32)))

    long = ecg_signal(2)
    cut = np.concatenate([long, long], axis=1)  # 10,000 samples: only the first 5000 are kept
    [item] = _process(mm_processor, processor, ("ecg",), {"ecg": cut})["mm_kwargs"]["ecg"]
    assert torch.equal(item["ecg_signals"].data, torch.from_numpy(long))


def test_bad_ecg_input_is_refused_with_its_shape(mm_processor):
    with pytest.raises(ValueError, match=r"\(8, 5000\)"):
        mm_processor.info.parse_mm_data({"ecg": np.zeros((8, 5000), np.float32)})
    with pytest.raises(ValueError, match="ecg input"):
        mm_processor.info.parse_mm_data({"ecg": "not a signal"})
    with pytest.raises(ValueError, match="ecg input"):
        mm_processor.info.parse_mm_data({"ecg": [[0.0] * 5000] * 12})  # a list of lists is one per lead, not one per ECG


def test_one_ecg_per_prompt(mm_processor):
    two = [ecg_signal(0), ecg_signal(1)]
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match="At most 1 ecg"):
        mm_processor.info.parse_mm_data({"ecg": two})


def test_ecg_tokens_are_text_positions_for_mrope(tiny_checkpoint, mm_processor, processor):
    """vLLM's M-RoPE positions equal transformers' for a prompt with an ECG before and after an image."""
    from vllm.multimodal.inputs import MultiModalFeatureSpec

    from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration as HfModel
    from model.processing_ecg_r1 import EcgR1Sample
    from model.vllm_ecg_r1 import ECGR1ForConditionalGeneration

    model = HfModel.from_pretrained(tiny_checkpoint).eval()
    for order in [("ecg", "image"), ("image", "ecg")]:
        data = {"ecg": ecg_signal(0), "image": ecg_page(300, 420)}
        out = _process(mm_processor, processor, order, data)
        features = [MultiModalFeatureSpec(data=item, modality=modality, identifier=f"{modality}{i}",
                                          mm_position=out["mm_placeholders"][modality][i])
                    for modality, items in out["mm_kwargs"].items() for i, item in enumerate(items)]
        # get_mrope_input_positions only reads the config; no engine needed.
        stub = ECGR1ForConditionalGeneration.__new__(ECGR1ForConditionalGeneration)
        stub.__dict__["config"] = model.config
        positions, _ = stub.get_mrope_input_positions(out["prompt_token_ids"], features)

        inputs = processor([EcgR1Sample(signal=data["ecg"], image=data["image"], order=order)])
        expected = model.model.compute_3d_position_ids(
            input_ids=inputs["input_ids"], inputs_embeds=None, image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"], past_key_values=None,
            mm_token_type_ids=inputs["mm_token_type_ids"])
        assert torch.equal(positions, expected[:, 0, :])


def test_the_release_plugin_cannot_replace_our_class():
    """The release's plugin registers its own class as ECGR1ForConditionalGeneration; our engine
    asks for OWN_ARCHITECTURE, which only ours registers, whichever plugin ran first."""
    from vllm import ModelRegistry

    from model.vllm_plugin import ARCHITECTURE, OWN_ARCHITECTURE, register

    # As if the release's plugin had run first and taken the shared name with another class.
    ModelRegistry.register_model(ARCHITECTURE, "tests.model_vllm.conftest:NotOurs")
    register()
    resolved = ModelRegistry.models[OWN_ARCHITECTURE]
    assert (resolved.module_name, resolved.class_name) == ("model.vllm_ecg_r1", "ECGR1ForConditionalGeneration")
    assert ModelRegistry.models[ARCHITECTURE].module_name == "tests.model_vllm.conftest"  # left as it was
    ModelRegistry.register_model(ARCHITECTURE, "model.vllm_ecg_r1:ECGR1ForConditionalGeneration")  # restore
