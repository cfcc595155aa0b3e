"""`argen analyze entropy`: the token-dependency analysis of argen.eval.entropy written to a folder, with its
figures (matplotlib's Agg canvas, no pyplot state) and the report block that `argen report --analysis` shows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from argen.ctf.table import load_table
from argen.data.token_cache import TokenDataset
from argen.eval.entropy import (
    default_references,
    dependency_maps,
    distance_profile,
    position_maps,
    quantile_table,
    reduce_alphabet,
    summarize,
)
from argen.io.checkpoint import save_json
from argen.pipeline import load as load_pipeline


def _flat_image(values: torch.Tensor) -> torch.Tensor:
    """A 2-D image of a (H, W) or (T, H, W) map, frames side by side."""
    return values if values.dim() == 2 else values.permute(1, 0, 2).reshape(values.shape[1], -1)


def _panel(
    figure: Figure,
    axes,
    values: torch.Tensor,
    title: str,
    colormap: str = "viridis",
    centred: bool = False,
    marker: Sequence[int] | None = None,
) -> None:
    image = _flat_image(values.detach().float().cpu())
    limit = float(image.nan_to_num().abs().max()) or 1.0
    shown = axes.imshow(
        image.numpy(),
        cmap=colormap,
        vmin=-limit if centred else None,
        vmax=limit if centred else None,
        interpolation="nearest",
    )
    if marker is not None:
        row, column = marker[-2], marker[-1] + (marker[0] * values.shape[-1] if values.dim() == 3 else 0)
        axes.plot(
            [column], [row], marker="s", markersize=9, markerfacecolor="none", markeredgecolor="red", markeredgewidth=2
        )
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


def plot_distance_profiles(
    profiles: Sequence[tuple[str, list[float], list[float]]], floor: float, path: str | Path
) -> Path:
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


def _listed(values: torch.Tensor) -> list:
    return torch.round(values.double(), decimals=5).tolist()


def _file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "model"


def _load_model(name: str, path: str | Path, device: str | torch.device, dataset, vocab: int):
    """The AR pipeline of a checkpoint, checked against the token cache it will be teacher-forced on."""
    pipeline = load_pipeline(path, device=device)
    layout = pipeline.layout
    if layout.grid != dataset.grid or layout.grid_vocab != vocab:
        raise ValueError(
            f"model {name} ({path}) predicts {layout.grid_vocab} visual ids on a {layout.grid} grid "
            f"but the cache {dataset.directory} holds {vocab}-code {dataset.grid} grids"
        )
    classes = dataset.num_classes
    if classes > pipeline.config.model.num_classes:
        raise ValueError(
            f"the cache has {classes} classes but model {name} ({path}) knows {pipeline.config.model.num_classes}"
        )
    if layout.prologue_length and not dataset.prologue_length:
        raise ValueError(f"model {name} ({path}) needs prologue ids, which the cache {dataset.directory} lacks")
    return pipeline


def write_entropy_analysis(
    cache: str | Path,
    out_dir: str | Path,
    models: Sequence[tuple[str, str | Path]] = (),
    references: Sequence[Sequence[int]] | None = None,
    limit: int = 0,
    model_limit: int = 1000,
    coarse: str | Path | None = None,
    alphabet: int = 64,
    correction: str = "miller-madow",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Dependency maps of a token cache and position maps of AR checkpoints: PNGs + entropy.json in out_dir.

    The first `limit` images of the cache (0 = all) feed the data-based maps, over the alphabet of the
    `coarse` fine -> coarse table, else of `quantile_table(alphabet)` (0 or >= the codebook: the full codebook).
    Each model (name, checkpoint directory) is teacher-forced on the first `model_limit` of those images;
    the first model is the baseline of the differences. Returns what entropy.json holds.
    """
    dataset = TokenDataset(cache)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = len(dataset) if limit <= 0 else min(limit, len(dataset))
    data = dataset.batch(torch.arange(count))
    vocab = int(dataset.manifest["tokenizer"]["codebook_size"])
    if coarse is not None:
        table, setting = load_table(coarse).fine_to_coarse, {"kind": "coarse table", "table": str(coarse)}
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
        plot_maps(
            [
                {"values": conditional, "title": "H(X_j | X_r) (nats)", "marker": maps.reference},
                {"values": information, "title": "I(X_r; X_j) (nats)", "colormap": "magma", "marker": maps.reference},
            ],
            out_dir / name,
            title=f"reference {maps.reference}: {count} images, {size} symbols, {correction}",
        )
        distances, values = distance_profile(maps.mutual_information, maps.reference)
        profiles.append((str(maps.reference), distances, values))
        figures.append(
            {
                "title": f"Dependency on reference {maps.reference}",
                "file": name,
                "caption": f"Bias floor (shuffled reference): {maps.independent_baseline:.4f} nats.",
            }
        )
        others = torch.ones_like(maps.mutual_information, dtype=torch.bool)
        others[maps.reference] = False
        reference_rows.append(
            {
                "reference": str(maps.reference),
                "H(X_r)": float(maps.marginal_entropy[maps.reference]),
                "I at distance 1": values[0],
                "I mean": float(maps.mutual_information[others].mean()),
                "bias floor": maps.independent_baseline,
            }
        )
        reference_results.append(
            {
                "position": list(maps.reference),
                "figure": name,
                "conditional_entropy": _listed(maps.conditional_entropy),
                "mutual_information": _listed(maps.mutual_information),
                "mutual_information_by_distance": {"distance": distances, "mean": values},
                "independent_baseline": maps.independent_baseline,
            }
        )
    marginal = maps.marginal_entropy  # the same for every reference
    floor = sum(r["independent_baseline"] for r in reference_results) / len(reference_results)
    plot_distance_profiles(profiles, floor, out_dir / "dependency-distance.png")
    figures.append(
        {
            "title": "Mutual information against distance",
            "file": "dependency-distance.png",
            "caption": "PAR's premise: dependency falls with distance, so far-apart tokens can share a step.",
        }
    )

    model_results, model_rows, baseline = [], [], None
    model_count = min(model_limit, count) if model_limit > 0 else count
    for name, path, pipeline in pipelines:
        layout = pipeline.layout
        maps = position_maps(
            pipeline.model,
            layout,
            data["ids"][:model_count],
            data["labels"][:model_count],
            data["prologue_ids"][:model_count] if "prologue_ids" in data else None,
            batch_size,
        )
        summary = summarize(maps, baseline)
        panels = [{"values": maps.entropy, "title": "entropy (nats)"}, {"values": maps.nll, "title": "NLL (nats)"}]
        if baseline is not None:
            panels += [
                {
                    "values": maps.entropy - baseline.entropy,
                    "title": "entropy increase (nats)",
                    "colormap": "RdBu_r",
                    "centred": True,
                },
                {
                    "values": maps.nll - baseline.nll,
                    "title": "NLL increase (nats)",
                    "colormap": "RdBu_r",
                    "centred": True,
                },
            ]
        file = f"model-{len(model_results)}-{_file_name(name)}.png"
        description = f"{layout.config.order} order, {layout.parallel} per step, {layout.num_steps} steps"
        plot_maps(panels, out_dir / file, title=f"{name}: {description}, {maps.images} images")
        figures.append(
            {
                "title": f"Model {name}",
                "file": file,
                "caption": description + ("" if baseline is None else f"; differences against {models[0][0]}"),
            }
        )
        model_rows.append(
            {
                "model": name,
                "steps": layout.num_steps,
                "entropy (bits)": summary["entropy_bits"],
                "NLL (bits)": summary["nll_bits"],
                "entropy increase (bits)": summary.get("entropy_increase", {}).get("bits", 0.0),
                "NLL increase (bits)": summary.get("nll_increase", {}).get("bits", 0.0),
            }
        )
        model_results.append(
            {
                "name": name,
                "path": str(path),
                "layout": layout.describe(),
                "figure": file,
                "images": maps.images,
                **summary,
                "entropy": _listed(maps.entropy),
                "nll": _listed(maps.nll),
                "step_size": maps.step_size.tolist(),
                "step_entropy": _listed(maps.step_entropy),
                "step_nll": _listed(maps.step_nll),
            }
        )
        if baseline is None:
            baseline = maps

    tables = [{"title": "Dependency on the reference (nats)", "rows": reference_rows}]
    if model_rows:
        tables.append({"title": f"Teacher-forced entropy per token (against {models[0][0]})", "rows": model_rows})
    result = {
        "format": "argen-entropy-1",
        "cache": str(cache),
        "images": count,
        "grid": list(dataset.grid),
        "vocab": vocab,
        "alphabet": setting,
        "correction": correction,
        "marginal_entropy": _listed(marginal),
        "references": reference_results,
        "models": model_results,
        "report": {
            "title": "Token dependency and parallel decoding",
            "text": "Data: H(X_j | X_r) and I(X_r; X_j) from the token cache (reference marked). "
            "Models: teacher-forced predictive entropy and NLL per grid position, and their "
            "increase over the first (sequential) model.",
            "tables": tables,
            "figures": figures,
        },
    }
    save_json(out_dir / "entropy.json", result)
    return result
