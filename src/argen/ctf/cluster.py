"""Codebook clustering for CTF: which fine codes share a coarse label.

CTF groups the codes of a VQ codebook by the similarity of their vectors; a code's cluster index is its
coarse label. Methods:

- "kmeans": Euclidean k-means (k-means++ initialisation, Lloyd iterations). For l2-normalised codes
  (LlamaGen's) this is nearly spherical k-means.
- "spherical": cosine k-means: vectors and centroids on the unit sphere, assignment by largest cosine.
- "balanced": Euclidean k-means whose assignment step gives every cluster V // K or V // K + 1 codes
  (IAR's argument: plain k-means leaves some clusters far larger than others).
- "random": a seeded random partition into equal groups: the CTF paper's negative ablation (its codes of one
  group are unrelated, so a refiner's wrong pick inside the right group is an unrelated patch).

Every result assigns each code to exactly one cluster and leaves no cluster empty, and is a pure
function of (vectors, clusters, method, restarts, seed): all randomness comes from one seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from argen.config import CLUSTER_METHODS as METHODS
from argen.ctf.table import CoarseTable, save_table
from argen.io.checkpoint import checkpoint_checksum
from argen.io.load import load_tokenizer


@dataclass(frozen=True)
class Clustering:
    """fine_to_coarse (V,) long cluster of each code, and the inertia of that partition.

    Inertia is the sum over codes of the squared distance to the centroid (1 - cosine for "spherical").
    """

    fine_to_coarse: torch.Tensor
    inertia: float


def cluster_codebook(
    vectors: torch.Tensor,
    clusters: int,
    method: str = "kmeans",
    restarts: int = 4,
    seed: int = 0,
    iterations: int = 100,
) -> Clustering:
    """Partition the rows of `vectors` (V, D) into `clusters` groups; k-means methods keep the restart
    of lowest inertia."""
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    if vectors.dim() != 2 or not vectors.is_floating_point() or vectors.shape[0] == 0:
        raise ValueError(
            f"codebook vectors must be a non-empty float tensor (V, D), got {vectors.dtype} {tuple(vectors.shape)}"
        )
    if not bool(torch.isfinite(vectors).all()):
        raise ValueError("codebook vectors contain NaN or infinite values")
    codes = vectors.shape[0]
    if not 1 <= clusters <= codes:
        raise ValueError(f"the number of clusters must be in [1, {codes}] (the codebook size), got {clusters}")
    if restarts < 1 or iterations < 1:
        raise ValueError(f"restarts and iterations must be >= 1, got {restarts} and {iterations}")
    generator = torch.Generator().manual_seed(seed)
    vectors = vectors.detach().double().cpu()
    if method == "random":
        return _random_partition(vectors, clusters, generator)
    if method == "spherical":
        vectors = F.normalize(vectors, dim=-1)
    best = None
    for _ in range(restarts):
        result = _lloyd(vectors, _kmeans_plus_plus(vectors, clusters, method, generator), method, iterations)
        if best is None or result.inertia < best.inertia:
            best = result
    return best


def cluster_tokenizer(
    tokenizer: str | Path, clusters: int, out: str | Path, method: str = "kmeans", restarts: int = 4, seed: int = 0
) -> CoarseTable:
    """Cluster a tokenizer checkpoint's codebook (the vectors its decoder looks up) and save the table."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the table file must name a .safetensors file, got {out}")
    model, config = load_tokenizer(tokenizer)
    result = cluster_codebook(model.codebook_vectors(), clusters, method=method, restarts=restarts, seed=seed)
    table = CoarseTable(
        result.fine_to_coarse,
        {
            "tokenizer": str(Path(tokenizer).resolve()),
            "tokenizer_sha256": checkpoint_checksum(tokenizer),
            "codebook_l2_norm": config.model.codebook_l2_norm,
            "method": method,
            "clusters": clusters,
            "restarts": restarts,
            "seed": seed,
            "inertia": result.inertia,
        },
    )
    save_table(table, out)
    return table


def cluster_sizes(fine_to_coarse: torch.Tensor, clusters: int) -> torch.Tensor:
    """(clusters,) number of codes in each cluster."""
    return torch.bincount(fine_to_coarse, minlength=clusters)


# ------------------------------------------------------------------------------------------------
# k-means


def _distances(vectors: torch.Tensor, centroids: torch.Tensor, method: str) -> torch.Tensor:
    """(V, K) squared Euclidean distances, or 1 - cosine for "spherical" (both >= 0)."""
    if method == "spherical":
        return (1.0 - vectors @ centroids.t()).clamp_min(0.0)
    return torch.cdist(vectors, centroids).pow(2)


def _kmeans_plus_plus(vectors: torch.Tensor, clusters: int, method: str, generator: torch.Generator) -> torch.Tensor:
    """(K, D) initial centroids: each new one drawn with probability proportional to the distance to the nearest
    centroid so far (Arthur and Vassilvitskii, 2007)."""
    codes = vectors.shape[0]
    chosen = [int(torch.randint(codes, (1,), generator=generator))]
    nearest = _distances(vectors, vectors[chosen], method)[:, 0]
    for _ in range(clusters - 1):
        weights = nearest.clone()
        weights[chosen] = 0.0
        if float(weights.sum()) <= 0.0:  # fewer distinct vectors than clusters: pick an unused code
            weights = torch.ones(codes, dtype=vectors.dtype)
            weights[chosen] = 0.0
        index = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(index)
        nearest = torch.minimum(nearest, _distances(vectors, vectors[index : index + 1], method)[:, 0])
    return vectors[chosen].clone()


def _centroids(vectors: torch.Tensor, assignment: torch.Tensor, clusters: int, method: str) -> torch.Tensor:
    sums = torch.zeros(clusters, vectors.shape[1], dtype=vectors.dtype).index_add_(0, assignment, vectors)
    if method == "spherical":
        return F.normalize(sums, dim=-1)
    return sums / cluster_sizes(assignment, clusters).clamp_min(1)[:, None].to(vectors.dtype)


def _nearest(distances: torch.Tensor) -> torch.Tensor:
    """Nearest centroid per code, then each empty cluster takes the code farthest from its own centroid
    among clusters of two or more codes (the usual repair; it keeps every cluster non-empty)."""
    assignment = distances.argmin(1)
    clusters = distances.shape[1]
    sizes = cluster_sizes(assignment, clusters)
    for empty in torch.nonzero(sizes == 0).flatten().tolist():
        own = distances.gather(1, assignment[:, None])[:, 0]
        own = torch.where(sizes[assignment] > 1, own, -1.0)  # never empty another cluster
        code = int(own.argmax())
        sizes[assignment[code]] -= 1
        assignment[code] = empty
        sizes[empty] = 1
    return assignment


def _balanced(distances: torch.Tensor) -> torch.Tensor:
    """An assignment with cluster sizes V // K (+1 for the first V % K clusters), greedy by distance.

    In rounds: every unassigned code proposes to its nearest cluster with room left; each cluster accepts
    its closest proposers up to its remaining room. Every round places at least one code.
    """
    codes, clusters = distances.shape
    room = torch.full((clusters,), codes // clusters, dtype=torch.long)
    room[: codes % clusters] += 1
    assignment = torch.full((codes,), -1, dtype=torch.long)
    while bool((assignment < 0).any()):
        waiting = torch.nonzero(assignment < 0).flatten()
        open_distances = distances[waiting].masked_fill((room == 0)[None, :], float("inf"))
        distance, wanted = open_distances.min(1)
        order = torch.argsort(distance, stable=True)
        order = order[torch.argsort(wanted[order], stable=True)]  # by cluster, closest first
        ranked = wanted[order]
        first = torch.searchsorted(ranked, ranked)  # index of each cluster's first proposer
        accepted = order[(torch.arange(len(order)) - first) < room[ranked]]
        assignment[waiting[accepted]] = wanted[accepted]
        room -= cluster_sizes(wanted[accepted], clusters)
    return assignment


def _lloyd(vectors: torch.Tensor, centroids: torch.Tensor, method: str, iterations: int) -> Clustering:
    clusters = centroids.shape[0]
    assign = _balanced if method == "balanced" else _nearest
    assignment = assign(_distances(vectors, centroids, method))
    for _ in range(iterations):
        centroids = _centroids(vectors, assignment, clusters, method)
        updated = assign(_distances(vectors, centroids, method))
        if torch.equal(updated, assignment):
            break
        assignment = updated
    centroids = _centroids(vectors, assignment, clusters, method)
    inertia = float(_distances(vectors, centroids, method).gather(1, assignment[:, None]).sum())
    return Clustering(assignment, inertia)


def _random_partition(vectors: torch.Tensor, clusters: int, generator: torch.Generator) -> Clustering:
    """Codes in a seeded random order dealt round-robin into clusters: equal sizes, no structure."""
    codes = vectors.shape[0]
    assignment = torch.empty(codes, dtype=torch.long)
    assignment[torch.randperm(codes, generator=generator)] = torch.arange(codes) % clusters
    centroids = _centroids(vectors, assignment, clusters, "kmeans")
    inertia = float(_distances(vectors, centroids, "kmeans").gather(1, assignment[:, None]).sum())
    return Clustering(assignment, inertia)
