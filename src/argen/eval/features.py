"""Feature extractors for the metrics: one interface, two networks.

`FeatureExtractor.features(images)` turns images (uint8 NHWC, or float NCHW in [-1, 1]) into
numpy arrays: "pool" (N, d) for FID and precision/recall, "logits" (N, C) for the Inception Score and
class accuracy, and optionally "spatial" (N, s) for sFID. Each extractor has a `name` and the sha256
`checksum` of its weight file, which every result records.

- `Classifier`: a small CNN the project trains on its own dataset (the offline default; see
  argen.eval.classifier_task). Its penultimate layer (before the ReLU) is "pool"; `feature_maps`
  also serves the tokenizer's perceptual loss.
- `InceptionV3`: the network of the standard FID (pytorch-fid's port of the 2015-12-05 TensorFlow
  graph, same state-dict keys), loaded only from a local file the user supplies; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from argen.config import from_dict, to_dict
from argen.io import checkpoint as ckpt

CLASSIFIER_KIND = "classifier"
# ITU-R 601 luma weights, as argen.data.transforms uses for RGB -> grey.
LUMA = (0.299, 0.587, 0.114)

ImageArray = Union[np.ndarray, torch.Tensor]
ImageSource = Union[ImageArray, Iterable[ImageArray]]


class FeatureError(ValueError):
    """Images or weights an extractor cannot use; the message says what was expected."""


# ------------------------------------------------------------------------------------------------
# the common interface


def to_unit_images(images: ImageArray) -> torch.Tensor:
    """uint8 (N, H, W, C) or float (N, C, H, W) in [-1, 1] -> float32 (N, C, H, W) in [-1, 1]."""
    # Slices such as images[::-1] have negative strides, which torch cannot wrap without a copy.
    tensor = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if tensor.ndim != 4:
        raise FeatureError(f"images must have 4 dims (uint8 NHWC or float NCHW), got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        if tensor.shape[-1] not in (1, 3):
            raise FeatureError(f"uint8 images must be NHWC with 1 or 3 channels, got shape {tuple(tensor.shape)}")
        return tensor.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (N, C, H, W)
    if not tensor.is_floating_point():
        raise FeatureError(f"images must be uint8 NHWC or float NCHW in [-1, 1], got dtype {tensor.dtype}")
    if tensor.shape[1] not in (1, 3):
        raise FeatureError(f"float images must be NCHW with 1 or 3 channels, got shape {tuple(tensor.shape)}")
    if tensor.numel() and (tensor.min() < -1.01 or tensor.max() > 1.01):
        raise FeatureError(f"float images must lie in [-1, 1], got [{float(tensor.min()):.3g}, "
                           f"{float(tensor.max()):.3g}] (uint8 images must be NHWC uint8)")
    return tensor.float()


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, channels, H, W): grey is repeated, RGB becomes luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        weights = images.new_tensor(LUMA).view(1, 3, 1, 1)
        return (images * weights).sum(dim=1, keepdim=True)
    raise FeatureError(f"cannot turn {have}-channel images into {channels} channels")


def resize(images: torch.Tensor, size: int, antialias: bool) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) to (N, C, size, size); identity when already that size."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


class FeatureExtractor:
    """A frozen network in eval mode plus its name and weight checksum; batched, gradient-free.

    `network.features(float (B, channels, H, W) in [-1, 1])` must return a dict of (B, ...) tensors.
    """

    def __init__(self, network: nn.Module, name: str, checksum: str, channels: int,
                 batch_size: int = 256, device: str | torch.device = "cpu"):
        if batch_size < 1:
            raise FeatureError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.name, self.checksum, self.channels, self.batch_size = name, checksum, channels, batch_size

    def batches(self, source: ImageSource) -> Iterator[dict[str, np.ndarray]]:
        """Features of each batch of `source` (an image array, or an iterable of image arrays)."""
        chunks = [source] if isinstance(source, (np.ndarray, torch.Tensor)) else source
        for chunk in chunks:
            for start in range(0, len(chunk), self.batch_size):
                images = to_unit_images(chunk[start:start + self.batch_size]).to(self.device)
                # no_grad only around the forward: a context held across `yield` would leak into the caller.
                with torch.no_grad():
                    outputs = self.network.features(match_channels(images, self.channels))
                yield {key: value.float().cpu().numpy() for key, value in outputs.items()}

    def features(self, source: ImageSource) -> dict[str, np.ndarray]:
        """All features of `source`: "pool" (N, d), "logits" (N, C) and maybe "spatial" (N, s), float32."""
        collected: dict[str, list[np.ndarray]] = {}
        for outputs in self.batches(source):
            for key, value in outputs.items():
                collected.setdefault(key, []).append(value)
        if not collected:
            raise FeatureError("no images were given")
        return {key: np.concatenate(values) for key, values in collected.items()}

    def describe(self) -> dict[str, str]:
        return {"extractor": self.name, "checksum": self.checksum}


# ------------------------------------------------------------------------------------------------
# the project classifier


@dataclass
class ClassifierConfig:
    """A small CNN: per width one conv3x3-BatchNorm-ReLU-maxpool stage, then fc(feature_dim), ReLU, logits."""

    image_size: int = 32  # inputs of other sizes are resized to this
    in_channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128  # the "pool" features
    num_classes: int = 10
    dropout: float = 0.3


class Classifier(nn.Module):
    """Image classifier whose penultimate layer gives the metric features; input float [-1, 1] NCHW."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if not config.widths or config.image_size < 2 ** len(config.widths):
            raise FeatureError(f"classifier widths {config.widths} need images of at least "
                               f"{2 ** len(config.widths)} pixels, got image_size={config.image_size}")
        self.config = config
        stages, channels, size = [], config.in_channels, config.image_size
        for width in config.widths:
            stages.append(nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                        nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            channels, size = width, size // 2
        self.stages = nn.ModuleList(stages)
        # "pool" features are taken before the ReLU: units the ReLU leaves dead would make their covariance
        # singular (about a third of them on Fashion-MNIST) and clip away what separates real from fake.
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, config.feature_dim))
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(config.dropout),
                                  nn.Linear(config.feature_dim, config.num_classes))

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, (B, width, H / 2^i, W / 2^i); differentiable (perceptual loss)."""
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise FeatureError(f"expected float images (B, {self.config.in_channels}, H, W), "
                               f"got {tuple(images.shape)}")
        x = resize(images, self.config.image_size, antialias=images.shape[-1] > self.config.image_size)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """"pool" (B, feature_dim) and "logits" (B, num_classes)."""
        pool = self.embedding(self.feature_maps(images)[-1])  # (B, feature_dim)
        return {"pool": pool, "logits": self.head(pool)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.features(images)["logits"]


class ClassifierFeatureMaps(nn.Module):
    """Adapter for argen.tokenizer.losses.PerceptualLoss, which calls `network(images)` for a list of maps."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.classifier.feature_maps(images)


def save_classifier(directory: str | Path, model: Classifier, extra: dict[str, Any] | None = None) -> Path:
    """Write a classifier checkpoint directory (kind "classifier", config {"model": ...})."""
    return ckpt.save_checkpoint(directory, CLASSIFIER_KIND, {"model": to_dict(model.config)}, model.state_dict(),
                                extra=extra)


def load_classifier(directory: str | Path) -> Classifier:
    """A classifier (eval mode) from a checkpoint written by `save_classifier` or the trainer."""
    meta = ckpt.read_meta(directory, CLASSIFIER_KIND)
    if not isinstance(meta["config"].get("model"), dict):
        raise ckpt.CheckpointError(f"{directory}/config.json has no 'model' section for the classifier")
    model = Classifier(from_dict(ClassifierConfig, meta["config"]["model"], "model"))
    ckpt.load_state_into(model, ckpt.load_weights(directory), str(directory))
    return model.eval()


class ClassifierExtractor(FeatureExtractor):
    """Features of the project classifier, named after the dataset it was trained on."""

    @classmethod
    def from_checkpoint(cls, directory: str | Path, batch_size: int = 512,
                        device: str | torch.device = "cpu") -> ClassifierExtractor:
        model = load_classifier(directory)
        dataset = ckpt.read_meta(directory)["config"].get("data", {}).get("name")
        return cls(model, f"{dataset}-cnn" if dataset else "cnn", ckpt.checkpoint_checksum(directory),
                   model.config.in_channels, batch_size, device)


# ------------------------------------------------------------------------------------------------
# Inception-v3 in the FID form (TensorFlow 2015-12-05 weights as ported by pytorch-fid)

INCEPTION_SIZE = 299
INCEPTION_CLASSES = 1008
INCEPTION_POOL_DIM = 2048
SPATIAL_CHANNELS = 7  # ADM's sFID keeps the first 7 channels of mixed_6/conv (17 x 17)


class ConvBlock(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU; attribute names match the weight files."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0):
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
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_average_pool(x))], dim=1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 384 + 96 + in_channels channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBlock(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBlock(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBlock(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBlock(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


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
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), double,
                          self.branch_pool(_average_pool(x))], dim=1)


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
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), tower,
                          F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


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
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
                          self.branch_pool(pooled)], dim=1)


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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or of a torch file holding a plain state dict (never unpickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"weight file {path} does not exist; Inception weights are never downloaded, "
                           "pass the path of a local copy (e.g. pytorch-fid's pt_inception-2015-12-05-*.pth)")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the weights-only unpickler refuses anything but tensors and containers
        raise FeatureError(f"{path} is neither safetensors nor a plain torch state dict: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FeatureError(f"{path} must hold a flat mapping of parameter names to tensors")
    return dict(state)


class InceptionExtractor(FeatureExtractor):
    """FID Inception-v3 features from a local weight file; the checksum is the file's sha256."""

    @classmethod
    def from_file(cls, path: str | Path, batch_size: int = 64,
                  device: str | torch.device = "cpu") -> InceptionExtractor:
        state = read_state_dict(path)
        network = InceptionV3()
        # Weight files ported before BatchNorm counted its batches lack this buffer; it is unused in eval.
        for key, value in network.state_dict().items():
            if key.endswith("num_batches_tracked") and key.replace("num_batches_tracked", "running_mean") in state:
                state.setdefault(key, torch.zeros_like(value))
        ckpt.load_state_into(network, state, str(path))
        return cls(network, "inception-v3", ckpt.file_checksum(path), 3, batch_size, device)
