"""The AR training task: a token-cache batch -> the Layout's training tensors -> cross-entropy."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from argen.ctf.table import CoarseTable
from argen.layout import Layout
from argen.sample import generate
from argen.teacher_forcing import TeacherForcing, cross_entropy
from argen.train.preview import Preview, PreviewDecoder
from argen.train.trainer import Task


class ARTask(Task):
    """Next-group prediction under any Layout (raster, PAR, prologue), with class-label dropout for guidance."""

    def __init__(
        self,
        model: nn.Module,
        layout: Layout,
        num_classes: int,
        class_dropout_prob: float,
        tokenizer: str | Path | None = None,
        coarse: CoarseTable | None = None,
    ):
        self.model, self.layout = model, layout
        # CTF's coarse AR: the cache's fine ids become their cluster labels (the refiner reads the same cache)
        self.fine_to_coarse = None if coarse is None else coarse.fine_to_coarse
        self.decode = PreviewDecoder(tokenizer) if tokenizer is not None else None
        self.num_classes, self.class_dropout_prob = num_classes, class_dropout_prob
        self.tokens_per_sample = layout.sequence_length  # for the trainer's tokens/s
        self.forcing = TeacherForcing(layout, model.config)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(
        self, name: str, modules: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        labels = batch["labels"]
        if self.class_dropout_prob > 0:
            # The null class (index num_classes) teaches the unconditional half of guidance.
            dropped = torch.rand(labels.shape, device=labels.device) < self.class_dropout_prob
            labels = torch.where(dropped, torch.full_like(labels, self.num_classes), labels)
        # A cache's prologue ids are used only by a layout with a prologue segment.
        prologue_ids = batch["prologue_ids"] if self.layout.prologue_length else None
        ids = batch["ids"]
        if self.fine_to_coarse is not None:
            self.fine_to_coarse = self.fine_to_coarse.to(ids.device)
            ids = self.fine_to_coarse[ids]
        tensors = self.layout.training_tensors(ids, labels, prologue_ids)
        logits = self.forcing.logits(modules[name], tensors["ids"], tensors["kinds"])  # (B, L, V)
        loss, _, accuracy = cross_entropy(logits, tensors["targets"])
        return loss, {"token_accuracy": accuracy}

    def preview(self, model: nn.Module) -> Preview | None:
        """8 samples of each of the first 10 classes, a row per class (videos: a row per video)."""
        if self.decode is None:
            return None
        device = next(model.parameters()).device
        labels = torch.arange(min(self.num_classes, 10), device=device).repeat_interleave(8)
        generator = torch.Generator(device).manual_seed(0)
        return Preview(self.decode(generate(model, self.layout, labels, generator=generator).visual), columns=8)
