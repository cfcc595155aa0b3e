"""The AR training task: a token-cache batch -> the Layout's training tensors -> cross-entropy."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from argen.ctf.table import CoarseTable
from argen.data.transforms import to_uint8
from argen.io.images import save_grid
from argen.io.load import load_tokenizer
from argen.io.video import save_gif, save_strip
from argen.layout import Layout
from argen.sample import generate
from argen.teacher_forcing import TeacherForcing, cross_entropy
from argen.train.trainer import Task


class ARTask(Task):
    """Next-group prediction under any Layout (raster, PAR, prologue), with class-label dropout for guidance."""

    def __init__(self, model: nn.Module, layout: Layout, num_classes: int, class_dropout_prob: float,
                 tokenizer: str | Path | None = None, coarse: CoarseTable | None = None):
        self.model, self.layout = model, layout
        # CTF's coarse AR: the cache's fine ids become their cluster labels (the refiner reads the same cache)
        self.fine_to_coarse = None if coarse is None else coarse.fine_to_coarse
        self.tokenizer = tokenizer  # checkpoint directory, for sample grids during training
        self.num_classes, self.class_dropout_prob = num_classes, class_dropout_prob
        self.tokens_per_sample = layout.sequence_length  # for the trainer's tokens/s
        self.forcing = TeacherForcing(layout, model.config.dim // model.config.n_head, model.config.rope_base)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(self, name: str, modules: dict[str, nn.Module], batch: dict[str, torch.Tensor],
             step: int) -> tuple[torch.Tensor, dict[str, float]]:
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

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> None:
        """A grid with one row per class (8 samples each) at out_dir/samples/step-N.png; videos: one row per
        video (its frames left to right) and an animated GIF beside."""
        if self.tokenizer is None:
            return

        tokenizer, _ = load_tokenizer(self.tokenizer, next(model.parameters()).device)
        labels = torch.arange(min(self.num_classes, 10)).repeat_interleave(8)
        generator = torch.Generator(labels.device).manual_seed(0)
        ids = generate(model, self.layout, labels.to(next(model.parameters()).device), generator=generator).visual
        with torch.no_grad():
            images = to_uint8(tokenizer.decode(ids)).cpu()
        path = out_dir / "samples" / f"step-{step:07d}.png"
        if images.ndim == 5:  # (B, T, C, H, W)
            save_strip(images, path, scale=2)
            save_gif(images, path.with_suffix(".gif"), columns=8, scale=2)
        else:
            save_grid(images, path, columns=8, scale=2)
