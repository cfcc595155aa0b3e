"""Feature extractors for the metrics: one interface, two networks (the project classifier here,
Inception-v3 in argen.eval.inception).

`FeatureExtractor.features(images)` turns images (uint8 NHWC, or float NCHW in [-1, 1]) into
numpy arrays: "pool" (N, d) for FID and precision/recall, "logits" (N, C) for the Inception Score and
class accuracy, and optionally "spatial" (N, s) for sFID. Each extractor has a `name` and the sha256
`checksum` of its weight file, which every result records.

- `Classifier`: a small CNN the project trains on its own dataset (the offline default; see
  argen.train.classifier_task). Its penultimate layer (before the ReLU) is "pool"; `feature_maps`
  also serves the tokenizer's perceptual loss.
- `InceptionV3` (argen.eval.inception): the network of the standard FID, from a local weight file only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from argen.config import ClassifierConfig, DataConfig, from_dict, to_dict
from argen.io import checkpoint as ckpt

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
        raise FeatureError(
            f"float images must lie in [-1, 1], got [{float(tensor.min()):.3g}, "
            f"{float(tensor.max()):.3g}] (uint8 images must be NHWC uint8)"
        )
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

    def __init__(
        self,
        network: nn.Module,
        name: str,
        checksum: str,
        channels: int,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
    ):
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
                images = to_unit_images(chunk[start : start + self.batch_size]).to(self.device)
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


class Classifier(nn.Module):
    """Image classifier whose penultimate layer gives the metric features; input float [-1, 1] NCHW."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        stages, channels, size = [], config.in_channels, config.image_size
        for width in config.widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            channels, size = width, size // 2
        self.stages = nn.ModuleList(stages)
        # "pool" features are taken before the ReLU: units the ReLU leaves dead would make their covariance
        # singular (about a third of them on Fashion-MNIST) and clip away what separates real from fake.
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, config.feature_dim))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes)
        )

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, (B, width, H / 2^i, W / 2^i); differentiable (perceptual loss)."""
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise FeatureError(f"expected float images (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}")
        x = resize(images, self.config.image_size, antialias=images.shape[-1] > self.config.image_size)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """ "pool" (B, feature_dim) and "logits" (B, num_classes)."""
        pool = self.embedding(self.feature_maps(images)[-1])  # (B, feature_dim)
        return {"pool": pool, "logits": self.head(pool)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.features(images)["logits"]


class ClassifierFeatureMaps(nn.Module):
    """The classifier as a perceptual network (argen.tokenizer.lpips.FeatureDistance calls `network(images)` for a
    list of feature maps)."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.classifier.feature_maps(images)


def save_classifier(directory: str | Path, model: Classifier, extra: dict[str, Any] | None = None) -> Path:
    """Write a classifier checkpoint directory (kind "classifier", config {"model": ...})."""
    return ckpt.save_checkpoint(
        directory, ckpt.CLASSIFIER_KIND, {"model": to_dict(model.config)}, model.state_dict(), extra=extra
    )


def load_classifier(directory: str | Path) -> Classifier:
    """A classifier (eval mode) from a checkpoint written by `save_classifier` or the trainer."""
    meta = ckpt.read_meta(directory, ckpt.CLASSIFIER_KIND)
    if not isinstance(meta["config"].get("model"), dict):
        raise ckpt.CheckpointError(f"{directory}/config.json has no 'model' section for the classifier")
    model = Classifier(from_dict(ClassifierConfig, meta["config"]["model"], "model"))
    ckpt.load_state_into(model, ckpt.load_weights(directory), str(directory))
    return model.eval()


def classifier_data(directory: str | Path) -> DataConfig | None:
    """The data a classifier checkpoint was trained on (its features are only meaningful on those images), or
    None when it records none (a classifier saved outside the trainer)."""
    data = ckpt.read_meta(directory, ckpt.CLASSIFIER_KIND)["config"].get("data")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ckpt.CheckpointError(f"{directory}/config.json: config.data is not an object")
    return from_dict(DataConfig, data, "data")


class ClassifierExtractor(FeatureExtractor):
    """Features of the project classifier, named after the dataset it was trained on."""

    @classmethod
    def from_checkpoint(
        cls, directory: str | Path, batch_size: int = 512, device: str | torch.device = "cpu"
    ) -> ClassifierExtractor:
        model = load_classifier(directory)
        data = ckpt.read_meta(directory)["config"].get("data", {})
        # A folder of IDX files is named by its folder: two IDX datasets' classifiers must not share a name.
        dataset = Path(data["path"]).name if data.get("name") == "idx" and data.get("path") else data.get("name")
        return cls(
            model,
            f"{dataset}-cnn" if dataset else "cnn",
            ckpt.checkpoint_checksum(directory),
            model.config.in_channels,
            batch_size,
            device,
        )
