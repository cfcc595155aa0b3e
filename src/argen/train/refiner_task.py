"""The CTF refiner task: ground-truth coarse maps from the token cache -> fine ids, cross-entropy at every position."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from argen.config import RefinerConfig
from argen.ctf.sample import RefineOptions, refine
from argen.model.refiner import Refiner
from argen.train.preview import Preview, PreviewDecoder
from argen.train.trainer import Task


class RefinerTask(Task):
    """Teacher forcing with the true coarse labels (optionally noised), class dropout for refiner guidance."""

    def __init__(
        self,
        model: Refiner,
        grid: tuple[int, ...],
        class_dropout_prob: float,
        options: RefinerConfig,
        tokenizer: str | Path | None = None,
        shown: dict[str, torch.Tensor] | None = None,
    ):
        if not 0.0 <= options.coarse_noise <= 1.0:
            raise ValueError(f"refiner.coarse_noise must be in [0, 1], got {options.coarse_noise}")
        self.model, self.options = model, options
        self.class_dropout_prob = class_dropout_prob
        self.rope = model.rope(grid)  # the same for every batch: built once
        self.decode = PreviewDecoder(tokenizer) if tokenizer is not None else None
        self.shown = shown  # {"ids", "labels"} of a few cached images, refined in the previews

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(
        self, name: str, modules: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        fine = batch["ids"].flatten(1)  # (B, N) fine ids
        labels = batch["labels"]
        coarse = self.model.fine_to_coarse.to(fine.device)[fine]  # (B, N) true coarse labels
        if self.class_dropout_prob > 0:
            dropped = torch.rand(labels.shape, device=labels.device) < self.class_dropout_prob
            labels = torch.where(dropped, torch.full_like(labels, self.model.null_class), labels)
        inputs = coarse
        if self.options.coarse_noise > 0:
            # Sampled coarse maps contain AR mistakes; random labels here make the refiner robust to them.
            noised = torch.rand(coarse.shape, device=coarse.device) < self.options.coarse_noise
            random = torch.randint_like(coarse, self.model.config.vocab_size)
            inputs = torch.where(noised, random, coarse)
        logits = modules[name](inputs, labels, self.rope.to(fine.device))  # (B, N, V)
        if self.options.restrict_to_cluster:
            # The target's own (true) cluster: it always holds the target, even where the input label was noised.
            logits = self.model.restrict_to_cluster(logits, coarse)
        loss = F.cross_entropy(logits.flatten(0, 1), fine.flatten())
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == fine).float().mean()
        return loss, {"token_accuracy": float(accuracy)}

    def preview(self, model: nn.Module) -> Preview | None:
        """Decoded cache images (top row) over their refinements from the true coarse maps (bottom row)."""
        if self.decode is None or self.shown is None:
            return None
        device = next(model.parameters()).device
        fine = self.shown["ids"].to(device)
        options = RefineOptions(restrict_to_cluster=self.options.restrict_to_cluster)
        refined = refine(
            model,
            model.fine_to_coarse[fine],
            self.shown["labels"].to(device),
            options,
            torch.Generator(device).manual_seed(0),
        )
        return Preview(self.decode(torch.cat([fine, refined])), columns=len(fine))
