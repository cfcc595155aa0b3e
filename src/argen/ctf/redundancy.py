"""CTF's premise, measured (the CTF paper's Fig. 1b): codes of one cluster are interchangeable when their vectors
are alike, so a refiner that picks the wrong member of the right cluster costs little.

Every token of N test images is replaced by a uniformly random member of its own cluster and the grid is decoded;
the PSNR of that decode against the tokenizer's own reconstruction is the cost of such mistakes, per clustering
method. Beside it, the mean cosine similarity of two different codes of one cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from argen.ctf.cluster import METHODS, cluster_codebook, cluster_sizes
from argen.data import load_dataset
from argen.data.tokenize import evaluation_data
from argen.data.transforms import to_uint8
from argen.eval.tokenizer import pixel_errors
from argen.io.checkpoint import checkpoint_checksum
from argen.io.load import load_tokenizer


def random_members(ids: torch.Tensor, fine_to_coarse: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each id replaced by a uniformly random code of its cluster (possibly itself)."""
    clusters = int(fine_to_coarse.max()) + 1
    members = torch.argsort(fine_to_coarse, stable=True)  # the codes, cluster by cluster
    sizes = cluster_sizes(fine_to_coarse, clusters)
    starts = torch.cumsum(sizes, 0) - sizes
    cluster = fine_to_coarse[ids]
    offset = (torch.rand(ids.shape, generator=generator) * sizes[cluster]).long().clamp_max(sizes[cluster] - 1)
    return members[starts[cluster] + offset]


def within_cluster_cosine(vectors: torch.Tensor, fine_to_coarse: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of two different codes in one cluster."""
    unit = F.normalize(vectors.double(), dim=-1)
    total, pairs = 0.0, 0
    for cluster in range(int(fine_to_coarse.max()) + 1):
        group = unit[fine_to_coarse == cluster]
        n = len(group)
        if n > 1:
            total += float((group @ group.t()).sum()) - n  # the n self-pairs have cosine 1
            pairs += n * (n - 1)
    return total / pairs if pairs else float("nan")


@torch.inference_mode()
def group_redundancy(
    tokenizer: str | Path,
    clusters: int,
    methods: Iterable[str] = METHODS,
    count: int = 500,
    split: str = "test",
    seed: int = 0,
    data_dir: str | None = None,
    batch_size: int = 250,
    progress: bool = True,
) -> dict[str, Any]:
    """PSNR (dB, against the reconstruction) after swapping every token for a random member of its cluster, and the
    within-cluster cosine, for each clustering method of the tokenizer's codebook into `clusters` groups."""
    model, config = load_tokenizer(tokenizer)
    if config.model.temporal_downsample:
        raise ValueError("the redundancy measure is for image tokenizers (CTF clusters an image codebook)")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    dataset = load_dataset(evaluation_data(config, split, data_dir), training=False)
    total = min(count, len(dataset))
    vectors = model.codebook_vectors()
    tables = {method: cluster_codebook(vectors, clusters, method, seed=seed).fine_to_coarse for method in methods}
    generator = torch.Generator().manual_seed(seed)
    psnr_sums = dict.fromkeys(tables, 0.0)
    for start in tqdm(range(0, total, batch_size), desc="ctf redundancy", disable=not progress):
        images = dataset.batch(torch.arange(start, min(start + batch_size, total)))["images"]
        ids = model.encode(images)
        reconstruction = to_uint8(model.decode(ids))
        for method, table in tables.items():
            swapped = to_uint8(model.decode(random_members(ids, table, generator)))
            psnr_sums[method] += float(pixel_errors(swapped, reconstruction)[1].sum())
    return {
        "tokenizer": str(tokenizer),
        "tokenizer_sha256": checkpoint_checksum(tokenizer),
        "split": split,
        "images": total,
        "clusters": clusters,
        "seed": seed,
        "methods": {
            method: {
                "psnr_db": psnr_sums[method] / total,
                "within_cluster_cosine": within_cluster_cosine(vectors, table),
                "largest_cluster": int(cluster_sizes(table, clusters).max()),
            }
            for method, table in tables.items()
        },
    }
