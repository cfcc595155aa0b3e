"""Reference statistics of a dataset, computed once, and `evaluate`: every metric of a sample set.

A reference file (`.npz`, read with allow_pickle=False) holds the mean and covariance of the
extractor's pool features (`mu`, `sigma`), the spatial ones when the extractor has them (`mu_s`,
`sigma_s`, ADM's names), a seeded random subset of the pool features for precision/recall
(`features`, at most 10k rows by default), and a JSON `meta` string: extractor name, weight checksum,
image count and the dataset the images came from (name, folder, split, skip, image size). Samples are only ever
compared with a reference made by the same extractor weights, and of their image size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from argen.config import DataConfig, from_dict
from argen.data import image_batches, load_dataset
from argen.data.token_cache import TokenDataset
from argen.eval.features import FeatureExtractor, ImageSource, classifier_data
from argen.eval.metrics import (
    MetricError,
    MomentAccumulator,
    class_accuracy,
    fid_bootstrap_std,
    per_class_accuracy,
    frechet_distance,
    inception_score,
    precision_recall,
    softmax,
)
from argen.io.checkpoint import atomic_write

FORMAT_VERSION = 1
DEFAULT_MAX_FEATURES = 10_000


@dataclass
class ReferenceStatistics:
    """Feature statistics of a reference image set, tied to one extractor's weights."""

    extractor: str
    checksum: str
    count: int  # images the statistics were computed from
    mu: np.ndarray  # (d,)
    sigma: np.ndarray  # (d, d)
    features: np.ndarray  # (M, d), M <= count: the precision/recall subset
    spatial_mu: np.ndarray | None = None  # (s,)
    spatial_sigma: np.ndarray | None = None  # (s, s)
    dataset: dict | None = None  # name, path, split, skip, image_size, channels (argen eval ref records them)

    def describe(self) -> str:
        """The reference's images in a few words, for every printed score."""
        if not self.dataset:
            return f"{self.count} images of an unrecorded dataset"
        data = self.dataset
        where = f" at {data['path']}" if data.get("path") else ""
        skip = f" after the first {data['skip']}" if data.get("skip") else ""
        return (
            f"{self.count} {data['name']}{where} {data['split']} images{skip}, "
            f"{data['image_size']}x{data['image_size']}"
        )

    def check_samples(self, image_size: int) -> None:
        """Refuse samples of another image size than the reference's (their features are not comparable)."""
        recorded = (self.dataset or {}).get("image_size")
        if recorded is not None and recorded != image_size:
            raise MetricError(
                f"the samples are {image_size}x{image_size} images but the reference is of "
                f"{recorded}x{recorded} ones ({self.describe()}); compute a reference at the "
                "samples' size"
            )

    def save(self, path: str | Path) -> Path:
        """Write the statistics as an `.npz` (atomic)."""
        path = Path(path)
        meta = {
            "format": FORMAT_VERSION,
            "extractor": self.extractor,
            "checksum": self.checksum,
            "count": self.count,
            "dataset": self.dataset,
        }
        arrays = {"mu": self.mu, "sigma": self.sigma, "features": self.features, "meta": np.array(json.dumps(meta))}
        if self.spatial_mu is not None:
            arrays.update(mu_s=self.spatial_mu, sigma_s=self.spatial_sigma)

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceStatistics:
        """Read statistics written by `save`; refuses files without argen's metadata."""
        path = Path(path)
        if not path.is_file():
            raise MetricError(
                f"reference statistics file {path} does not exist; compute it once with "
                "argen.eval.reference.compute_reference"
            )
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("mu", "sigma", "features", "meta") if key not in data.files]
            if missing:
                raise MetricError(
                    f"{path} is not an argen reference file (missing {', '.join(missing)}); "
                    "compute one from the reference images with compute_reference"
                )
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT_VERSION:
                raise MetricError(f"{path} has reference format {meta.get('format')}, expected {FORMAT_VERSION}")
            spatial = "mu_s" in data.files
            # Shipped files may hold the features in fp16 (scripts/ship.py); distances are computed in fp32.
            return cls(
                meta["extractor"],
                meta["checksum"],
                int(meta["count"]),
                data["mu"],
                data["sigma"],
                data["features"].astype(np.float32),
                data["mu_s"] if spatial else None,
                data["sigma_s"] if spatial else None,
                meta.get("dataset"),
            )


class _RandomSubset:
    """A uniform random subset of at most `capacity` rows of a stream, reproducible from `seed`.

    Every row gets a random key; the rows with the smallest keys are kept.
    """

    def __init__(self, capacity: int, seed: int):
        self.capacity = capacity
        self.random = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.rows: np.ndarray | None = None

    def update(self, rows: np.ndarray) -> None:
        keys = np.concatenate([self.keys, self.random.random(len(rows))])
        rows = rows if self.rows is None else np.concatenate([self.rows, rows])
        keep = np.sort(np.argsort(keys, kind="stable")[: self.capacity])  # stream order among the kept rows
        self.keys, self.rows = keys[keep], rows[keep]


def compute_reference(
    source: ImageSource, extractor: FeatureExtractor, max_features: int = DEFAULT_MAX_FEATURES, seed: int = 0
) -> ReferenceStatistics:
    """Statistics of the reference images `source` (an image array or an iterable of image arrays)."""
    if max_features < 2:
        raise MetricError(f"max_features must be >= 2, got {max_features}")
    pool, spatial = MomentAccumulator(), MomentAccumulator()
    subset = _RandomSubset(max_features, seed)
    for outputs in extractor.batches(source):
        pool.update(outputs["pool"])
        subset.update(outputs["pool"])
        if "spatial" in outputs:
            spatial.update(outputs["spatial"])
    mu, sigma = pool.statistics()
    spatial_mu, spatial_sigma = spatial.statistics() if spatial.count else (None, None)
    return ReferenceStatistics(
        extractor.name, extractor.checksum, pool.count, mu, sigma, subset.rows, spatial_mu, spatial_sigma
    )


def check_compatible(reference: ReferenceStatistics, extractor: FeatureExtractor) -> None:
    """Refuse to compare features of different networks (their numbers mean nothing together)."""
    if (reference.extractor, reference.checksum) != (extractor.name, extractor.checksum):
        raise MetricError(
            f"the reference was computed with {reference.extractor} (weights sha256 {reference.checksum[:12]}...) "
            f"but the extractor is {extractor.name} (sha256 {extractor.checksum[:12]}...); recompute the "
            "reference with this extractor or evaluate with the reference's extractor"
        )


def evaluate(
    samples: ImageSource,
    reference: ReferenceStatistics,
    extractor: FeatureExtractor,
    labels: np.ndarray | None = None,
    splits: int = 10,
    k: int = 3,
    seed: int = 0,
    bootstrap: int = 0,
) -> dict[str, Any]:
    """FID (and sFID), Inception Score, precision/recall and, given `labels`, class accuracy of `samples`.

    With `bootstrap` >= 2 rounds it also reports `fid_bootstrap_std` (see `fid_bootstrap_std`); that keeps
    every sample's features in memory.

    Precision/recall compare the reference's feature subset with an equally large seeded random subset
    of the samples (all samples when there are fewer). The result also names the extractor, its
    checksum and both image counts.
    """
    check_compatible(reference, extractor)
    return evaluate_features(extractor.batches(samples), reference, extractor, labels, splits, k, seed, bootstrap)


def evaluate_features(
    batches: Iterable[dict[str, np.ndarray]],
    reference: ReferenceStatistics,
    extractor: FeatureExtractor,
    labels: np.ndarray | None = None,
    splits: int = 10,
    k: int = 3,
    seed: int = 0,
    bootstrap: int = 0,
) -> dict[str, Any]:
    """`evaluate` from the extractor's feature batches of the samples, in the samples' order (batches made
    elsewhere, e.g. by torchrun ranks, give the same numbers when they are cut where `extractor.batches` cuts)."""
    check_compatible(reference, extractor)
    pool, spatial = MomentAccumulator(), MomentAccumulator()
    subset = _RandomSubset(len(reference.features), seed)
    logits, kept = [], []
    for outputs in batches:
        pool.update(outputs["pool"])
        if bootstrap:
            kept.append(outputs["pool"])
        subset.update(outputs["pool"])
        logits.append(outputs["logits"])
        if "spatial" in outputs:
            spatial.update(outputs["spatial"])
    logits = np.concatenate(logits)
    count = len(logits)
    mu, sigma = pool.statistics()
    results: dict[str, Any] = {"fid": frechet_distance(mu, sigma, reference.mu, reference.sigma)}
    if bootstrap:
        results["fid_bootstrap_std"] = fid_bootstrap_std(
            np.concatenate(kept), reference.mu, reference.sigma, bootstrap, seed
        )
    if spatial.count and reference.spatial_mu is not None:
        results["sfid"] = frechet_distance(*spatial.statistics(), reference.spatial_mu, reference.spatial_sigma)
    results["inception_score"], results["inception_score_std"] = inception_score(softmax(logits), min(splits, count))
    results["precision"], results["recall"] = precision_recall(reference.features, subset.rows, k)
    if labels is not None:
        results["class_accuracy"] = class_accuracy(logits, np.asarray(labels))
        results["class_accuracy_per_class"] = {
            str(c): value for c, value in per_class_accuracy(logits, np.asarray(labels)).items()
        }
    results.update(
        samples=count,
        reference_samples=reference.count,
        reference=reference.describe(),
        extractor=extractor.name,
        checksum=extractor.checksum,
    )
    return results


def reference_data(
    classifier: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    image_size: int | None = None,
    channels: int | None = None,
    resize: str = "pad",
    pad_to: int = 0,
    skip: int = 0,
    limit: int = 0,
    holdout_of: str | Path | None = None,
) -> DataConfig:
    """The images a reference is of (`argen eval ref`): a token cache's held-out split, or the classifier's own
    dataset unless named; never another dataset than the classifier's (its features mean nothing on others)."""
    trained = classifier_data(classifier) if classifier else None
    if holdout_of:
        if dataset or data_dir or skip or limit or image_size or channels:
            raise ValueError(
                "--holdout-of names the images and their sizes itself; drop --dataset, --data-dir, "
                "--skip, --limit, --image-size and --channels"
            )
        held_out = TokenDataset(holdout_of).manifest.get("holdout")
        if not held_out:
            raise ValueError(f"{holdout_of} kept no validation images aside (argen tokenize --holdout N)")
        data = from_dict(DataConfig, held_out["data"], "data")
        if trained is not None and data.name != trained.name:
            raise ValueError(f"the classifier {classifier} was trained on {trained.name}, not {data.name}")
        return data
    name = dataset or (trained.name if trained else None)
    if name is None:
        raise ValueError(
            "give --dataset (and --data-dir): with --inception argen cannot tell which images the reference is of"
        )
    path = data_dir or (trained.path if trained is not None and trained.name == name else "")
    # A folder format is its folder; a named dataset (fashion-mnist, digits) is itself wherever its copy lies.
    folder_format = name in ("idx", "imagefolder", "webdataset")
    if trained is not None and (name != trained.name or folder_format and _resolved(path) != _resolved(trained.path)):
        raise ValueError(
            f"the classifier {classifier} was trained on {trained.name}"
            f"{' at ' + trained.path if trained.path else ''}, not {name}{' at ' + path if path else ''}: "
            "its features mean nothing on other data; use a classifier of those images "
            "(argen eval train-classifier) or leave --dataset out"
        )
    size = image_size or (trained.image_size if trained else 32)
    channels = channels or (trained.channels if trained else 1)
    return DataConfig(
        name=name,
        path=path,
        split=split,
        image_size=size,
        channels=channels,
        resize=resize,
        pad_to=pad_to,
        skip=skip,
        limit=limit,
    )


def dataset_reference(data: DataConfig, extractor: FeatureExtractor) -> ReferenceStatistics:
    """The reference statistics of the images `data` names, recording which images they are."""
    reference = compute_reference(image_batches(load_dataset(data, training=False)), extractor)
    reference.dataset = {
        "name": data.name,
        "path": _resolved(data.path),
        "split": data.split,
        "skip": data.skip,
        "image_size": data.image_size,
        "channels": data.channels,
    }
    return reference


def _resolved(path: str) -> str:
    return str(Path(path).resolve()) if path else ""
