"""Tokenizer training losses: reconstruction and the PatchGAN hinge discriminator (the perceptual distance, LPIPS or
a classifier's features, is argen.tokenizer.lpips).

The discriminator is LlamaGen's NLayerDiscriminator (a Pix2Pix PatchGAN, keys `main.*`); with its
defaults (64 channels, 3 layers, 3 input channels) it has 2,765,633 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from argen.config import RECONSTRUCTION_KINDS


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean absolute ("l1") or squared ("l2") error."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ")
    if kind == "l1":
        return (reconstruction - target).abs().mean()
    if kind == "l2":
        return (reconstruction - target).pow(2).mean()
    raise ValueError(f"reconstruction loss must be one of {RECONSTRUCTION_KINDS}, got {kind!r}")


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs (stride 2, then 1), BatchNorm, LeakyReLU(0.2); one logit per overlapping patch.

    `layers` stride-2 stages (the first without norm), then a stride-1 stage and the logit conv; widths
    channels * min(2^n, 8). For 256x256 inputs and the defaults the logits are (B, 1, 30, 30).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        if layers < 1 or channels < 1 or in_channels < 1:
            raise ValueError(
                f"discriminator needs layers >= 1, channels >= 1 and in_channels >= 1, got "
                f"layers={layers}, channels={channels}, in_channels={in_channels}"
            )
        stages: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < layers else 1  # the last stage keeps the resolution
            # No conv bias: BatchNorm's shift replaces it.
            stages += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        stages.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*stages)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> patch logits (B, 1, H', W')."""
        return self.main(images)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean(relu(1 - D(real))) + mean(relu(1 + D(fake))))."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-mean(D(fake)): the generator raises the discriminator's score of its reconstructions."""
    return -fake_logits.mean()
