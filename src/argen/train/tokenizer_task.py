"""The tokenizer training task for the one trainer: VQ losses, optional PatchGAN, dead-code restarts.

Each step updates "tokenizer" (reconstruction + codebook + commitment [+ entropy] [+ perceptual]
[+ adversarial]) and then, when `disc_weight > 0`, "discriminator" (hinge loss on real images and
fresh reconstructions). The codebook usage record lives in the model's `quantize.codebook_used`
buffer, so it is saved with every checkpoint and resuming restarts the same codes.
"""

from __future__ import annotations

import torch
from torch import nn

from argen.config import ConfigError, VQLossConfig
from argen.tokenizer.causal_video import CausalVideoVQModel
from argen.tokenizer.code_usage import QuantizerOutput, usage_and_restarts
from argen.tokenizer.losses import (
    PatchDiscriminator,
    hinge_discriminator_loss,
    hinge_generator_loss,
    reconstruction_loss,
)
from argen.tokenizer.lpips import perceptual_loss
from argen.tokenizer.vq import VQModel
from argen.train.trainer import Task

TOKENIZER = "tokenizer"
DISCRIMINATOR = "discriminator"


def psnr_db(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """Batch PSNR on the [-1, 1] scale (peak-to-peak 2), from the mean squared error of the clamped output."""
    error = (reconstruction.detach().float().clamp(-1, 1) - target.float()).pow(2).mean()
    return float(10 * torch.log10(4.0 / error.clamp_min(1e-10)))


def _frames(images: torch.Tensor) -> torch.Tensor:
    """Videos (B, T, C, H, W) as their frames (B*T, C, H, W): the perceptual network and the discriminator judge
    images."""
    return images.flatten(0, 1) if images.ndim == 5 else images


def _value(tensor: torch.Tensor) -> float:
    return float(tensor.detach())


class VQTask(Task):
    """Train a VQModel (or a causal 3D video tokenizer, on clips) with LlamaGen's losses; `perceptual` (a frozen
    distance of two image batches, (B,) out: LPIPS, or a classifier's feature distance; io.load.load_perceptual
    builds it from the config) is the perceptual term, required when `loss.perceptual_weight > 0`."""

    def __init__(self, model: VQModel | CausalVideoVQModel, loss: VQLossConfig, perceptual: nn.Module | None = None):
        if loss.perceptual_weight > 0 and perceptual is None:
            raise ConfigError(
                "loss.perceptual_weight > 0 needs the perceptual distance (io.load.load_perceptual "
                "builds it from loss.perceptual_network)"
            )
        self.model, self.config = model, loss
        self.perceptual = perceptual if loss.perceptual_weight > 0 else None
        self.discriminator = None
        if loss.disc_weight > 0:  # its input size and the loss settings: checked by TokenizerRunConfig
            self.discriminator = PatchDiscriminator(model.config.in_channels, loss.disc_channels, loss.disc_layers)
        # Per step: encoder outputs of the latest micro-batch and the number of ids recorded (for restarts).
        self._latents: torch.Tensor | None = None
        self._tokens_this_step = 0

    def modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {TOKENIZER: self.model}
        if self.discriminator is not None:
            modules[DISCRIMINATOR] = self.discriminator
        return modules

    def _adversarial(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.disc_start

    def loss(
        self, name: str, modules: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        images = batch["images"]
        if name == TOKENIZER:
            return self._tokenizer_loss(modules, images, step)
        if name == DISCRIMINATOR:
            return self._discriminator_loss(modules, images, step)
        raise KeyError(f"unknown module {name!r}; this task trains {', '.join(self.modules())}")

    def _tokenizer_loss(
        self, modules: dict[str, nn.Module], images: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        reconstruction, quantizer = modules[TOKENIZER](images)
        return self.tokenizer_objective(modules, images, reconstruction, quantizer, step)

    def tokenizer_objective(
        self,
        modules: dict[str, nn.Module],
        images: torch.Tensor,
        reconstruction: torch.Tensor,
        quantizer: QuantizerOutput,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The tokenizer update's loss from one forward pass (shared with the Prologue task, which adds to it)."""
        config = self.config
        reconstruction_term = reconstruction_loss(reconstruction, images, config.reconstruction)
        total = (
            config.reconstruction_weight * reconstruction_term
            + quantizer.codebook_loss
            + quantizer.commit_loss
            + quantizer.entropy_loss
        )
        logs = {
            "reconstruction_loss": _value(reconstruction_term),
            "codebook_loss": _value(quantizer.codebook_loss),
            "commit_loss": _value(quantizer.commit_loss),
            "psnr_db": psnr_db(reconstruction, images),
            "perplexity": float(quantizer.perplexity),
            "codebook_usage_batch": float(quantizer.usage),
        }
        if self.model.config.entropy_weight > 0:
            logs["entropy_loss"] = _value(quantizer.entropy_loss)
        if self.perceptual is not None:
            perceptual = perceptual_loss(self.perceptual.to(images.device), _frames(reconstruction), _frames(images))
            total = total + config.perceptual_weight * perceptual
            logs["perceptual_loss"] = _value(perceptual)
        if self._adversarial(step):
            adversarial = hinge_generator_loss(modules[DISCRIMINATOR](_frames(reconstruction)))
            total = total + config.disc_weight * adversarial
            logs["generator_adversarial_loss"] = _value(adversarial)
        self.model.quantize.record_usage(quantizer.ids)
        self._latents = quantizer.latents
        self._tokens_this_step += quantizer.ids.numel()
        return total, logs

    def _discriminator_loss(
        self, modules: dict[str, nn.Module], images: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        discriminator = modules[DISCRIMINATOR]
        if not self._adversarial(step):
            # Before disc_start: a zero loss still tied to the parameters, so the optimizer step is a no-op.
            return sum(p.sum() for p in discriminator.parameters()) * 0.0, {}
        with torch.no_grad():
            reconstruction, _ = modules[TOKENIZER](images)  # the tokenizer as just updated
        real_logits, fake_logits = discriminator(_frames(images)), discriminator(_frames(reconstruction))
        loss = hinge_discriminator_loss(real_logits, fake_logits)
        return self.config.disc_weight * loss, {
            "discriminator_hinge": _value(loss),
            "logits_real": _value(real_logits.mean()),
            "logits_fake": _value(fake_logits.mean()),
        }

    def after_step(self, modules: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Codebook usage over the recent record; every `restart_dead_codes_every` steps, restart dead codes."""
        usage, restarted = usage_and_restarts(
            self.model.quantize, self._latents, self._tokens_this_step, self.config.restart_dead_codes_every, step
        )
        logs = {"codebook_usage": usage}
        if restarted is not None:
            logs["restarted_codes"] = float(restarted)
        self._latents, self._tokens_this_step = None, 0
        return logs
