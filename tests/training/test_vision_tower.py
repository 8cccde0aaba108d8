"""Tiny ViT pretraining: pages cut into the processor's own patches, shifted, and a ViT that learns the rows' labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from training.config import load_sft_config
from training.rows import read_rows, resolve
from training.sft import build_tiny, corpus_texts
from training.vision_tower import load_pages, patch_embedding_as_matmul, pretrain_vision_tower, shift_page


@pytest.fixture(scope="module")
def tiny(corpus: Path):
    rows = list(read_rows(corpus, split="train"))
    torch.manual_seed(0)
    return build_tiny(corpus_texts(rows), load_sft_config("sft-demo-cpu").tiny)


def _one_frame(pixel_values: torch.Tensor, processor) -> torch.Tensor:
    """The processor's patches [N, channels x frames x patch x patch] of a still page, one frame of them."""
    settings = processor.image_processor
    patch, frames = settings.patch_size, settings.temporal_patch_size
    shaped = pixel_values.view(pixel_values.shape[0], 3, frames, patch * patch)
    assert torch.equal(shaped[:, :, 0], shaped[:, :, -1])  # a still image: the frames are one
    return shaped[:, :, 0].reshape(pixel_values.shape[0], -1)


def test_pages_are_cut_into_the_processors_own_patches(corpus: Path, tiny) -> None:
    _, processor = tiny
    rows = list(read_rows(corpus, split="train"))[:2]
    pages = load_pages(corpus, rows, processor)
    values, grids = pages.batch([0, 1])
    for index, row in enumerate(rows):
        with Image.open(resolve(corpus, row.image_path)) as image:
            vision = processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")
        assert pages.images[index].dtype == torch.uint8
        assert torch.equal(grids[index], vision["image_grid_thw"][0])
        count = int(vision["image_grid_thw"][0].prod())
        expected = _one_frame(vision["pixel_values"], processor)
        assert torch.allclose(values[index * count:(index + 1) * count], expected, atol=1e-6)


def test_shifting_a_page_turns_it_round_and_keeps_every_pixel() -> None:
    page = torch.arange(6 * 8 * 3, dtype=torch.int64).reshape(6, 8, 3).to(torch.uint8)
    shifted = shift_page(page, torch.Generator().manual_seed(1))
    again = shift_page(page, torch.Generator().manual_seed(1))
    assert torch.equal(shifted, again)  # the seed decides
    assert not torch.equal(shifted, page)
    assert torch.equal(torch.sort(shifted.flatten()).values, torch.sort(page.flatten()).values)
    down, across = (int(v) for v in (shifted[0, 0, 0] // 3 // 8, shifted[0, 0, 0] // 3 % 8))
    assert torch.equal(shifted, page.roll((-down, -across), dims=(0, 1)))


def test_the_patch_embedding_of_one_frame_is_the_convolution_of_the_still_page(tiny) -> None:
    model, processor = tiny
    visual = model.model.visual
    settings = processor.image_processor
    one_frame = torch.randn(10, 3, 1, settings.patch_size ** 2)
    still = one_frame.expand(-1, -1, settings.temporal_patch_size, -1).reshape(10, -1)
    expected = visual.patch_embed(still)
    with patch_embedding_as_matmul(visual):
        assert torch.allclose(visual.patch_embed(one_frame.reshape(10, -1)), expected, atol=1e-4)
    assert "forward" not in vars(visual.patch_embed)  # the module's own forward is back


def test_vit_pretraining_lowers_the_loss_and_changes_the_vit(corpus: Path, tiny) -> None:
    model, processor = tiny
    rows = list(read_rows(corpus, split="train"))
    before = [p.detach().clone() for p in model.model.visual.parameters()]
    record = pretrain_vision_tower(model, processor, corpus, rows, epochs=12, batch_size=3, progress=False)
    assert record.losses[-1] < 0.8 * record.losses[0]
    assert record.labels == sorted({label for row in rows for label in row.labels})
    assert any(not torch.equal(a, b) for a, b in zip(before, model.model.visual.parameters(), strict=True))
    assert not model.model.visual.training  # left in eval mode: SFT freezes it


def test_vit_pretraining_with_shifted_pages_trains_the_vit(corpus: Path, tiny) -> None:
    model, processor = tiny
    rows = list(read_rows(corpus, split="train"))
    before = [p.detach().clone() for p in model.model.visual.parameters()]
    record = pretrain_vision_tower(model, processor, corpus, rows, epochs=2, batch_size=3, augment=True,
                                   progress=False)
    assert len(record.losses) == 2 and all(loss > 0 for loss in record.losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.model.visual.parameters(), strict=True))
