"""Batches read ahead by `torch.utils.data.DataLoader` workers, in an order fixed by the caller.

The caller (the trainer, `argen tokenize`) decides which samples make each micro-batch and with which seed; a
worker only calls `dataset.batch(indices)` under that seed. The batches, their augmentations included, are
therefore the same with 0, 1 or 8 workers, and a resumed run asks for exactly the batches it had left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader

from argen.data.datasets import DataError

PREFETCH_PER_WORKER = 4  # micro-batches each worker keeps ready


class Dataset(Protocol):
    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class StreamedDataset(Protocol):
    """A dataset read in order, not indexed (tar shards): `stream` gives a rank its micro-batches from its `start`-th
    on, epoch after epoch, each augmentation seeded from `seed` and the batch's place."""

    def __len__(self) -> int: ...

    def stream(
        self, seed: int, start: int, micro_batch: int, rank: int, world_size: int, num_workers: int, pin_memory: bool
    ) -> Iterator[dict[str, torch.Tensor]]: ...


@dataclass(frozen=True)
class BatchRequest:
    indices: torch.Tensor
    seed: int  # the RNG seed of the batch's random augmentations (crops, flips, stored views)


class _RequestedBatches(torch.utils.data.Dataset):
    """`dataset.batch(request.indices)` under `request.seed`; a DataError comes back as its message (a worker's
    exception would reach the main process wrapped in a traceback)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, request: BatchRequest) -> dict[str, torch.Tensor] | str:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(request.seed)
            try:
                return self.dataset.batch(request.indices)
            except DataError as error:
                return str(error)


def _one_thread(worker_id: int) -> None:
    # Workers decode images; threads inside each would only fight the training ranks for the cores.
    torch.set_num_threads(1)


def load_batches(
    dataset: Dataset, requests: Iterable[BatchRequest], num_workers: int = 0, pin_memory: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of `requests`, in order; read by `num_workers` processes (0: in this one), into pinned memory
    when asked (for CUDA). Raises DataError for data that cannot be read."""
    if num_workers < 0:
        raise DataError(f"data.num_workers must be >= 0, got {num_workers}")
    loader = DataLoader(
        _RequestedBatches(dataset),
        batch_size=None,
        sampler=requests,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_one_thread if num_workers else None,
        persistent_workers=num_workers > 0,
        prefetch_factor=PREFETCH_PER_WORKER if num_workers else None,
    )
    for batch in loader:
        if isinstance(batch, str):
            raise DataError(batch)
        yield batch
