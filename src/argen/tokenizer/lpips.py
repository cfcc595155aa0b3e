"""Perceptual distances between image batches: LPIPS with VGG16 (the term of LlamaGen's tokenizer loss), and the same
distance over any frozen feature network (e.g. the project's classifier, when no VGG16 file is at hand).

LPIPS (Zhang et al., 2018; `lpips` v0.1, net="vgg"): images in [-1, 1] are shifted and scaled per channel
(shift -0.030, -0.088, -0.188; scale 0.458, 0.448, 0.450), run through VGG16's convolutions, and read at five taps
(relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: 64, 128, 256, 512, 512 channels). Each tap's features are unit-
normalised over channels (eps 1e-10), the two images' features subtracted and squared, weighted per channel by a
learned 1x1 convolution (lin0 ... lin4, non-negative weights, no bias), averaged over positions and summed over the
taps. Grey images are repeated to three channels.

Weights come only from files the user gives, read safely (safetensors, or `torch.load(weights_only=True)`):
- VGG16 in torchvision's state-dict layout (`features.0.weight` ... `features.28.bias`; its `classifier.*` keys
  are ignored), e.g. torchvision's `vgg16-397923af.pth`;
- the linear layers in the layout of LlamaGen's (and `lpips`') `vgg.pth`: `lin0.model.1.weight` (1, 64, 1, 1) ...
  `lin4.model.1.weight` (1, 512, 1, 1).
Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from argen.io.checkpoint import check_finite, read_state_dict, take_tensors

# VGG16's convolutions (in, out) with "M" for a 2x2 max pool, as torchvision numbers its `features` modules (a conv
# and its ReLU take two indices, a pool one).
VGG16_LAYERS = (
    (3, 64),
    (64, 64),
    "M",
    (64, 128),
    (128, 128),
    "M",
    (128, 256),
    (256, 256),
    (256, 256),
    "M",
    (256, 512),
    (512, 512),
    (512, 512),
    "M",
    (512, 512),
    (512, 512),
    (512, 512),
)
TAPS = (3, 8, 15, 22, 29)  # `features` indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class VGG16Taps(nn.Module):
    """VGG16's convolutional trunk up to relu5_3, in torchvision's module numbering; returns the five LPIPS taps."""

    def __init__(self):
        super().__init__()
        modules: list[nn.Module] = []
        for layer in VGG16_LAYERS:
            if layer == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(*layer, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*modules)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, module in enumerate(self.features):
            images = module(images)
            if index in TAPS:
                taps.append(images)
        return taps


class _Linear(nn.Module):
    """One tap's learned channel weights, laid out as `lpips`' NetLinLayer (`model.1.weight`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)


def tap_distance(
    first: Sequence[torch.Tensor], second: Sequence[torch.Tensor], linears: Sequence[nn.Module] | None = None
) -> torch.Tensor:
    """(B,) LPIPS distance of two lists of feature maps (B, C, ...): unit-normalised over channels, squared
    difference, weighted per channel by `linears` (summed over channels without them), mean over positions, summed
    over the taps."""
    total = None
    for index, (a, b) in enumerate(zip(first, second, strict=True)):
        difference = (_unit(a.float()) - _unit(b.float())).pow(2)
        weighted = linears[index](difference) if linears is not None else difference.sum(1, keepdim=True)
        distance = weighted.flatten(1).mean(1)
        total = distance if total is None else total + distance
    return total


def _unit(features: torch.Tensor) -> torch.Tensor:
    # lpips' normalize_tensor: x / (sqrt(sum x^2) + eps), not F.normalize's max(norm, eps)
    return features / (features.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


class LPIPS(nn.Module):
    """LPIPS-VGG16: `forward(a, b)` gives the (B,) distances of image batches in [-1, 1] (B, 1 or 3, H, W)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.net = VGG16Taps()
        for index, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{index}", _Linear(channels))

    @property
    def linears(self) -> list[nn.Module]:
        return [getattr(self, f"lin{index}") for index in range(len(TAP_CHANNELS))]

    def taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.net((images - self.shift) / self.scale)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return tap_distance(self.taps(first), self.taps(second), self.linears)


def load_lpips(vgg: str | Path, linear: str | Path) -> LPIPS:
    """LPIPS-VGG16 (eval mode, frozen) from torchvision's VGG16 weights and the `lin*` weights of `vgg.pth`."""
    model = LPIPS()
    own = model.state_dict()
    trunk = {key.removeprefix("net."): value for key, value in own.items() if key.startswith("net.")}
    state = {
        f"net.{key}": value
        for key, value in take_tensors(
            read_state_dict(vgg, "LPIPS weight"), trunk, vgg, "torchvision's VGG16 state dict"
        ).items()
    }
    linears = {key: value for key, value in own.items() if key.startswith("lin")}
    state.update(
        take_tensors(read_state_dict(linear, "LPIPS weight"), linears, linear, "LPIPS' linear layers (vgg.pth)")
    )
    check_finite(state, f"{vgg} and {linear}")
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


class FeatureDistance(nn.Module):
    """The LPIPS distance without learned weights over any frozen network's feature maps (images -> list of
    (B, C, ...) tensors), e.g. the project's classifier where no VGG16 file is at hand."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureDistance:
        super().train(mode)
        self.network.eval()  # never training behaviour (dropout, BatchNorm statistics)
        return self

    def _features(self, images: torch.Tensor) -> Sequence[torch.Tensor]:
        features = self.network(images)
        if (
            isinstance(features, torch.Tensor)
            or not isinstance(features, Sequence)
            or not features
            or not all(isinstance(f, torch.Tensor) and f.ndim >= 2 for f in features)
        ):
            raise TypeError(
                "the perceptual network must return a non-empty list of feature tensors (B, C, ...), "
                f"got {type(features).__name__}"
            )
        return features

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return tap_distance(self._features(first), self._features(second))


def perceptual_loss(distance: nn.Module, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean distance of a batch; gradients flow into `reconstruction` only (the target's features are
    constants)."""
    return distance(reconstruction, target.detach()).mean()
