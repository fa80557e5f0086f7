"""Distributed training helpers: start from torchrun's environment, rank queries, gathers.

Single-process runs need no set-up: every helper then behaves as for a world of one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str = "cpu", timeout: timedelta = DEFAULT_TIMEOUT) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a no-op without it.

    Uses NCCL for CUDA devices and gloo otherwise; on CUDA selects the local-rank GPU. ``timeout`` is
    how long a collective or barrier waits for the other ranks before failing: long enough for rank 0
    to build the image cache or write a checkpoint while the others wait.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timeout)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns to each rank the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.size = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` [B, ...] from every rank along dim 0, keeping gradients.

    Every rank must pass the same shape. When every rank computes the same batch-level loss on the
    gathered tensor and DistributedDataParallel averages gradients, the update equals that of one
    process on the combined batch. Identity in a single process.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` [B, ...] from every rank along dim 0 (no gradient); identity alone."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def mean_over_ranks(values: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean over ranks of each named scalar, in one all_reduce on the values' own device.

    The values are stacked where they live (the run's device: NCCL refuses CPU tensors), summed over
    ranks at once and read back to the host once. Alone: the values themselves.
    """
    if not values:
        return {}
    stacked = torch.stack([value.detach().reshape(()).double() for value in values.values()])
    if is_distributed():
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked = stacked / dist.get_world_size()
    return dict(zip(values, stacked.tolist()))
