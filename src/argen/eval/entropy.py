"""Token-dependency analysis: PAR's argument for parallel decoding, measured on our data and models.

PAR (Wang et al., CVPR 2025) observes that nearby tokens depend strongly on each other and distant ones weakly,
so distant tokens can be drawn in the same step at a small cost in entropy, adjacent ones cannot. Two views:

- Data-based: from token grids of real images, for a reference position r, the maps over positions j of
  H(X_j | X_r) and of the mutual information I(X_r; X_j) = H(X_j) - H(X_j | X_r).
- Model-based: a trained AR model, teacher-forced on real sequences under its own Layout; per grid position
  the mean predictive entropy and the mean NLL of the true token. Compared with a sequential model, the
  difference is the entropy a parallel order adds at each position.

Entropies are in nats (bits = nats / ln 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from argen.layout import VISUAL, Layout
from argen.teacher_forcing import TeacherForcing

CORRECTIONS = ("miller-madow", "none")
JOINT_BINS_PER_CHUNK = 2**24  # bound on the joint-count table built at once (int64: 128 MB)


# ------------------------------------------------------------------------------------------------
# estimators


def entropy_from_counts(counts: torch.Tensor, correction: str = "miller-madow") -> torch.Tensor:
    """Entropy in nats of each row of histogram counts (..., K) -> (...).

    The plug-in estimate -sum p_hat log p_hat is biased low: to first order its expectation is
    H - (m - 1) / (2N) for m bins of non-zero probability and N samples. Miller-Madow adds (m_seen - 1) / (2N)
    with m_seen the bins actually observed. That removes the first-order bias when N >> m; when most bins are
    seen once or never (a 1024 x 1024 joint table from ~60k images) m_seen undercounts m and the estimate stays
    low, which is why a smaller alphabet (`reduce_alphabet`) is offered.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    counts = counts.double()
    total = counts.sum(-1)
    if bool((total <= 0).any()):
        raise ValueError("every histogram needs at least one sample")
    plug_in = total.log() - torch.special.xlogy(counts, counts).sum(-1) / total
    if correction == "none":
        return plug_in
    return plug_in + ((counts > 0).sum(-1) - 1) / (2 * total)


def quantile_table(ids: torch.Tensor, vocab: int, size: int) -> torch.Tensor:
    """A fine -> coarse table (vocab,) cutting the ids, sorted by frequency, into `size` groups of equal mass.

    The fallback when no clustering table (CTF's fine_to_coarse) is at hand. The groups mean nothing visually
    (codes of similar frequency), but any function of the ids can only lower mutual information (data
    processing inequality), so the result is a lower bound on the full-alphabet value, with a far smaller
    estimation bias: each symbol holds about 1/size of the samples. A code heavier than 1/size keeps a group
    to itself, so the alphabet can come out a little smaller than `size`.
    """
    if not 2 <= size <= vocab:
        raise ValueError(f"the reduced alphabet size must be in [2, {vocab}], got {size}")
    frequency = torch.bincount(ids.flatten().long(), minlength=vocab).double()
    order = torch.argsort(frequency, descending=True, stable=True)
    mass = frequency[order] / frequency.sum()
    middle = torch.cumsum(mass, 0) - mass / 2  # (vocab,) cumulative mass at the middle of each code
    groups = torch.unique((middle * size).long().clamp(max=size - 1), return_inverse=True)[1]
    table = torch.empty(vocab, dtype=torch.long)
    table[order] = groups
    return table


def reduce_alphabet(ids: torch.Tensor, table: torch.Tensor, vocab: int) -> tuple[torch.Tensor, int]:
    """Ids (N, *grid) mapped through a fine -> coarse table (vocab,); returns the ids and the new alphabet size."""
    if table.dim() != 1 or table.numel() != vocab or table.is_floating_point():
        raise ValueError(
            f"the fine -> coarse table must be a 1-D integer tensor of {vocab} entries (one per code), "
            f"got {table.dtype} {tuple(table.shape)}"
        )
    if int(table.min()) < 0:
        raise ValueError("the fine -> coarse table has negative entries")
    table = table.long()
    return table[ids.long()], int(table.max()) + 1


# ------------------------------------------------------------------------------------------------
# data-based maps


@dataclass
class DependencyMaps:
    """Maps (*grid) in nats for one reference position."""

    reference: tuple[int, ...]
    marginal_entropy: torch.Tensor  # H(X_j)
    conditional_entropy: torch.Tensor  # H(X_j | X_r)
    mutual_information: torch.Tensor  # I(X_r; X_j)
    independent_baseline: float  # mean estimated I over j != r with X_r shuffled across images: the bias floor


def _joint_entropies(reference: torch.Tensor, tokens: torch.Tensor, alphabet: int, correction: str) -> torch.Tensor:
    """H(X_r, X_j) for each column j: reference (N,), tokens (N, P) -> (P,)."""
    count, positions = tokens.shape
    chunk = max(1, JOINT_BINS_PER_CHUNK // alphabet**2)
    entropies = []
    for start in range(0, positions, chunk):
        block = tokens[:, start : start + chunk]  # (N, C)
        width = block.shape[1]
        offsets = torch.arange(width) * alphabet**2
        joint = reference[:, None] * alphabet + block + offsets  # (N, C) one bin per (column, x_r, x_j)
        counts = torch.bincount(joint.flatten(), minlength=width * alphabet**2).view(width, alphabet**2)
        entropies.append(entropy_from_counts(counts, correction))
    return torch.cat(entropies)


def _marginal_entropies(tokens: torch.Tensor, alphabet: int, correction: str) -> torch.Tensor:
    """H(X_j) for each column of tokens (N, P) -> (P,)."""
    positions = tokens.shape[1]
    binned = tokens + torch.arange(positions) * alphabet  # (N, P)
    counts = torch.bincount(binned.flatten(), minlength=positions * alphabet).view(positions, alphabet)
    return entropy_from_counts(counts, correction)


def dependency_maps(
    ids: torch.Tensor, reference: Sequence[int], alphabet: int, correction: str = "miller-madow", seed: int = 0
) -> DependencyMaps:
    """H(X_j), H(X_j | X_r) and I(X_r; X_j) over every grid position j, from token grids ids (N, *grid).

    `alphabet` is the number of symbols (ids must lie in [0, alphabet)); reduce it first with `reduce_alphabet`
    to cut the estimator's bias (see `entropy_from_counts`). `seed` fixes the shuffle of the bias floor.
    """
    grid = tuple(ids.shape[1:])
    if ids.dim() < 2 or ids.shape[0] < 2:
        raise ValueError(f"expected token grids (N >= 2, *grid), got {tuple(ids.shape)}")
    reference = tuple(int(v) for v in reference)
    if len(reference) != len(grid) or any(not 0 <= v < size for v, size in zip(reference, grid)):
        raise ValueError(f"reference position {reference} is outside the token grid {grid}")
    tokens = ids.flatten(1).long()  # (N, P)
    if int(tokens.min()) < 0 or int(tokens.max()) >= alphabet:
        raise ValueError(f"token ids must lie in [0, {alphabet}), got [{int(tokens.min())}, {int(tokens.max())}]")
    index = 0
    for value, size in zip(reference, grid):
        index = index * size + value
    marginal = _marginal_entropies(tokens, alphabet, correction)
    conditional = _joint_entropies(tokens[:, index], tokens, alphabet, correction) - marginal[index]
    generator = torch.Generator().manual_seed(seed)
    shuffled = tokens[torch.randperm(len(tokens), generator=generator), index]
    independent = marginal + marginal[index] - _joint_entropies(shuffled, tokens, alphabet, correction)
    others = torch.arange(tokens.shape[1]) != index
    return DependencyMaps(
        reference,
        marginal.view(grid).float(),
        conditional.view(grid).float(),
        (marginal - conditional).view(grid).float(),
        float(independent[others].mean()),
    )


def distance_profile(values: torch.Tensor, reference: Sequence[int]) -> tuple[list[float], list[float]]:
    """Mean of a map (*grid) over positions at each Euclidean distance from `reference` (distance 0 left out)."""
    axes = torch.meshgrid(*[torch.arange(size) for size in values.shape], indexing="ij")
    distance = torch.stack([(axis - value).float() ** 2 for axis, value in zip(axes, reference)]).sum(0).sqrt()
    rounded = (distance * 1000).round() / 1000  # group equal distances despite float noise
    levels = [d for d in torch.unique(rounded).tolist() if d > 0]
    return levels, [float(values[rounded == d].mean()) for d in levels]


def default_references(grid: Sequence[int]) -> list[tuple[int, ...]]:
    """Centre, top-left corner, and middle of the left edge (earlier axes, e.g. time, at their middle)."""
    centre = tuple(size // 2 for size in grid)
    corner = centre[:-2] + (0, 0)
    edge = centre[:-1] + (0,)
    return list(dict.fromkeys([centre, corner, edge]))


# ------------------------------------------------------------------------------------------------
# model-based maps


@dataclass
class PositionMaps:
    """Teacher-forced per-position statistics of one AR model, in nats."""

    entropy: torch.Tensor  # (*grid) mean predictive entropy over the visual vocabulary
    nll: torch.Tensor  # (*grid) mean NLL of the true token
    step: torch.Tensor  # (*grid) index of the visual decode step that produces each position
    step_size: torch.Tensor  # (S,) tokens produced by each visual step
    step_entropy: torch.Tensor  # (S,) mean entropy of the tokens of each visual step
    step_nll: torch.Tensor  # (S,)
    images: int


@torch.no_grad()
def position_maps(
    model: nn.Module,
    layout: Layout,
    ids: torch.Tensor,
    labels: torch.Tensor,
    prologue_ids: torch.Tensor | None = None,
    batch_size: int = 64,
) -> PositionMaps:
    """Teacher-force grids ids (N, *grid) with class labels (N,) under `layout`; per-position entropy and NLL.

    The model (in eval mode) is teacher-forced as in training (argen.teacher_forcing): the logits of each slot
    that predicts a visual token are restricted to the visual vocabulary, as when decoding.
    """
    if model.training:
        raise ValueError("put the model in eval mode first: dropout would perturb the measured entropies")
    if tuple(ids.shape[1:]) != layout.grid or labels.shape != ids.shape[:1] or len(ids) == 0:
        raise ValueError(
            f"expected ids (N, {', '.join(map(str, layout.grid))}) and labels (N,) with N > 0, "
            f"got {tuple(ids.shape)} and {tuple(labels.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    forcing = TeacherForcing(layout, model.config)
    visual = layout.segments[VISUAL]
    target_index = layout.targets_index
    # (N_visual,) slots that predict visual tokens; steps run in order, so these are in generation order
    slots = torch.nonzero(target_index >= visual.start).squeeze(1).to(device)
    entropy_sum = torch.zeros(layout.visual_count, dtype=torch.float64)
    nll_sum = torch.zeros(layout.visual_count, dtype=torch.float64)
    for start in range(0, len(ids), batch_size):
        part = slice(start, start + batch_size)
        prologue = None if prologue_ids is None else prologue_ids[part].to(device)
        tensors = layout.training_tensors(ids[part].to(device), labels[part].to(device), prologue)
        logits = forcing.logits(model, tensors["ids"], tensors["kinds"])[:, slots]  # (B, N_visual, V)
        log_probs = F.log_softmax(logits.float(), dim=-1)  # -inf outside the visual vocabulary
        targets = tensors["targets"][:, slots]  # (B, N_visual)
        entropy_sum += torch.special.entr(log_probs.exp()).sum(-1).sum(0).double().cpu()
        nll_sum += -log_probs.gather(-1, targets[..., None]).squeeze(-1).sum(0).double().cpu()
    entropy, nll = entropy_sum / len(ids), nll_sum / len(ids)  # (N_visual,) in generation order
    steps = [step for step in layout.steps if step.segment == VISUAL]
    step_of_token = torch.cat([torch.full((step.n_output,), number) for number, step in enumerate(steps)])
    bounds = [(step.output_start - visual.start, step.output_end - visual.start) for step in steps]

    def to_grid(values: torch.Tensor) -> torch.Tensor:
        grid = torch.empty_like(values)
        grid[layout.visual_order] = values  # generation index -> raster index
        return grid.view(layout.grid)

    return PositionMaps(
        entropy=to_grid(entropy).float(),
        nll=to_grid(nll).float(),
        step=to_grid(step_of_token),
        step_size=torch.tensor([high - low for low, high in bounds]),
        step_entropy=torch.stack([entropy[low:high].mean() for low, high in bounds]).float(),
        step_nll=torch.stack([nll[low:high].mean() for low, high in bounds]).float(),
        images=len(ids),
    )


def summarize(maps: PositionMaps, baseline: PositionMaps | None = None) -> dict[str, Any]:
    """Scalar summary: means (nats and bits per token), means by step size, and increases over `baseline`."""
    bits = 1 / math.log(2)
    summary: dict[str, Any] = {
        "entropy_nats": float(maps.entropy.mean()),
        "entropy_bits": float(maps.entropy.mean()) * bits,
        "nll_nats": float(maps.nll.mean()),
        "nll_bits": float(maps.nll.mean()) * bits,
        "visual_steps": len(maps.step_size),
        "by_step_size": {
            int(size): {
                "tokens": int((maps.step_size[maps.step] == size).sum()),
                "entropy_nats": float(maps.entropy[maps.step_size[maps.step] == size].mean()),
                "nll_nats": float(maps.nll[maps.step_size[maps.step] == size].mean()),
            }
            for size in torch.unique(maps.step_size).tolist()
        },
    }
    if baseline is not None:
        for key, values, base in (
            ("entropy_increase", maps.entropy, baseline.entropy),
            ("nll_increase", maps.nll, baseline.nll),
        ):
            if values.shape != base.shape:
                raise ValueError(f"cannot compare grids {tuple(values.shape)} and {tuple(base.shape)}")
            mean = float((values - base).mean())
            summary[key] = {"nats": mean, "bits": mean * bits}
    return summary
