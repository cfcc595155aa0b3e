"""`argen eval` over torchrun ranks: each rank extracts the features of its share of the samples, rank 0 computes
the metrics.

The samples are cut where one process's `FeatureExtractor.batches` cuts them (every `batch_size` images), rank r
takes the batches b with b % world_size == r, read a batch at a time from a memory map of the `.npz`
(`open_npz`), and rank 0 puts the gathered features back in sample order: the metrics are those of one process,
computed from the same batches in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from argen import distributed
from argen.distributed import DistributedContext
from argen.eval.features import FeatureExtractor
from argen.eval.npz import open_npz, read_samples
from argen.eval.reference import ReferenceStatistics, check_compatible, evaluate_features


def evaluate_across_ranks(
    samples: str | Path,
    reference: ReferenceStatistics,
    extractor: FeatureExtractor,
    context: DistributedContext,
    conditional: bool = True,
    bootstrap: int = 0,
) -> dict[str, Any] | None:
    """`argen.eval.reference.evaluate` of a sample file (`.npz`, or a folder of images, read whole) shared by the
    ranks of `context`; class accuracy needs `conditional` and labels in the file. The result on rank 0, None on
    the others."""
    check_compatible(reference, extractor)  # on every rank, before any work
    samples = Path(samples)
    batch = open_npz(samples) if samples.suffix == ".npz" and samples.is_file() else read_samples(samples)
    size, images = extractor.batch_size, batch.images
    starts = range(0, len(images), size)
    # A copy of each batch: torch does not wrap the read-only memory map.
    mine = list(
        extractor.batches(
            np.array(images[start : start + size]) for start in starts[context.rank :: context.world_size]
        )
    )
    gathered = distributed.gather_to_main(mine, context)
    if not context.is_main:
        return None
    in_order = (gathered[index % context.world_size][index // context.world_size] for index in range(len(starts)))
    labels = batch.labels if conditional else None
    return evaluate_features(in_order, reference, extractor, labels, bootstrap=bootstrap)
