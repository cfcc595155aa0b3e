"""Prologue stage 1: the tokenizer and a small unconditional AR prior, trained in alternating updates.

Each trainer step runs these updates on the same batch, in this order:

- "tokenizer": the usual tokenizer loss (`VQTask.tokenizer_objective`) plus `ar_weight` x the prior's
  cross-entropy. The prior is frozen for this update but differentiable: it runs on detached copies of
  its weights (`torch.func.functional_call`), so no gradient reaches its parameters, while its input
  embeddings at the prologue slots are the straight-through one-hot times its embedding table. The
  gradient therefore reaches the prologue codebook, the prologue head and the shared encoder; visual
  and separator inputs are plain lookups and carry none. The decoder gets no gradient from this term.
- "discriminator", when the tokenizer has one (`VQTask`).
- "prior": plain cross-entropy on the ids of the tokenizer update, detached.

Both prior passes read the Layout `[BOS][p_0 .. p_{P-1}][separator][visual tokens, raster]`. For a
`visual_dropout` fraction of the samples every visual input is replaced by the separator id, so those
samples must predict the whole image from the prologue alone; the same samples are dropped in both
updates. Logits are masked to the vocabulary of each target's segment (`Layout.target_vocab_mask`).
The cross-entropy is the mean over all predicted tokens (prologue, separator, visual), as in the paper.

`visual_tokenizer` starts the visual path from a trained tokenizer (the prologue head starts fresh). With
`freeze_visual` (default) that is the "Post" variant: the visual path stays frozen;
the tokenizer update is the prior's cross-entropy alone, so only the prologue head and the prior learn.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from argen.config import ConfigError, LayoutConfig, PrologueTrainConfig, TokenizerRunConfig, VQConfig
from argen.io import checkpoint as ckpt
from argen.io.load import tokenizer_config
from argen.layout import PROLOGUE, SEPARATOR, VISUAL, Layout
from argen.model.transformer import Transformer
from argen.teacher_forcing import TeacherForcing, cross_entropy
from argen.tokenizer.code_usage import usage_and_restarts
from argen.tokenizer.vit import ViTTokenizer
from argen.tokenizer.vq import VQModel
from argen.train.tokenizer_task import TOKENIZER, VQTask
from argen.train.trainer import Task

PRIOR = "prior"


def prior_layout(model: VQConfig) -> Layout:
    """The stage-1 prior's Layout: P prologue tokens, the separator, then the visual grid in raster order."""
    grid = (model.grid_size, model.grid_size)
    return Layout(
        LayoutConfig(grid=grid, prologue_length=model.prologue_tokens, prologue_vocab=model.prologue_codebook_size),
        model.codebook_size,
    )


def resolve_prior_vocab(config: TokenizerRunConfig) -> TokenizerRunConfig:
    """Set prologue.prior.vocab_size from the layout (visual + prologue + separator) when it is 0."""
    needed = prior_layout(config.model).vocab_size
    prior = config.prologue.prior
    if prior.vocab_size == 0:
        prior = dataclasses.replace(prior, vocab_size=needed)
    elif prior.vocab_size != needed:
        raise ConfigError(
            f"prologue.prior.vocab_size={prior.vocab_size} but the prior's layout needs {needed} "
            f"(visual {config.model.codebook_size} + prologue {config.model.prologue_codebook_size} "
            "+ separator); leave it at 0 to set it automatically"
        )
    return dataclasses.replace(config, prologue=dataclasses.replace(config.prologue, prior=prior))


# The prologue path's config fields and weights: the conv head's (prologue.*), the ViT's queries and Post encoder.
PROLOGUE_FIELDS, PROLOGUE_WEIGHTS = ("prologue_", "vit_prologue_"), ("prologue", "queries")


def load_visual_path(model: VQModel | ViTTokenizer, directory: str | Path, freeze: bool) -> None:
    """Load a trained tokenizer's visual path into `model` (strictly; its prologue path keeps its fresh
    weights); with `freeze` (the Post variant) only the prologue path stays trainable."""
    saved = tokenizer_config(directory).model
    visual_fields = [f.name for f in dataclasses.fields(VQConfig) if not f.name.startswith(PROLOGUE_FIELDS)]
    differing = [
        f"model.{name}: {getattr(saved, name)} in {directory}, {getattr(model.config, name)} here"
        for name in visual_fields
        if getattr(saved, name) != getattr(model.config, name)
    ]
    if differing:
        raise ConfigError(
            "prologue.visual_tokenizer has another visual configuration; use its settings: " + "; ".join(differing)
        )
    own_prologue = {key: value for key, value in model.state_dict().items() if key.startswith(PROLOGUE_WEIGHTS)}
    visual = {key: value for key, value in ckpt.load_weights(directory).items() if not key.startswith(PROLOGUE_WEIGHTS)}
    ckpt.load_state_into(model, {**visual, **own_prologue}, str(directory))
    if freeze:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith(PROLOGUE_WEIGHTS))


class PrologueTask(Task):
    """Joint (or Post) stage-1 training of a tokenizer with a Prologue head (see the module docstring)."""

    def __init__(
        self,
        model: VQModel,
        prior: Transformer,
        layout: Layout,
        config: PrologueTrainConfig,
        visual_task: VQTask | None,
    ):
        if model.prologue is None:
            raise ConfigError("prologue training needs a tokenizer with a prologue head (model.prologue_tokens > 0)")
        if PROLOGUE not in layout.segments or layout.prologue_length != model.config.prologue_tokens:
            raise ValueError(
                f"the prior's layout ({layout.describe()}) must have a prologue of "
                f"{model.config.prologue_tokens} tokens"
            )
        if prior.config.vocab_size != layout.vocab_size:
            raise ValueError(
                f"the prior's vocab_size ({prior.config.vocab_size}) differs from its layout's ({layout.vocab_size})"
            )
        self.model, self.prior, self.layout, self.config = model, prior, layout, config
        self.visual_task = visual_task  # None: Post, the visual path is frozen
        self.forcing = TeacherForcing(layout, prior.config)
        source, targets = layout.input_source, layout.targets_index
        prologue, visual = layout.segments[PROLOGUE], layout.segments[VISUAL]
        self.prologue_slots = ((source >= prologue.start) & (source < prologue.start + prologue.length)).nonzero()[:, 0]
        self.prologue_fed = source[self.prologue_slots] - prologue.start  # prologue token fed at each such slot
        self.visual_inputs = source >= visual.start  # (L,)
        self.separator_id = layout.segments[SEPARATOR].offset
        self.target_segment = {
            PROLOGUE: (targets >= prologue.start) & (targets < prologue.start + prologue.length),
            VISUAL: targets >= visual.start,
        }
        # Per micro-batch of this step: (visual ids, prologue ids, dropped) from the tokenizer update, for the prior's.
        self._pending: deque[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = deque()
        # Prologue latents of the latest micro-batch and the number of prologue ids recorded (for restarts).
        self._latents: torch.Tensor | None = None
        self._tokens_this_step = 0

    def modules(self) -> dict[str, nn.Module]:
        tokenizer_modules = self.visual_task.modules() if self.visual_task else {TOKENIZER: self.model}
        return {**tokenizer_modules, PRIOR: self.prior}

    def loss(
        self, name: str, modules: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if name == TOKENIZER:
            return self._tokenizer_loss(modules, batch["images"], step)
        if name == PRIOR:
            return self._prior_loss(modules[PRIOR])
        if self.visual_task is not None:
            return self.visual_task.loss(name, modules, batch, step)
        raise KeyError(f"unknown module {name!r}; this task trains {', '.join(self.modules())}")

    def _tokenizer_loss(
        self, modules: dict[str, nn.Module], images: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        reconstruction, quantizer = modules[TOKENIZER](images)
        prologue = quantizer.prologue
        dropped = torch.rand(images.shape[0], device=images.device) < self.config.visual_dropout  # (B,)
        self._pending.append((quantizer.ids, prologue.ids, dropped))
        self.model.prologue_quantizer.record_usage(prologue.ids)
        self._latents = prologue.latents
        self._tokens_this_step += prologue.ids.numel()
        ar_loss, logs = self.prior_cross_entropy(self.prior, quantizer.ids, prologue.ids, dropped, prologue.one_hot)
        logs.update(
            prologue_perplexity=float(prologue.perplexity),
            prologue_usage_batch=float(prologue.usage),
            prologue_entropy_loss=float(prologue.entropy_loss.detach()),
        )
        prologue_loss = self.config.ar_weight * ar_loss
        if self.config.entropy_weight:
            prologue_loss = prologue_loss + self.config.entropy_weight * prologue.entropy_loss
        if self.visual_task is None:
            return prologue_loss, logs
        total, visual_logs = self.visual_task.tokenizer_objective(modules, images, reconstruction, quantizer, step)
        return total + prologue_loss, {**visual_logs, **logs}

    def _prior_loss(self, prior: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        if not self._pending:
            raise RuntimeError(
                "the prior update reads the ids of this step's tokenizer update; update the "
                f"modules in the order of PrologueTask.modules() ({', '.join(self.modules())})"
            )
        visual_ids, prologue_ids, dropped = self._pending.popleft()
        loss, logs = self.prior_cross_entropy(prior, visual_ids, prologue_ids, dropped)
        return loss, {f"prior_{key}": value for key, value in logs.items()}

    def prior_cross_entropy(
        self,
        prior: nn.Module,
        visual_ids: torch.Tensor,
        prologue_ids: torch.Tensor,
        dropped: torch.Tensor,
        prologue_one_hot: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy of the prior over every predicted token, with per-segment logs.

        visual_ids (B, h, w), prologue_ids (B, P), dropped (B,) bool (visual inputs -> separator).
        With `prologue_one_hot` (B, P, K) the prior (the bare Transformer, not a DDP wrapper) runs frozen
        and its prologue inputs are `prologue_one_hot @ table` (straight-through); without it, it is an
        ordinary trainable forward.
        """
        device = visual_ids.device
        labels = torch.zeros(visual_ids.shape[0], dtype=torch.long, device=device)  # unconditional: one BOS
        tensors = self.layout.training_tensors(visual_ids, labels, prologue_ids)
        ids = torch.where(dropped[:, None] & self.visual_inputs.to(device)[None], self.separator_id, tensors["ids"])
        if prologue_one_hot is None:
            logits = self.forcing.logits(prior, ids, tensors["kinds"])
        else:
            with torch.no_grad():
                embeddings = prior.embed(ids, tensors["kinds"])  # (B, L, dim) plain lookups
            segment = self.layout.segments[PROLOGUE]
            table = prior.tok_embeddings.weight.detach()[segment.offset : segment.offset + segment.vocab]  # (K, dim)
            soft = prologue_one_hot[:, self.prologue_fed.to(device)] @ table.to(prologue_one_hot.dtype)
            embeddings = embeddings.index_copy(1, self.prologue_slots.to(device), soft.to(embeddings.dtype))
            # Detached weights: no gradient (and no DDP gradient hook) reaches the prior's parameters.
            frozen = {name: parameter.detach() for name, parameter in prior.named_parameters()}
            logits = self.forcing.logits(
                lambda *arguments: functional_call(prior, frozen, arguments, {"embeddings": embeddings}),
                ids,
                tensors["kinds"],
            )  # (B, L, V)
        loss, per_slot, accuracy = cross_entropy(logits, tensors["targets"])
        logs = {"ar_loss": float(loss.detach()), "ar_token_accuracy": accuracy}
        for name, slots in self.target_segment.items():
            logs[f"ar_{name}_loss"] = float(per_slot.detach()[:, slots.to(device)].mean())
        return loss, logs

    def after_step(self, modules: dict[str, nn.Module], step: int) -> dict[str, float]:
        if self._pending:
            raise RuntimeError(
                f"{len(self._pending)} tokenizer micro-batch(es) of step {step} were not used by a prior update"
            )
        usage, restarted = usage_and_restarts(
            self.model.prologue_quantizer,
            self._latents,
            self._tokens_this_step,
            self.config.restart_dead_codes_every,
            step,
        )
        logs = {"prologue_usage": usage}
        if restarted is not None:
            logs["restarted_prologue_codes"] = float(restarted)
        self._latents, self._tokens_this_step = None, 0
        return {**logs, **(self.visual_task.after_step(modules, step) if self.visual_task is not None else {})}
