"""Linear probing of token caches: how much of the class a short prefix of tokens carries.

The Prologue paper probes the 16 prologue tokens against the first 16 tokens of a standard tokenizer.
Here both come from one cache written by a Prologue tokenizer: the P prologue ids, and the first P
visual ids in raster order. Each id becomes a one-hot block (P blocks, one per position, so the features
say which code sits where), and a multinomial logistic regression (scikit-learn, L2, lbfgs) predicts
the class. Accuracy is measured on a test cache, or on a seeded held-out fraction of the one cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from argen.data.token_cache import TokenDataset

PROLOGUE_FEATURES, FIRST_VISUAL_FEATURES = "prologue", "first_visual"


def one_hot_positions(ids: torch.Tensor, vocab: int):
    """(N, P) ids in [0, vocab) -> sparse (N, P * vocab) float matrix, one one-hot block per position."""
    from scipy.sparse import csr_matrix

    if ids.ndim != 2 or (ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab)):
        raise ValueError(f"ids must be (N, P) in [0, {vocab}), got {tuple(ids.shape)}")
    count, length = ids.shape
    columns = (ids.long() + torch.arange(length) * vocab).flatten().numpy()
    rows = np.repeat(np.arange(count), length)
    return csr_matrix((np.ones(count * length, dtype=np.float32), (rows, columns)), shape=(count, length * vocab))


def probe_features(cache: TokenDataset) -> dict[str, Any]:
    """The two feature sets of a cache: P prologue ids and the first P visual ids (raster), one-hot."""
    if not cache.prologue_length:
        raise ValueError(
            f"{cache.directory} has no prologue ids; tokenize with a Prologue tokenizer (model.prologue_tokens > 0)"
        )
    tokenizer = cache.manifest["tokenizer"]
    prologue = cache.column("prologue_ids")
    length = prologue.shape[1]
    visual = cache.column("ids").flatten(1)[:, :length]
    return {
        PROLOGUE_FEATURES: one_hot_positions(prologue, int(tokenizer["prologue_codebook_size"])),
        FIRST_VISUAL_FEATURES: one_hot_positions(visual, int(tokenizer["codebook_size"])),
    }


def linear_probe(
    cache: str | Path,
    test_cache: str | Path | None = None,
    test_fraction: float = 0.2,
    regularization: float = 1.0,
    max_iterations: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train and test accuracy of a logistic-regression probe on each feature set (module docstring).

    Without `test_cache`, a seeded `test_fraction` of `cache` is held out. `regularization` is
    scikit-learn's C (inverse L2 strength).
    """
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as error:
        raise ValueError("linear probing needs scikit-learn (pip install scikit-learn)") from error
    train_data = TokenDataset(cache)
    train_features, train_labels = probe_features(train_data), train_data.column("labels").numpy()
    if test_cache is not None:
        test_data = TokenDataset(test_cache)
        if test_data.manifest["tokenizer"].get("sha256") != train_data.manifest["tokenizer"].get("sha256"):
            raise ValueError(f"{cache} and {test_cache} were written by different tokenizers")
        test_features, test_labels = probe_features(test_data), test_data.column("labels").numpy()
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        order = np.random.default_rng(seed).permutation(len(train_labels))
        held = max(1, int(round(test_fraction * len(order))))
        test_index, train_index = order[:held], order[held:]
        test_features = {name: matrix[test_index] for name, matrix in train_features.items()}
        train_features = {name: matrix[train_index] for name, matrix in train_features.items()}
        test_labels, train_labels = train_labels[test_index], train_labels[train_index]
    result: dict[str, Any] = {
        "cache": str(cache),
        "test_cache": None if test_cache is None else str(test_cache),
        "tokens": train_data.prologue_length,
        "train_images": int(len(train_labels)),
        "test_images": int(len(test_labels)),
        "regularization": regularization,
        "majority_class_accuracy": float(np.mean(test_labels == np.bincount(train_labels).argmax())),
    }
    for name in (PROLOGUE_FEATURES, FIRST_VISUAL_FEATURES):
        probe = LogisticRegression(C=regularization, max_iter=max_iterations)
        probe.fit(train_features[name], train_labels)
        result[name] = {
            "train_accuracy": float(probe.score(train_features[name], train_labels)),
            "test_accuracy": float(probe.score(test_features[name], test_labels)),
            "features": int(train_features[name].shape[1]),
        }
    return result
