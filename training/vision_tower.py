"""Pretraining the tiny ViT: the demo's stand-in for Qwen3-VL's pretrained vision tower.

ECG-R1 freezes Qwen3-VL's PRETRAINED ViT. The tiny model has no pretrained ViT; trained from
random inside SFT only, its tokens carried little about the page: a linear probe of the shipped
demo's pooled visual tokens read the heart rate of held-out real pages to 14.8 bpm, against
16.8 for always saying the mean rate, and image-only prompts got one reading for every ECG.
So, as the ECG tower is (`training/tower.py`), the ViT can be pretrained before SFT on the
training rows' pages (`pretrain_vision_tower_epochs`): its merged tokens, mean-pooled, go through
a head that predicts the row's labels and measured values (`tower.fit_to_reports`); then SFT
freezes it (`train_vision_tower = false`) and its merger trains, as in the release. It is off in the shipped demo's
configuration: the one full run with it gave image-only readings real heart rates but cost the
signal + image reading more (training/README.md).

    pretrain_vision_tower(model, processor, corpus_file, rows, epochs=30, augment=True) -> TowerPretraining

Pages are resized to the processor's size once and kept as 8-bit pixels; each batch is cut into
the processor's patches here (`Pages.patchify`: the very values the processor gives, of one frame,
see `patch_embedding_as_matmul`), so an epoch costs little more than the ViT. With `augment`, each
page is turned round by a random number of pixels across and down (`shift_page`), so the ViT
cannot learn where a row's beats and baselines fall on its page; rates, intervals and amplitudes
are unchanged. Turned round by whole visual tokens only, the ViT still learnt its 661 pages by
heart (a probe of its tokens: 1.7 bpm on them, 17.5 on held-out real pages).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration
from model.processing_ecg_r1 import EcgR1Processor
from training.rows import TrainingRow, resolve
from training.tower import Encoded, TowerPretraining, fit_to_reports


class Pages:
    """The rows' pages at the processor's size: uint8 [height, width, 3] each, and the processor's settings."""

    def __init__(self, images: list[torch.Tensor], processor: EcgR1Processor) -> None:
        settings = processor.image_processor
        self.images = images
        self.patch, self.merge = settings.patch_size, settings.merge_size
        self.mean = torch.tensor(settings.image_mean, dtype=torch.float32)[:, None, None]
        self.sd = torch.tensor(settings.image_std, dtype=torch.float32)[:, None, None]
        self.scale = float(settings.rescale_factor)

    def batch(self, indices: Sequence[int],
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(patches, image_grid_thw) of these pages, each shifted when a generator is given.

        The patches are ONE frame's: [patches, 3 x patch x patch], see `patch_embedding_as_matmul`."""
        images = [self.images[index] for index in indices]
        if generator is not None:
            images = [shift_page(image, generator) for image in images]
        if len({image.shape for image in images}) > 1:  # pages of different sizes: one at a time
            cut = [self.patchify(image[None]) for image in images]
            return torch.cat([patches for patches, _ in cut]), torch.cat([grids for _, grids in cut])
        return self.patchify(torch.stack(images))

    def patchify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The processor's patches of pages [B, height, width, 3] at its size, rescaled and normalised and
        ordered by (page, token row, token column, patch in the token), of one frame (the processor
        repeats a still image over its temporal patch)."""
        values = ((images.permute(0, 3, 1, 2).float() * self.scale) - self.mean) / self.sd
        pages, channels, height, width = values.shape
        rows, columns, patch, merge = height // self.patch, width // self.patch, self.patch, self.merge
        shaped = values.reshape(pages, channels, rows // merge, merge, patch, columns // merge, merge, patch)
        ordered = shaped.permute(0, 2, 5, 3, 6, 1, 4, 7)
        grids = torch.tensor([[1, rows, columns]] * pages)
        return ordered.reshape(pages * rows * columns, channels * patch * patch), grids


def shift_page(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The page [height, width, 3] turned round by a random number of pixels across and down."""
    height, width = image.shape[:2]
    down = int(torch.randint(0, height, (1,), generator=generator))
    across = int(torch.randint(0, width, (1,), generator=generator))
    return image.roll((down, across), dims=(0, 1))


def processor_sized(image: Image.Image, processor: EcgR1Processor) -> torch.Tensor:
    """The page resized as the processor resizes it, as uint8 [height, width, 3]."""
    settings = processor.image_processor
    factor = settings.patch_size * settings.merge_size
    height, width = smart_resize(image.height, image.width, factor=factor, min_pixels=settings.size["shortest_edge"],
                                 max_pixels=settings.size["longest_edge"])
    resized = image.convert("RGB").resize((width, height), Image.Resampling(settings.resample))
    return torch.from_numpy(np.array(resized, dtype=np.uint8))


def load_pages(corpus_file: Path, rows: Sequence[TrainingRow], processor: EcgR1Processor) -> Pages:
    images = []
    for row in rows:
        with Image.open(resolve(corpus_file, row.image_path)) as image:
            images.append(processor_sized(image, processor))
    return Pages(images, processor)


@contextmanager
def patch_embedding_as_matmul(visual: nn.Module) -> Iterator[None]:
    """Compute the ViT's patch embedding of still pages as the matrix product it is, while pretraining.

    The embedding is a Conv3d whose kernel covers its whole input patch (channels x frames x
    patch x patch), so it is one matrix product; on a CPU its backward pass as a convolution took
    5x the product's (0.92 against 0.36 s for 16 pages). And a still page is the same frame
    repeated over the temporal patch, so the product of one frame with the frames' weights summed
    is the same number at half the cost: inside this block the embedding takes ONE frame's
    patches (`Pages.batch`). The results match the convolution's to float32 rounding; the
    module's own forward is put back afterwards."""
    embed = visual.patch_embed

    def as_matmul(one_frame: torch.Tensor) -> torch.Tensor:
        weight = embed.proj.weight  # [out, channels, frames, patch, patch]
        summed = weight.sum(dim=2).reshape(weight.shape[0], -1)
        return F.linear(one_frame.reshape(-1, summed.shape[1]).to(weight.dtype), summed, embed.proj.bias)

    embed.forward = as_matmul
    try:
        yield
    finally:
        del embed.forward


def pretrain_vision_tower(model: ECGR1ForConditionalGeneration, processor: EcgR1Processor, corpus_file: Path,
                          rows: Sequence[TrainingRow], *, epochs: int = 30, batch_size: int = 16,
                          learning_rate: float = 3e-3, seed: int = 0, augment: bool = False,
                          progress: bool = True) -> TowerPretraining:
    """Train the ViT and its mergers in place to predict the rows' labels from their pages."""
    rows = [row for row in rows if row.image_path is not None]
    pages = load_pages(corpus_file, rows, processor)
    visual = model.model.visual

    def encode(batch: list[int], generator: torch.Generator | None) -> Encoded:
        pixel_values, grids = pages.batch(batch, generator)
        tokens = model.model.get_image_features(pixel_values, grids).pooler_output
        return Encoded(torch.stack([page.mean(dim=0) for page in tokens]))  # pages are never stretched

    visual.requires_grad_(True).train()
    with patch_embedding_as_matmul(visual):
        record = fit_to_reports(encode, list(visual.parameters()), rows,
                                width=model.config.vision_config.out_hidden_size, epochs=epochs,
                                batch_size=batch_size, learning_rate=learning_rate, seed=seed, augment=augment,
                                progress=progress, description="ViT pretraining", normalise=True)
    visual.eval()
    return record


__all__ = ["Pages", "load_pages", "patch_embedding_as_matmul", "pretrain_vision_tower", "processor_sized",
           "shift_page"]
