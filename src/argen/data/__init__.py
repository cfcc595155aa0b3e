"""Datasets (IDX/Fashion-MNIST, ImageFolder, scikit-learn digits, synthetic, videos), transforms and the token
cache. `load_dataset` is the one entry point: an image dataset, or the frames of a video dataset."""

from collections.abc import Iterator

import numpy as np
import torch

from argen.config import DataConfig
from argen.data.datasets import DataError, ImageDataset, find_fashion_mnist, load_image_dataset
from argen.data.image_folder import ImageFolderDataset
from argen.data.tar_shards import TarShardDataset
from argen.data.transforms import to_uint8
from argen.data.video import is_video_dataset, load_video_dataset


def load_dataset(config: DataConfig, training: bool = True) -> ImageDataset | ImageFolderDataset | TarShardDataset:
    """The dataset named by `config` as images at `config.image_size` (a video dataset: its frames); the
    small datasets in memory, an image folder read per batch, WebDataset tar shards streamed."""
    if config.skip and (is_video_dataset(config.name) or config.name in ("imagefolder", "webdataset")):
        raise DataError(f"data.skip applies to the in-memory image datasets, not {config.name}")
    if is_video_dataset(config.name):
        return load_video_dataset(config, training).frames_view()
    if config.name == "imagefolder":
        if not config.path:
            raise DataError("data.name=imagefolder needs data.path (one sub-folder per class)")
        if config.pad_to:
            raise DataError("data.pad_to applies to the in-memory datasets, not imagefolder (set it to 0)")
        return ImageFolderDataset(
            config.path,
            config.image_size,
            config.channels,
            flip=config.flip and training,
            crop_min=config.crop_min if training else 1.0,
            on_bad_image=config.on_bad_image,
            limit=config.limit,
            max_pixels=config.max_image_pixels,
        )
    if config.name == "webdataset":
        if not config.path:
            raise DataError("data.name=webdataset needs data.path (a folder packed by `argen data pack`)")
        return TarShardDataset(
            config.path,
            config.image_size,
            config.channels,
            flip=config.flip and training,
            crop_min=config.crop_min if training else 1.0,
            on_bad_image=config.on_bad_image,
            max_pixels=config.max_image_pixels,
        )
    return load_image_dataset(config, training)


def image_batches(dataset: ImageDataset | ImageFolderDataset, batch_size: int = 256) -> Iterator[np.ndarray]:
    """A dataset's images in order as uint8 (B, H, W, C) arrays, batch by batch: evaluation reads a split of any
    size (an image folder read per batch) without holding it in memory."""
    for start in range(0, len(dataset), batch_size):
        images = dataset.batch(torch.arange(start, min(start + batch_size, len(dataset))))["images"]
        yield to_uint8(images).permute(0, 2, 3, 1).numpy()


__all__ = [
    "ImageDataset",
    "ImageFolderDataset",
    "TarShardDataset",
    "DataError",
    "load_dataset",
    "find_fashion_mnist",
    "image_batches",
]
