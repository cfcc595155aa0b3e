"""The small image datasets, held in memory as uint8 tensors: IDX (Fashion-MNIST), digits, synthetic (and the
frames of the video datasets of argen.data.video). ImageFolder streams from disk (argen.data.image_folder)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from argen.config import DataConfig
from argen.data.idx import IDXError, read_idx
from argen.data.transforms import random_crop, random_flip, to_channels, to_resolution, to_unit_range

# Where Debian's dataset-fashion-mnist package puts the files.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/local/share/datasets/fashion-mnist")
DATA_DIR_ENV = "ARGEN_DATA_DIR"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """Data that cannot be loaded; the message names the file or folder and what was expected."""


@dataclass
class ImageDataset:
    """Images (N, C, H, W) uint8 and labels (N,) int64, already at the model's resolution."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    flip: bool = False
    crop_min: float = 1.0  # < 1: LlamaGen's random crop (argen.data.transforms.random_crop)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        images = self.images[indices]
        if self.crop_min < 1:
            images = random_crop(images, self.crop_min)
        images = to_unit_range(images)
        if self.flip:
            images = random_flip(images)
        return {"images": images, "labels": self.labels[indices]}


def find_fashion_mnist(data_dir: str | Path | None = None) -> Path:
    """The Fashion-MNIST folder: `data_dir` when given (it must hold the files: a folder the user names is never
    silently replaced), else $ARGEN_DATA_DIR, else where the Debian package installs it."""
    if data_dir:  # the split's files are looked for when it is read
        if not Path(data_dir).is_dir():
            raise DataError(f"data directory {data_dir} does not exist")
        return Path(data_dir)
    candidates = []
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]))
    candidates += [Path(d) for d in FASHION_MNIST_DIRS]
    for candidate in candidates:
        if _idx_file(candidate, "train", "images", required=False):
            return candidate
    raise DataError(
        "Fashion-MNIST not found (looked in " + ", ".join(str(c) for c in candidates) + "). Install it with "
        "`apt-get install dataset-fashion-mnist`, or pass --data-dir / set ARGEN_DATA_DIR to a folder holding "
        "train-images-idx3-ubyte(.gz) and its siblings."
    )


def _idx_file(folder: Path, split: str, kind: str, required: bool = True) -> Path | None:
    prefix = "train" if split == "train" else "t10k"
    suffix = "idx3-ubyte" if kind == "images" else "idx1-ubyte"
    for name in (f"{prefix}-{kind}-{suffix}.gz", f"{prefix}-{kind}-{suffix}", f"{prefix}-{kind}.{suffix}"):
        if (folder / name).is_file():
            return folder / name
    if required:
        raise DataError(f"{folder}: no {prefix}-{kind}-{suffix}[.gz] file (an MNIST-format IDX folder is expected)")
    return None


def load_idx_folder(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 1, H, W) and int64 labels from an MNIST-format folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data directory {folder} does not exist")
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    try:
        images = read_idx(_idx_file(folder, split, "images"))
        labels = read_idx(_idx_file(folder, split, "labels"))
    except IDXError as error:
        raise DataError(str(error)) from error
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{folder}: images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{folder}: {len(images)} images but labels of shape {labels.shape}")
    return images[:, None], labels.astype(np.int64)


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (values 0..16) as uint8 (N, 1, 8, 8)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataError("the digits dataset needs scikit-learn (pip install scikit-learn)") from error
    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images[:, None], digits.target.astype(np.int64)


def synthetic_images(
    count: int, size: int, channels: int, num_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent shapes on black: class c is a filled box whose size and place depend on c."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, count).astype(np.int64)
    images = np.zeros((count, channels, size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        extent = max(2, size // 4 + (label * size) // (3 * num_classes))
        top, left = rng.integers(0, size - extent + 1, 2)
        images[i, :, top : top + extent, left : left + extent] = 80 + (label * 175) // max(1, num_classes - 1)
    return images, labels


def load_image_dataset(config: DataConfig, training: bool = True) -> ImageDataset:
    """The image dataset named by `config`, at `config.image_size` with `config.channels` channels."""
    class_names: tuple[str, ...]
    if config.name in ("fashion-mnist", "idx"):
        if config.name == "idx" and not config.path:
            raise DataError("data.name=idx needs data.path (a folder of MNIST-format IDX files)")
        folder = find_fashion_mnist(config.path or None) if config.name == "fashion-mnist" else Path(config.path)
        images, labels = load_idx_folder(folder, config.split)
        class_names = (
            FASHION_MNIST_CLASSES
            if config.name == "fashion-mnist"
            else tuple(str(c) for c in range(int(labels.max()) + 1))
        )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
            raise DataError(
                f"{folder}: labels must lie in [0, {len(class_names)}) ({config.name} has "
                f"{len(class_names)} classes), found {int(labels.min())} to {int(labels.max())}"
            )
        unused = np.flatnonzero(np.bincount(labels, minlength=len(class_names)) == 0)
        if config.name == "idx" and len(unused):
            # The largest label sets the class count: a stray label adds empty classes (and a bigger model).
            warnings.warn(
                f"{folder}: labels run to {int(labels.max())}, so {len(class_names)} classes, but "
                f"{len(unused)} of them ({unused[:8].tolist()}{' ...' if len(unused) > 8 else ''}) have no "
                f"image in the {config.split} split",
                stacklevel=2,
            )
    elif config.name == "digits":
        images, labels = load_digits_images()
        class_names = tuple(str(c) for c in range(10))
    elif config.name == "synthetic":
        images, labels = synthetic_images(config.limit or 512, config.image_size, config.channels)
        class_names = tuple(str(c) for c in range(10))
    elif config.name == "imagefolder":
        raise DataError(
            "imagefolder is read from disk per batch, not held in memory: load it with "
            "argen.data.load_dataset (and not as video sprites)"
        )
    else:
        raise DataError(
            f"unknown dataset {config.name!r}; known: fashion-mnist, idx, imagefolder, webdataset, digits, "
            f"synthetic, and the video datasets moving-<image dataset>, videofolder, videofiles"
        )
    if config.skip or config.limit:
        end = config.skip + config.limit if config.limit else None
        images, labels = images[config.skip : end], labels[config.skip : end]
        if not len(labels):
            raise DataError(f"data.skip={config.skip} leaves no {config.split} image ({config.name})")
    images = to_channels(images, config.channels)
    if config.pad_to:
        if config.pad_to < max(images.shape[-2:]):
            raise DataError(
                f"data.pad_to={config.pad_to} is smaller than the images ({images.shape[-2]}x"
                f"{images.shape[-1]}); use 0 or a size >= theirs"
            )
        images = to_resolution(images, config.pad_to, "pad")
    images = to_resolution(images, config.image_size, config.resize)
    return ImageDataset(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels),
        class_names,
        flip=config.flip and training,
        crop_min=config.crop_min if training else 1.0,
    )
