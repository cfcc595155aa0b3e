"""Inception-v3 in the form of the standard FID: pytorch-fid's port of the 2015-12-05 TensorFlow graph (same
state-dict keys), loaded only from a local file the user supplies; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from argen.eval.features import ClassifierExtractor, FeatureError, FeatureExtractor, resize
from argen.io import checkpoint as ckpt

INCEPTION_SIZE = 299
INCEPTION_CLASSES = 1008
INCEPTION_POOL_DIM = 2048
SPATIAL_CHANNELS = 7  # ADM's sFID keeps the first 7 channels of mixed_6/conv (17 x 17)


class ConvBlock(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU; attribute names match the weight files."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _average_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool leaves the zero padding out of the mean.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35 x 35 block (Mixed_5b/c/d): 64 + 64 + 96 + pool_features channels."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBlock(in_channels, 64, 1)
        self.branch5x5_1 = ConvBlock(in_channels, 48, 1)
        self.branch5x5_2 = ConvBlock(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBlock(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBlock(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBlock(96, 96, 3, padding=1)
        self.branch_pool = ConvBlock(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_average_pool(x)),
            ],
            dim=1,
        )


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 384 + 96 + in_channels channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBlock(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBlock(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBlock(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBlock(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            dim=1,
        )


class InceptionC(nn.Module):
    """17 x 17 block with factorised 7 x 7 convolutions (Mixed_6b..e): 768 channels."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = ConvBlock(in_channels, 192, 1)
        self.branch7x7_1 = ConvBlock(in_channels, c7, 1)
        self.branch7x7_2 = ConvBlock(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBlock(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBlock(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBlock(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBlock(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBlock(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBlock(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBlock(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = layer(double)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                double,
                self.branch_pool(_average_pool(x)),
            ],
            dim=1,
        )


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 320 + 192 + in_channels channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBlock(in_channels, 192, 1)
        self.branch3x3_2 = ConvBlock(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBlock(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBlock(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBlock(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBlock(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tower = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), tower, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1
        )


class InceptionE(nn.Module):
    """8 x 8 block with split 3 x 3 convolutions (Mixed_7b/c): 2048 channels.

    The FID graph pools with an average in Mixed_7b but a max in Mixed_7c (a quirk of the original
    TensorFlow graph that the reference weights depend on), hence `pool`.
    """

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        if pool not in ("average", "max"):
            raise FeatureError(f"pool must be 'average' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = ConvBlock(in_channels, 320, 1)
        self.branch3x3_1 = ConvBlock(in_channels, 384, 1)
        self.branch3x3_2a = ConvBlock(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBlock(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBlock(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBlock(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBlock(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBlock(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBlock(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _average_pool(x) if self.pool == "average" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            dim=1,
        )


class InceptionV3(nn.Module):
    """Inception-v3 as used by FID (pytorch-fid / ADM): 3-channel [-1, 1] input, any size (resized to 299)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBlock(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBlock(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBlock(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBlock(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBlock(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="average")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(INCEPTION_POOL_DIM, INCEPTION_CLASSES)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """pool (B, 2048), logits (B, 1008) and spatial (B, 7 * 17 * 17) of float [-1, 1] (B, 3, H, W)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise FeatureError(f"Inception-v3 expects (B, 3, H, W) images in [-1, 1], got {tuple(images.shape)}")
        x = resize(images, INCEPTION_SIZE, antialias=False)  # bilinear, as pytorch-fid
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        # ADM's sFID layer "mixed_6/conv" is the 1x1 branch of the block that follows (Mixed_6d).
        spatial = self.Mixed_6d.branch1x1(x)[:, :SPATIAL_CHANNELS].flatten(1)  # (B, 7 * 17 * 17)
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool = x.mean(dim=(2, 3))  # (B, 2048)
        return {"pool": pool, "logits": self.fc(pool), "spatial": spatial}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The 1008 logits."""
        return self.features(images)["logits"]


class InceptionExtractor(FeatureExtractor):
    """FID Inception-v3 features from a local weight file; the checksum is the file's sha256."""

    @classmethod
    def from_file(
        cls, path: str | Path, batch_size: int = 64, device: str | torch.device = "cpu"
    ) -> InceptionExtractor:
        state = dict(ckpt.read_state_dict(path, "Inception weight"))
        network = InceptionV3()
        # Weight files ported before BatchNorm counted its batches lack this buffer; it is unused in eval.
        for key, value in network.state_dict().items():
            if key.endswith("num_batches_tracked") and key.replace("num_batches_tracked", "running_mean") in state:
                state.setdefault(key, torch.zeros_like(value))
        ckpt.load_state_into(network, state, str(path))
        return cls(network, "inception-v3", ckpt.file_checksum(path), 3, batch_size, device)


def load_extractor(
    classifier: str | Path | None,
    inception: str | Path | None,
    required: bool = True,
    device: torch.device | str = "cpu",
) -> FeatureExtractor | None:
    """The feature extractor a user names: exactly one of the project classifier's checkpoint folder and a local
    Inception-v3 weight file (None when neither is given and it is not `required`)."""
    if not required and not (classifier or inception):
        return None
    if bool(classifier) == bool(inception):
        raise ValueError("give exactly one feature extractor: --classifier DIR or --inception WEIGHTS_FILE")
    if classifier:
        return ClassifierExtractor.from_checkpoint(classifier, device=torch.device(device))
    return InceptionExtractor.from_file(inception, device=torch.device(device))
