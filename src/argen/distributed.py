"""torchrun support: one code path for one process and many (DDP over gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    """True in a process that torchrun started with others (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | None = None) -> DistributedContext:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set); otherwise one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    chosen = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
        # TF32 matmuls and convolutions: fp32 master weights at tensor-core speed (bf16 autocast covers the rest).
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if world_size > 1:
        # Several processes share the cores: 2-thread ops stall whole scheduler slices otherwise.
        if not use_cuda:
            torch.set_num_threads(1)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world_size, local_rank, chosen)


def all_reduce_mean(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if context.enabled:
        values = values.clone()
        dist.all_reduce(values)
        values /= context.world_size
    return values


def gather_to_main(value: Any, context: DistributedContext) -> list[Any] | None:
    """Every rank's `value` (picklable), in rank order, on rank 0; None on the other ranks."""
    if not context.enabled:
        return [value]
    gathered = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def teardown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
