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

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from argen.layout import VISUAL, Layout

CORRECTIONS = ("miller-madow", "none")
JOINT_BINS_PER_CHUNK = 2 ** 24  # bound on the joint-count table built at once (int64: 128 MB)


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
        raise ValueError(f"the fine -> coarse table must be a 1-D integer tensor of {vocab} entries (one per code), "
                         f"got {table.dtype} {tuple(table.shape)}")
    if int(table.min()) < 0:
        raise ValueError("the fine -> coarse table has negative entries")
    table = table.long()
    return table[ids.long()], int(table.max()) + 1


def load_coarse_table(path: str | Path) -> torch.Tensor:
    """A fine -> coarse table from .safetensors (one tensor, or key "fine_to_coarse"), .npy or .json (a list)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"coarse table {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if "fine_to_coarse" in tensors:
            return tensors["fine_to_coarse"]
        if len(tensors) != 1:
            raise ValueError(f"{path} holds {sorted(tensors)}; expected one tensor or a 'fine_to_coarse' key")
        return next(iter(tensors.values()))
    if path.suffix == ".npy":
        import numpy as np

        return torch.from_numpy(np.load(path, allow_pickle=False))
    if path.suffix == ".json":
        return torch.tensor(json.loads(path.read_text()), dtype=torch.long)
    raise ValueError(f"coarse table {path}: expected a .safetensors, .npy or .json file")


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
    chunk = max(1, JOINT_BINS_PER_CHUNK // alphabet ** 2)
    entropies = []
    for start in range(0, positions, chunk):
        block = tokens[:, start:start + chunk]  # (N, C)
        width = block.shape[1]
        offsets = torch.arange(width) * alphabet ** 2
        joint = reference[:, None] * alphabet + block + offsets  # (N, C) one bin per (column, x_r, x_j)
        counts = torch.bincount(joint.flatten(), minlength=width * alphabet ** 2).view(width, alphabet ** 2)
        entropies.append(entropy_from_counts(counts, correction))
    return torch.cat(entropies)


def _marginal_entropies(tokens: torch.Tensor, alphabet: int, correction: str) -> torch.Tensor:
    """H(X_j) for each column of tokens (N, P) -> (P,)."""
    positions = tokens.shape[1]
    binned = tokens + torch.arange(positions) * alphabet  # (N, P)
    counts = torch.bincount(binned.flatten(), minlength=positions * alphabet).view(positions, alphabet)
    return entropy_from_counts(counts, correction)


def dependency_maps(ids: torch.Tensor, reference: Sequence[int], alphabet: int, correction: str = "miller-madow",
                    seed: int = 0) -> DependencyMaps:
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
    return DependencyMaps(reference, marginal.view(grid).float(), conditional.view(grid).float(),
                          (marginal - conditional).view(grid).float(), float(independent[others].mean()))


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
def position_maps(model: nn.Module, layout: Layout, ids: torch.Tensor, labels: torch.Tensor,
                  prologue_ids: torch.Tensor | None = None, batch_size: int = 64) -> PositionMaps:
    """Teacher-force grids ids (N, *grid) with class labels (N,) under `layout`; per-position entropy and NLL.

    The model (in eval mode) sees exactly its training inputs (`layout.training_tensors`); the logits of each
    slot that predicts a visual token are restricted to the visual vocabulary, as when decoding.
    """
    if model.training:
        raise ValueError("put the model in eval mode first: dropout would perturb the measured entropies")
    if tuple(ids.shape[1:]) != layout.grid or labels.shape != ids.shape[:1] or len(ids) == 0:
        raise ValueError(f"expected ids (N, {', '.join(map(str, layout.grid))}) and labels (N,) with N > 0, "
                         f"got {tuple(ids.shape)} and {tuple(labels.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    config = model.config
    rope = layout.rope(config.dim // config.n_head, config.rope_base).to(device)
    mask = layout.mask.to(device)
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
        logits = model(tensors["ids"], tensors["kinds"], rope, mask)[:, slots]  # (B, N_visual, vocab)
        log_probs = F.log_softmax(logits[..., visual.offset:visual.offset + visual.vocab].float(), dim=-1)
        targets = tensors["targets"][:, slots] - visual.offset  # (B, N_visual)
        entropy_sum += -(log_probs.exp() * log_probs).sum(-1).sum(0).double().cpu()
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
        entropy=to_grid(entropy).float(), nll=to_grid(nll).float(), step=to_grid(step_of_token),
        step_size=torch.tensor([high - low for low, high in bounds]),
        step_entropy=torch.stack([entropy[low:high].mean() for low, high in bounds]).float(),
        step_nll=torch.stack([nll[low:high].mean() for low, high in bounds]).float(), images=len(ids))


def summarize(maps: PositionMaps, baseline: PositionMaps | None = None) -> dict[str, Any]:
    """Scalar summary: means (nats and bits per token), means by step size, and increases over `baseline`."""
    bits = 1 / math.log(2)
    summary: dict[str, Any] = {
        "entropy_nats": float(maps.entropy.mean()), "entropy_bits": float(maps.entropy.mean()) * bits,
        "nll_nats": float(maps.nll.mean()), "nll_bits": float(maps.nll.mean()) * bits,
        "visual_steps": len(maps.step_size),
        "by_step_size": {int(size): {"tokens": int((maps.step_size[maps.step] == size).sum()),
                                     "entropy_nats": float(maps.entropy[maps.step_size[maps.step] == size].mean()),
                                     "nll_nats": float(maps.nll[maps.step_size[maps.step] == size].mean())}
                         for size in torch.unique(maps.step_size).tolist()},
    }
    if baseline is not None:
        for key, values, base in (("entropy_increase", maps.entropy, baseline.entropy),
                                  ("nll_increase", maps.nll, baseline.nll)):
            if values.shape != base.shape:
                raise ValueError(f"cannot compare grids {tuple(values.shape)} and {tuple(base.shape)}")
            mean = float((values - base).mean())
            summary[key] = {"nats": mean, "bits": mean * bits}
    return summary


# ------------------------------------------------------------------------------------------------
# plotting (matplotlib's Agg canvas, no pyplot state)


def _flat_image(values: torch.Tensor) -> torch.Tensor:
    """A 2-D image of a (H, W) or (T, H, W) map, frames side by side."""
    return values if values.dim() == 2 else values.permute(1, 0, 2).reshape(values.shape[1], -1)


def _panel(figure: Figure, axes, values: torch.Tensor, title: str, colormap: str = "viridis",
           centred: bool = False, marker: Sequence[int] | None = None) -> None:
    image = _flat_image(values.detach().float().cpu())
    limit = float(image.nan_to_num().abs().max()) or 1.0
    shown = axes.imshow(image.numpy(), cmap=colormap, vmin=-limit if centred else None,
                        vmax=limit if centred else None, interpolation="nearest")
    if marker is not None:
        row, column = marker[-2], marker[-1] + (marker[0] * values.shape[-1] if values.dim() == 3 else 0)
        axes.plot([column], [row], marker="s", markersize=9, markerfacecolor="none", markeredgecolor="red",
                  markeredgewidth=2)
    axes.set_title(title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)


def plot_maps(panels: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One PNG with a heat-map panel per dict {values, title[, colormap, centred, marker]}."""
    figure = Figure(figsize=(3.4 * len(panels), 3.3), dpi=100)
    FigureCanvasAgg(figure)
    for number, panel in enumerate(panels):
        _panel(figure, figure.add_subplot(1, len(panels), number + 1), **panel)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def plot_distance_profiles(profiles: Sequence[tuple[str, list[float], list[float]]], floor: float,
                           path: str | Path) -> Path:
    """Mutual information against distance from the reference, one line per (label, distances, values)."""
    figure = Figure(figsize=(6.4, 3.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, distances, values in profiles:
        axes.plot(distances, values, marker="o", markersize=3, label=label)
    axes.axhline(floor, color="gray", linestyle="--", label="independent (bias floor)")
    axes.set_xlabel("distance from the reference (tokens)")
    axes.set_ylabel("I(X_r; X_j) (nats)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


# ------------------------------------------------------------------------------------------------
# the analysis written to a folder (`argen analyze entropy`)


def _listed(values: torch.Tensor) -> list:
    return torch.round(values.double(), decimals=5).tolist()


def _file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "model"


def _load_model(name: str, path: str | Path, device: str | torch.device, dataset, vocab: int):
    """The AR pipeline of a checkpoint, checked against the token cache it will be teacher-forced on."""
    import argen

    pipeline = argen.load(path, device=device)
    layout = pipeline.layout
    if layout.grid != dataset.grid or layout.visual_vocab != vocab:
        raise ValueError(f"model {name} ({path}) predicts {layout.visual_vocab} visual ids on a {layout.grid} grid "
                         f"but the cache {dataset.directory} holds {vocab}-code {dataset.grid} grids")
    classes = int(dataset.tensors["labels"].max()) + 1
    if classes > pipeline.config.model.num_classes:
        raise ValueError(f"the cache has {classes} classes but model {name} ({path}) knows "
                         f"{pipeline.config.model.num_classes}")
    if layout.prologue_length and "prologue_ids" not in dataset.tensors:
        raise ValueError(f"model {name} ({path}) needs prologue ids, which the cache {dataset.directory} lacks")
    return pipeline


def write_entropy_analysis(cache: str | Path, out_dir: str | Path, models: Sequence[tuple[str, str | Path]] = (),
                           references: Sequence[Sequence[int]] | None = None, limit: int = 0,
                           model_limit: int = 1000, coarse: str | Path | None = None, alphabet: int = 64,
                           correction: str = "miller-madow", batch_size: int = 64,
                           device: str | torch.device = "cpu") -> dict[str, Any]:
    """Dependency maps of a token cache and position maps of AR checkpoints: PNGs + entropy.json in out_dir.

    The first `limit` images of the cache (0 = all) feed the data-based maps, over the alphabet of the
    `coarse` fine -> coarse table, else of `quantile_table(alphabet)` (0 or >= the codebook: the full codebook).
    Each model (name, checkpoint directory) is teacher-forced on the first `model_limit` of those images;
    the first model is the baseline of the differences. Returns what entropy.json holds.
    """
    from argen.data.token_cache import TokenDataset
    from argen.io.checkpoint import save_json

    dataset = TokenDataset(cache)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = len(dataset) if limit <= 0 else min(limit, len(dataset))
    data = dataset.batch(torch.arange(count))
    vocab = int(dataset.manifest["tokenizer"]["codebook_size"])
    if coarse is not None:
        table, setting = load_coarse_table(coarse), {"kind": "coarse table", "table": str(coarse)}
    elif 0 < alphabet < vocab:
        table, setting = quantile_table(data["ids"], vocab, alphabet), {"kind": "frequency quantiles"}
    else:
        table, setting = torch.arange(vocab), {"kind": "full codebook"}
    reduced, size = reduce_alphabet(data["ids"], table, vocab)
    pipelines = [(name, path, _load_model(name, path, device, dataset, vocab)) for name, path in models]
    setting["size"] = size
    figures, reference_rows, reference_results, profiles = [], [], [], []
    for reference in references or default_references(dataset.grid):
        maps = dependency_maps(reduced, reference, size, correction)
        name = "dependency-" + "-".join(map(str, maps.reference)) + ".png"
        conditional, information = maps.conditional_entropy.clone(), maps.mutual_information.clone()
        conditional[maps.reference] = information[maps.reference] = math.nan  # trivial there (0 and H(X_r))
        plot_maps([{"values": conditional, "title": "H(X_j | X_r) (nats)", "marker": maps.reference},
                   {"values": information, "title": "I(X_r; X_j) (nats)", "colormap": "magma",
                    "marker": maps.reference}], out_dir / name,
                  title=f"reference {maps.reference}: {count} images, {size} symbols, {correction}")
        distances, values = distance_profile(maps.mutual_information, maps.reference)
        profiles.append((str(maps.reference), distances, values))
        figures.append({"title": f"Dependency on reference {maps.reference}", "file": name,
                        "caption": f"Bias floor (shuffled reference): {maps.independent_baseline:.4f} nats."})
        others = torch.ones_like(maps.mutual_information, dtype=torch.bool)
        others[maps.reference] = False
        reference_rows.append({"reference": str(maps.reference), "H(X_r)": float(maps.marginal_entropy[maps.reference]),
                               "I at distance 1": values[0],
                               "I mean": float(maps.mutual_information[others].mean()),
                               "bias floor": maps.independent_baseline})
        reference_results.append({"position": list(maps.reference), "figure": name,
                                  "conditional_entropy": _listed(maps.conditional_entropy),
                                  "mutual_information": _listed(maps.mutual_information),
                                  "mutual_information_by_distance": {"distance": distances, "mean": values},
                                  "independent_baseline": maps.independent_baseline})
    marginal = maps.marginal_entropy  # the same for every reference
    floor = sum(r["independent_baseline"] for r in reference_results) / len(reference_results)
    plot_distance_profiles(profiles, floor, out_dir / "dependency-distance.png")
    figures.append({"title": "Mutual information against distance", "file": "dependency-distance.png",
                    "caption": "PAR's premise: dependency falls with distance, so far-apart tokens can share a step."})

    model_results, model_rows, baseline = [], [], None
    model_count = min(model_limit, count) if model_limit > 0 else count
    for name, path, pipeline in pipelines:
        layout = pipeline.layout
        maps = position_maps(pipeline.model, layout, data["ids"][:model_count], data["labels"][:model_count],
                             data["prologue_ids"][:model_count] if "prologue_ids" in data else None, batch_size)
        summary = summarize(maps, baseline)
        panels = [{"values": maps.entropy, "title": "entropy (nats)"}, {"values": maps.nll, "title": "NLL (nats)"}]
        if baseline is not None:
            panels += [{"values": maps.entropy - baseline.entropy, "title": "entropy increase (nats)",
                        "colormap": "RdBu_r", "centred": True},
                       {"values": maps.nll - baseline.nll, "title": "NLL increase (nats)", "colormap": "RdBu_r",
                        "centred": True}]
        file = f"model-{len(model_results)}-{_file_name(name)}.png"
        description = f"{layout.config.order} order, {layout.parallel} per step, {layout.num_steps} steps"
        plot_maps(panels, out_dir / file, title=f"{name}: {description}, {maps.images} images")
        figures.append({"title": f"Model {name}", "file": file,
                        "caption": description + ("" if baseline is None else f"; differences against {models[0][0]}")})
        model_rows.append({"model": name, "steps": layout.num_steps, "entropy (bits)": summary["entropy_bits"],
                           "NLL (bits)": summary["nll_bits"],
                           "entropy increase (bits)": summary.get("entropy_increase", {}).get("bits", 0.0),
                           "NLL increase (bits)": summary.get("nll_increase", {}).get("bits", 0.0)})
        model_results.append({"name": name, "path": str(path), "layout": layout.describe(), "figure": file,
                              "images": maps.images, **summary, "entropy": _listed(maps.entropy),
                              "nll": _listed(maps.nll), "step_size": maps.step_size.tolist(),
                              "step_entropy": _listed(maps.step_entropy), "step_nll": _listed(maps.step_nll)})
        if baseline is None:
            baseline = maps

    tables = [{"title": "Dependency on the reference (nats)", "rows": reference_rows}]
    if model_rows:
        tables.append({"title": f"Teacher-forced entropy per token (against {models[0][0]})", "rows": model_rows})
    result = {
        "format": "argen-entropy-1", "cache": str(cache), "images": count, "grid": list(dataset.grid),
        "vocab": vocab, "alphabet": setting, "correction": correction,
        "marginal_entropy": _listed(marginal),
        "references": reference_results, "models": model_results,
        "report": {"title": "Token dependency and parallel decoding",
                   "text": "Data: H(X_j | X_r) and I(X_r; X_j) from the token cache (reference marked). "
                           "Models: teacher-forced predictive entropy and NLL per grid position, and their "
                           "increase over the first (sequential) model.",
                   "tables": tables, "figures": figures},
    }
    save_json(out_dir / "entropy.json", result)
    return result
