"""The checkpoint's input contract against an independent reading of the release's input code.

`release_load_ecg` and `release_prompt_ids` below are written in this test from reading the
ECG-R1 release (`ecg_r1/register.py`: `load_ecg`, `ECGR1Template`; ms-swift's Qwen3-VL
template and qwen_vl_utils' `fetch_image`), not from our code:

- load_ecg: `wfdb.rdsamp(path)[0]` (float64, samples x channels) -> NaN and Inf set to 0 ->
  transposed -> float32 -> right zero-padded or cut to 5000 samples. The file's channel
  order is kept, and the released tower learned MIMIC-IV-ECG's (I, II, III, aVR, aVF, aVL, ...).
- template: every piece of the chat (system turn, user turn start, each expanded tag, the
  rest of the query, the assistant start) is tokenized on its own and the ids concatenated;
  `<ecg>` becomes <|ecg_start|> + 101 x <|ecg_pad|> + <|ecg_end|>; `<image>` becomes
  <|vision_start|> + (grid / 4) x <|image_pad|> + <|vision_end|>, the grid from smart_resize
  with factor 32 and 4..768 tokens of 32 x 32 pixels.

Our side runs the real path: reader -> prepare -> the checkpoint's contract -> processor.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ingest.ecg import STANDARD_LEADS
from ingest.prepare import prepare
from ingest.readers.read import read_ecg
from model.engines.base import request_from_prepared
from model.input_contract import (
    ECGWL_CONTRACT,
    MIMIC_LEADS,
    RELEASE_CONTRACT,
    EcgInputContract,
    contract_for_checkpoint,
    contract_for_config,
)
from model.processing_ecg_r1 import EcgR1Processor, EcgR1Sample
from model.prompts import INSTRUCTION, SYSTEM_PROMPT
from tests.ingest_readers.builders import mdc_sources, simulated_12lead, waveform_group, write_dicom_ecg

REPO = Path(__file__).resolve().parents[2]
PTBXL_RECORD = REPO / "data" / "real" / "ptbxl" / "HR00001.hea"
# PTB-XL's (and our) order is I, II, III, aVR, aVL, aVF: rows 4 and 5 swapped against MIMIC's.
PTBXL_TO_MIMIC = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]
PTBXL_NAMES = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]  # as PTB-XL spells them


# -- the release, re-derived ----------------------------------------------------------------


def release_load_ecg(header: Path, seq_length: int = 5000) -> torch.Tensor:
    import wfdb

    data = wfdb.rdsamp(str(header.with_suffix("")))[0]
    data[np.isnan(data)] = 0
    data[np.isinf(data)] = 0
    tensor = torch.from_numpy(np.ascontiguousarray(data.T).astype(np.float32))
    if tensor.shape[1] < seq_length:
        tensor = torch.cat([tensor, torch.zeros(tensor.shape[0], seq_length - tensor.shape[1])], dim=1)
    return tensor[:, :seq_length]


def release_grid(height: int, width: int, max_tokens: int = 768, min_tokens: int = 4) -> tuple[int, int]:
    """qwen_vl_utils' smart_resize (factor 32 for Qwen3-VL): the resized (height, width)."""
    factor = 32
    max_pixels, min_pixels = max_tokens * factor**2, min_tokens * factor**2
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def release_prompt_ids(tokenizer, tags: list[str], image_tokens: int) -> list[int]:
    pieces: list[str] = [f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n", "<|im_start|>user\n"]
    for tag in tags:
        pieces += (["<|ecg_start|>", "<|ecg_pad|>" * 101, "<|ecg_end|>"] if tag == "ecg"
                   else ["<|vision_start|>", "<|image_pad|>" * image_tokens, "<|vision_end|>"])
    pieces.append(f"\n{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")
    ids: list[int] = []
    for piece in pieces:
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
    return ids


# -- the files ------------------------------------------------------------------------------


def write_wfdb_record(folder: Path, name: str, signal_mv: np.ndarray, names: list[str], gain: float = 1000.0,
                      digital: np.ndarray | None = None) -> Path:
    import wfdb

    n = len(names)
    kwargs = ({"d_signal": digital.T.astype(np.int16)} if digital is not None
              else {"p_signal": signal_mv.T, "adc_gain": [gain] * n, "baseline": [0] * n})
    if digital is not None:
        kwargs.update(adc_gain=[gain] * n, baseline=[0] * n)
    wfdb.wrsamp(name, fs=500, units=["mV"] * n, sig_name=names, fmt=["16"] * n, write_dir=str(folder), **kwargs)
    return folder / f"{name}.hea"


def our_ecg_values(path: Path, contract: EcgInputContract, processor: EcgR1Processor) -> torch.Tensor:
    request = request_from_prepared(prepare(read_ecg(path)), contract)
    return processor([EcgR1Sample(signal=request.signal)])["ecg_values"][0]


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    """A (12, 5000) mV recording in OUR order, with distinct leads, quantised to 1 uV."""
    signal = simulated_12lead(seed=5)
    signal *= (1 + np.arange(12) / 10)[:, None]  # no two leads alike, so a swap shows
    return np.round(signal * 1000) / 1000


# -- tests ----------------------------------------------------------------------------------


def test_release_checkpoints_default_to_the_release_contract() -> None:
    release_config = {"architectures": ["ECGR1ForConditionalGeneration"], "model_type": "qwen3_vl",
                      "ecg_token_id": 151669, "ecg_projector_type": "mlp2x_gelu", "ecg_hidden_size": 768,
                      "ecg_model_config": "coca_ViT-B-32", "ecg_tower_path": "cpt_wfep_epoch_20.pt"}
    contract = contract_for_config(release_config)
    assert contract == RELEASE_CONTRACT
    assert contract.lead_order == ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
    assert (contract.sampling_rate_hz, contract.samples, contract.image_style, contract.max_image_tokens) == \
        (500, 5000, "ecg-image-kit", 768)
    # One key overridden, the rest from the release's defaults.
    assert contract_for_config({**release_config, "ecg_input": {"max_image_tokens": 1024}}).lead_order == MIMIC_LEADS


def test_our_checkpoints_keep_their_contract(tiny_checkpoint: Path) -> None:
    demo = json.loads((REPO / "model" / "demo" / "config.json").read_text())
    assert contract_for_checkpoint(REPO / "model" / "demo") == ECGWL_CONTRACT
    # A checkpoint of ours written before the block existed reads as before.
    assert contract_for_config({k: v for k, v in demo.items() if k != "ecg_input"}) == ECGWL_CONTRACT
    assert contract_for_checkpoint(tiny_checkpoint).lead_order == STANDARD_LEADS


def test_bad_contracts_are_refused() -> None:
    with pytest.raises(ValueError, match="lead_order"):
        contract_for_config({"ecg_input": {"lead_order": ["I"] * 12}})
    with pytest.raises(ValueError, match="seq_length"):
        contract_for_config({"ecg_config": {"seq_length": 2500}})
    with pytest.raises(ValueError, match="image_style"):
        contract_for_config({"ecg_input": {"image_style": "photo"}})


def test_mimic_ordered_wfdb_is_bit_equal_to_load_ecg(tmp_path: Path, recording: np.ndarray,
                                                     tiny_processor: EcgR1Processor) -> None:
    mimic = recording[PTBXL_TO_MIMIC]
    cases = {"10 s": mimic, "11 s (cut)": np.concatenate([mimic, mimic[:, :500]], axis=1),
             "8 s (padded)": mimic[:, :4000]}
    for i, (case, signal) in enumerate(cases.items()):
        header = write_wfdb_record(tmp_path, f"mimic{i}", signal, list(MIMIC_LEADS), gain=200.0)
        expected = release_load_ecg(header)
        ours = our_ecg_values(header, RELEASE_CONTRACT, tiny_processor)
        assert ours.dtype == expected.dtype == torch.float32
        assert torch.equal(ours, expected), case


def test_unrecorded_samples_are_the_one_known_difference(tmp_path: Path, recording: np.ndarray,
                                                         tiny_processor: EcgR1Processor) -> None:
    """The release writes 0 where a WFDB lead has invalid samples; our reader interpolates a gap
    (and says so in the study's notes). Everything outside the gap stays bit-equal."""
    signal = recording[PTBXL_TO_MIMIC].copy()
    signal[7, 1000:1300] = np.nan  # V2 not recorded for 0.6 s
    header = write_wfdb_record(tmp_path, "gap", signal, list(MIMIC_LEADS), gain=200.0)
    expected, ours = release_load_ecg(header), our_ecg_values(header, RELEASE_CONTRACT, tiny_processor)
    differs = (ours != expected).nonzero().tolist()
    assert differs == [[7, t] for t in range(1000, 1300)]
    assert torch.all(expected[7, 1000:1300] == 0) and torch.all(ours[7, 1000:1300] != 0)
    assert "V2: 300 invalid samples interpolated" in read_ecg(header).provenance["lead_notes"]


def test_ptbxl_ordered_files_reach_the_tower_in_mimic_order(tmp_path: Path, recording: np.ndarray,
                                                           tiny_processor: EcgR1Processor) -> None:
    ptbxl = write_wfdb_record(tmp_path, "ptbxl", recording, PTBXL_NAMES)
    mimic = write_wfdb_record(tmp_path, "mimic", recording[PTBXL_TO_MIMIC], list(MIMIC_LEADS))
    ours = our_ecg_values(ptbxl, RELEASE_CONTRACT, tiny_processor)
    # What the release made of this recording in training (MIMIC-IV-ECG files) ...
    assert torch.equal(ours, release_load_ecg(mimic))
    # ... and what its load_ecg would feed from the PTB-XL file itself: aVL and aVF swapped.
    literal = release_load_ecg(ptbxl)
    assert torch.equal(ours, literal[PTBXL_TO_MIMIC]) and not torch.equal(ours, literal)
    # Our own contract keeps our order.
    assert torch.equal(our_ecg_values(ptbxl, ECGWL_CONTRACT, tiny_processor), literal)


def test_a_real_ptbxl_record(tiny_processor: EcgR1Processor) -> None:
    """data/real/ptbxl/HR00001 (PTB-XL via the PhysioNet/CinC Challenge, CC BY 4.0), stored I..aVR, aVL, aVF."""
    ours = our_ecg_values(PTBXL_RECORD, RELEASE_CONTRACT, tiny_processor)
    assert torch.equal(ours, release_load_ecg(PTBXL_RECORD)[PTBXL_TO_MIMIC])


def test_dicom_is_bit_equal_to_load_ecg_of_the_same_samples(tmp_path: Path, recording: np.ndarray,
                                                           tiny_processor: EcgR1Processor) -> None:
    """A DICOM 12-lead stores int16 samples at 5 uV; the release would read those samples from a
    WFDB record at 200 adu/mV (MIMIC-IV-ECG's gain), in MIMIC order."""
    dicom = write_dicom_ecg(tmp_path / "ecg.dcm", [waveform_group(
        recording * 1000, mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM", units="uV", sensitivity=5.0)])
    digital = np.round(recording * 1000 / 5.0)
    mimic = write_wfdb_record(tmp_path, "same", recording, list(MIMIC_LEADS), gain=200.0,
                              digital=digital[PTBXL_TO_MIMIC])
    assert torch.equal(our_ecg_values(dicom, RELEASE_CONTRACT, tiny_processor), release_load_ecg(mimic))


@pytest.mark.parametrize("size", [(2200, 1700), (1056, 640), (640, 480), (3000, 600), (100, 60)])
def test_image_token_budget_matches_the_release(tiny_processor: EcgR1Processor, size: tuple[int, int]) -> None:
    width, height = size
    h, w = release_grid(height, width)
    assert tiny_processor.num_image_tokens(height, width) == (h // 32) * (w // 32)


@pytest.mark.parametrize("tags", [["ecg", "image"], ["image", "ecg"], ["ecg"], ["image"]])
def test_prompt_ids_equal_the_release_template(tiny_processor: EcgR1Processor, signal: np.ndarray,
                                               tags: list[str]) -> None:
    from ingest.prepare.render import render_page

    page = render_page(signal, 500, style="ecg-image-kit")
    tokens = (lambda h, w: (h // 32) * (w // 32))(*release_grid(page.height, page.width))
    sample = EcgR1Sample(signal=signal if "ecg" in tags else None, image=page if "image" in tags else None,
                         order=tuple(tags))
    ours = tiny_processor([sample])["input_ids"][0].tolist()
    assert ours == release_prompt_ids(tiny_processor.tokenizer, tags, tokens)
    assert ours.count(tiny_processor.ecg_token_id) == (101 if "ecg" in tags else 0)


def test_image_pixels_are_a_pil_bicubic_resize_then_rescale(tiny_processor: EcgR1Processor,
                                                            signal: np.ndarray) -> None:
    """The release resizes with PIL (qwen_vl_utils, bicubic) and then only rescales and
    normalises; our processor resizes inside: the pixel values must be the same."""
    from ingest.prepare.render import render_page

    page = render_page(signal, 500, style="ecg-image-kit")
    h, w = release_grid(page.height, page.width)
    resized = page.resize((w, h), Image.Resampling.BICUBIC)
    ours = tiny_processor.image_processor(images=[page], return_tensors="pt")
    release = tiny_processor.image_processor(images=[resized], return_tensors="pt", do_resize=False)
    assert ours["image_grid_thw"].tolist() == release["image_grid_thw"].tolist() == [[1, h // 16, w // 16]]
    assert torch.equal(ours["pixel_values"], release["pixel_values"])
    # rescale + normalise with mean = std = 0.5: x / 255 * 2 - 1, in [-1, 1]
    values = np.asarray(resized, dtype=np.float32) / 255.0 * 2 - 1
    assert np.isclose(ours["pixel_values"].min().item(), values.min(), atol=1e-6)
    assert np.isclose(ours["pixel_values"].max().item(), values.max(), atol=1e-6)


def test_engines_take_the_contract_from_the_checkpoint(tiny_checkpoint: Path, tmp_path: Path,
                                                       recording: np.ndarray) -> None:
    import shutil

    from ingest.ecg import Ecg, SourceFormat
    from model.engines.hf_engine import HfEngine

    folder = tmp_path / "release-like"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["ecg_input"] = {**RELEASE_CONTRACT.to_config(), "max_image_tokens": 64}
    (folder / "config.json").write_text(json.dumps(config))
    engine = HfEngine.from_pretrained(folder, device="cpu", max_new_tokens=2)
    assert engine.contract.lead_order == MIMIC_LEADS and engine.contract.image_style == "ecg-image-kit"
    assert engine.processor.num_image_tokens(1700, 2200) <= 64  # the checkpoint's budget, not 768
    assert HfEngine.from_pretrained(tiny_checkpoint, device="cpu", max_new_tokens=2).contract == ECGWL_CONTRACT

    prepared = prepare(Ecg(source_format=SourceFormat.WFDB, source_path="x.hea", signal=recording.astype(np.float32),
                           sampling_rate_hz=500.0, lead_names=list(STANDARD_LEADS)))
    request = request_from_prepared(prepared, engine.contract)
    assert np.array_equal(request.signal, prepared.model_signal[PTBXL_TO_MIMIC])
    assert request.image.size == (2200, 1700)
    assert request_from_prepared(prepared).image.size == (1056, 640)  # our own style, drawn separately
    assert len(engine.interpret([prepared])) == 1


def test_a_source_page_is_never_redrawn() -> None:
    from ingest.ecg import Ecg, SourceFormat
    from ingest.prepare import PreparedEcg

    page = Image.new("RGB", (800, 600), "white")
    scan = PreparedEcg(ecg=Ecg(source_format=SourceFormat.PDF, source_path="scan.pdf"), model_signal=None,
                       image=page, features=None)
    assert scan.page(style="ecg-image-kit") is page and scan.page() is page
