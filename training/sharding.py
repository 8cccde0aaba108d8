"""The RL policy sharded over processes with PyTorch FSDP2 (`fully_shard`): `shard = "fsdp"`.

    torchrun --nproc_per_node 8 -m training.rl --config rl-8b-gpu --corpus C.jsonl --policy runs/sft --out runs/rl

Each decoder layer of the language model is its own FSDP unit, the rest of the model (embeddings,
lm_head, the towers and the merger/projector) the root unit: every rank keeps 1/world of the
float32 weights, of their gradients and (AdamW built over the sharded DTensor parameters) of the optimizer moments;
a unit's full weights exist only while it runs (all-gathered in `param_dtype`, bf16 on GPUs,
gradients reduce-scattered in `reduce_dtype`, fp32).

The token-level mean stays global: every rank sums its clipped token losses, the kept tokens are
all-reduced, and each rank's sum is divided by (global count / world size), because FSDP
averages the ranks' gradients (the 1/world it applies cancels the world size put back here).
The result is the gradient of (all kept tokens' loss) / (all kept tokens), whatever each rank
holds. Every rank must also run the same number of forward/backward passes (each one is a
collective); a rank with fewer micro-batches runs a masked pass that adds zero gradient.

Rollouts need whole weights: `full_weights` all-gathers every unit once per step and keeps it
gathered while the HF sampler's `generate` runs (with `synced_gpus=False`, so no collective runs
inside and ranks may generate different numbers of tokens, as often as dynamic sampling needs);
`gather_policy` builds an ordinary model on rank 0 from the full state dict, for the
vLLM sync and the saved folders. The process group comes from torchrun's environment: NCCL on
CUDA, gloo on CPU (the tests).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from model.modeling_ecg_r1 import ECGR1ForConditionalGeneration


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DtypeName = Literal["float32", "bfloat16"]


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # this code started the process group, so it ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_ranks() -> Ranks:
    """The process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend)
    return Ranks(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device, owns_group=owns_group)


def all_reduce(value: float, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> float:
    """A number summed (or maxed) over the ranks; float64 so token counts stay exact."""
    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=op)
    return float(tensor.item())


def token_denominator(local_tokens: float, world_size: int) -> float:
    """What this rank divides its summed token loss by so that FSDP's gradient average over
    `world_size` ranks gives the gradient of the global token-level mean: sum_r (L_r / d) / world
    = sum_r L_r / (global count) when d = global count / world."""
    return all_reduce(local_tokens) / world_size


def shard_policy(model: ECGR1ForConditionalGeneration, param_dtype: DtypeName,
                 reduce_dtype: DtypeName) -> None:
    """Wrap each decoder layer, then the root, in place.

    The vision blocks stay in the root unit (sharded with it, gathered with it): transformers'
    `generate` encodes the image before it calls the model's forward, and FSDP2 refuses a
    unit whose forward runs before the root's (lazy initialisation fails). At 8B the ViT is
    ~0.6B of 8.8B parameters, ~1.2 GB gathered in bf16."""
    policy = MixedPrecisionPolicy(param_dtype=DTYPES[param_dtype], reduce_dtype=DTYPES[reduce_dtype])
    for layer in model.model.language_model.layers:
        fully_shard(layer, mp_policy=policy, reshard_after_forward=True)
    # The root (embeddings, lm_head, projector, towers) stays gathered from forward to
    # backward: it is needed again first thing in backward.
    fully_shard(model, mp_policy=policy, reshard_after_forward=False)


def shard_sizes(model: torch.nn.Module) -> tuple[int, int]:
    """(parameter elements this rank stores, elements of the whole model)."""
    local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in model.parameters())
    return local, sum(p.numel() for p in model.parameters())


def _units(model: torch.nn.Module) -> list[FSDPModule]:
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextmanager
def full_weights(model: ECGR1ForConditionalGeneration) -> Iterator[None]:
    """Every unit all-gathered (collectively, same order on every rank) and kept gathered through
    any number of forwards, then resharded. Inside, forwards issue no collective, so each rank may
    `generate` its own prompts for as many tokens as it likes. Costs the full weights in
    `param_dtype` on each rank while it lasts."""
    units = _units(model)
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for unit in units:
            unit.set_reshard_after_forward(unit is not model, recurse=False)  # as shard_policy set them
            unit.reshard()


def gather_policy(model: ECGR1ForConditionalGeneration) -> ECGR1ForConditionalGeneration | None:
    """The full float32 policy as an ordinary model on rank 0's CPU (None on the other ranks).
    Collective: every rank must call it."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() != 0:
        return None
    with torch.device("meta"):  # no second random initialisation of 8B weights
        plain = ECGR1ForConditionalGeneration(model.config)
    plain.load_state_dict(state, strict=True, assign=True)
    plain.generation_config = copy.deepcopy(model.generation_config)
    # Non-persistent buffers (the rotary inverse frequencies) are in no state dict: FSDP leaves
    # buffers unsharded, so the sharded model's own copies are complete.
    for name, buffer in model.named_buffers():
        owner, _, leaf = name.rpartition(".")
        target = plain.get_submodule(owner)
        if target._buffers[leaf].is_meta:
            target._buffers[leaf] = buffer.detach().to("cpu", copy=True)
    return plain.eval()


__all__ = ["DTYPES", "Ranks", "all_reduce", "full_weights", "gather_policy", "init_ranks", "shard_policy",
           "shard_sizes", "token_denominator"]
