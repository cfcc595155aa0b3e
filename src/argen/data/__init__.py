"""Datasets (IDX/Fashion-MNIST, ImageFolder, scikit-learn digits, synthetic), transforms and the token cache."""

from argen.data.datasets import ImageDataset, DataError, load_dataset, find_fashion_mnist

__all__ = ["ImageDataset", "DataError", "load_dataset", "find_fashion_mnist"]
