"""Datasets (IDX/Fashion-MNIST, ImageFolder, scikit-learn digits, synthetic, videos), transforms and the token
cache. `load_dataset` is the one entry point: an image dataset, or the frames of a video dataset."""

from argen.config import DataConfig
from argen.data.datasets import DataError, ImageDataset, find_fashion_mnist, load_image_dataset
from argen.data.video import is_video_dataset, load_video_dataset


def load_dataset(config: DataConfig, training: bool = True) -> ImageDataset:
    """The dataset named by `config` as images at `config.image_size` (a video dataset: its frames)."""
    if is_video_dataset(config.name):
        return load_video_dataset(config).frames(flip=config.flip and training)
    return load_image_dataset(config, training)


__all__ = ["ImageDataset", "DataError", "load_dataset", "find_fashion_mnist"]
