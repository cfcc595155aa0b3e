"""CTF sampling: coarse labels from the one decode loop (`argen.sample.generate`), then one refiner pass.

The coarse stage is an ordinary AR model over K coarse labels, so any Layout applies (raster, PAR's
region order); `generate` returns grid order, which is all the order-free refiner needs. The refiner
pass has its own temperature, top-k/top-p and guidance, and may restrict each position to the codes of
its cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from argen.layout import Layout, Step
from argen.model.refiner import Refiner
from argen.model.transformer import Transformer
from argen.precision import PRECISIONS, inference_precision, resolve
from argen.sample import Generated, SamplingOptions, generate, sample_from_logits


@dataclass
class RefineOptions:
    """Sampling settings of the refiner pass (the paper's stage 2: temperature tau_2 and top-k k_2)."""

    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1 = no nucleus filter
    greedy: bool = False
    guidance: float = 1.0  # 1 = no guidance; needs a refiner trained with class dropout
    restrict_to_cluster: bool = False  # sample only codes of each position's cluster
    dtype: str = "auto"  # see argen.precision

    def __post_init__(self) -> None:
        if self.temperature <= 0 and not self.greedy:
            raise ValueError(f"refine temperature must be > 0 (or use greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"refine top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"refine top_p must be in (0, 1], got {self.top_p}")
        if self.dtype not in PRECISIONS:
            raise ValueError(f"refine dtype must be one of {list(PRECISIONS)}, got {self.dtype!r}")


@torch.no_grad()
def refine(
    refiner: Refiner,
    coarse: torch.Tensor,
    labels: torch.Tensor,
    options: RefineOptions | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fine ids (B, *grid) for coarse labels (B, *grid) and classes (B,), in one refiner forward."""
    options = options or RefineOptions()
    vocab, classes = refiner.config.vocab_size, refiner.config.num_classes + int(refiner.has_null_class)
    if coarse.dim() < 3 or labels.shape != coarse.shape[:1] or coarse.is_floating_point():
        raise ValueError(
            f"coarse must be integer (B, *grid) and labels (B,), got {coarse.dtype} "
            f"{tuple(coarse.shape)} and {tuple(labels.shape)}"
        )
    if int(coarse.min()) < 0 or int(coarse.max()) >= vocab:
        raise ValueError(
            f"coarse labels must lie in [0, {vocab}) (the refiner's clusters), got values in "
            f"[{int(coarse.min())}, {int(coarse.max())}]"
        )
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise ValueError(f"labels must be in [0, {classes}), got values in [{int(labels.min())}, {int(labels.max())}]")
    guided = options.guidance != 1.0
    if guided and not refiner.has_null_class:
        raise ValueError(
            "refiner guidance needs a null class, but the refiner was trained with "
            "model.class_dropout_prob = 0; use a refine guidance of 1"
        )
    device = next(refiner.parameters()).device
    batch, grid = coarse.shape[0], tuple(coarse.shape[1:])
    flat = coarse.flatten(1).to(device)  # (B, N)
    labels = labels.to(device)
    condition = torch.cat([labels, torch.full_like(labels, refiner.null_class)]) if guided else labels
    was_training = refiner.training
    refiner.eval()
    try:
        with inference_precision(refiner, resolve(options.dtype, condition.numel(), device)):
            logits = refiner(torch.cat([flat, flat]) if guided else flat, condition, refiner.rope(grid))
    finally:
        refiner.train(was_training)
    if guided:
        conditional, unconditional = logits[:batch], logits[batch:]
        logits = unconditional + options.guidance * (conditional - unconditional)
    if options.restrict_to_cluster:
        logits = refiner.restrict_to_cluster(logits, flat)
    fine = sample_from_logits(logits, options.temperature, options.top_k, options.top_p, options.greedy, generator)
    return fine.view(batch, *grid)


def sample_ctf(
    coarse_model: Transformer,
    coarse_layout: Layout,
    refiner: Refiner,
    labels: torch.Tensor,
    coarse_options: SamplingOptions | None = None,
    refine_options: RefineOptions | None = None,
    generator: torch.Generator | None = None,
    forced: dict[str, torch.Tensor] | None = None,
    on_step: Callable[[Step, torch.Tensor], None] | None = None,
) -> Generated:
    """CTF: coarse labels through `generate` (any layout; `forced` and `on_step` as there), then fine ids from one
    refiner pass.

    Returns `Generated(visual=fine ids (B, *grid), prologue, coarse=coarse labels (B, *grid))`, grid order.
    """
    if coarse_layout.grid_vocab != refiner.config.vocab_size:
        raise ValueError(
            f"the coarse layout has {coarse_layout.grid_vocab} grid labels but the refiner reads "
            f"{refiner.config.vocab_size} clusters; pair models trained with the same table"
        )
    coarse = generate(
        coarse_model, coarse_layout, labels, options=coarse_options, generator=generator, forced=forced, on_step=on_step
    )
    fine = refine(refiner, coarse.visual, labels, refine_options, generator)
    return Generated(visual=fine, prologue=coarse.prologue, coarse=coarse.visual, forward_passes=coarse.forward_passes)
