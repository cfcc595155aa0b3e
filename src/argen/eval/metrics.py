"""Sample-quality metrics computed from features (numpy/scipy, float64).

- Frechet distance (FID; sFID when given spatial features): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2).
- Inception Score from class probabilities: exp(E_x KL(p(y|x) || p(y))), mean and std over splits.
- Improved precision and recall (Kynkaanniemi et al. 2019): k-nearest-neighbour balls around each
  feature vector approximate a manifold; precision is the share of samples inside the reference manifold,
  recall the share of reference points inside the sample manifold.
- Class accuracy of class-conditional samples: classifier argmax against the requested labels.

The numbers depend on the feature extractor: a FID on a project classifier's features is not comparable
with a published Inception FID, so every result names its extractor (see argen.eval.reference).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


class MetricError(ValueError):
    """Features or statistics that cannot be compared; the message says what was expected."""


def _as_matrix(features: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise MetricError(f"{name} must be a non-empty (N, D) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise MetricError(f"{name} contains NaN or infinite values")
    return array


class MomentAccumulator:
    """Running mean and covariance of feature batches in float64 (any number of samples, bounded memory).

    Sums are taken around a shift (the first batch's mean) so that large feature means do not cancel
    away the precision of the covariance.
    """

    def __init__(self) -> None:
        self.count = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def update(self, features: np.ndarray) -> None:
        """Add a batch of (N, D) features."""
        batch = _as_matrix(features, "features")
        if self._shift is None:
            self._shift = batch.mean(axis=0)
            self._sum = np.zeros_like(self._shift)
            self._outer = np.zeros((batch.shape[1], batch.shape[1]))
        elif batch.shape[1] != self._shift.shape[0]:
            raise MetricError(
                f"feature batches must keep one width: got {batch.shape[1]}, expected {self._shift.shape[0]}"
            )
        centred = batch - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.count += batch.shape[0]

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), unbiased covariance (D, D)), as numpy's `np.cov(features, rowvar=False)`."""
        if self.count < 2:
            raise MetricError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        mean_offset = self._sum / self.count
        covariance = (self._outer - self.count * np.outer(mean_offset, mean_offset)) / (self.count - 1)
        return self._shift + mean_offset, covariance


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features."""
    accumulator = MomentAccumulator()
    accumulator.update(features)
    return accumulator.statistics()


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    The matrix square root of sigma1 @ sigma2 comes from scipy.linalg.sqrtm; when the product is
    singular (scipy warns, or the root is not finite) both covariances get `eps` added to their diagonals
    (a bias of about -2 * D * eps), and a small imaginary
    residue from round-off is dropped (a large one is an error: the inputs are not covariances).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    dims = mu1.shape[0]
    if mu1.shape != mu2.shape or sigma1.shape != (dims, dims) or sigma2.shape != (dims, dims):
        raise MetricError(
            f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}; expected (D,) and (D, D) with one D"
        )
    difference = mu1 - mu2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(root).all():
        offset = np.eye(dims) * eps
        root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        residue = np.max(np.abs(np.diagonal(root).imag))
        if residue > 1e-3:
            raise MetricError(
                f"the covariance product has a square root with imaginary part {residue:.3g}; "
                "are both sigmas symmetric positive semi-definite?"
            )
        root = root.real
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def fid_bootstrap_std(features: np.ndarray, mu: np.ndarray, sigma: np.ndarray, rounds: int, seed: int = 0) -> float:
    """Standard deviation of the FID of sample features against (mu, sigma) over `rounds` resamples of the N
    samples with replacement: the part of FID's uncertainty that comes from drawing a finite sample set. The
    features are (N, D), or (N, T, D) for N videos of T frames: whole videos are resampled (their frames are not
    independent draws) and every frame of the drawn videos enters the FID. Two models whose FIDs differ by less
    than about twice this are not told apart by the measurement."""
    if rounds < 2:
        raise MetricError(f"the bootstrap needs at least 2 rounds, got {rounds}")
    samples = np.asarray(features, dtype=np.float64)
    samples = samples[:, None] if samples.ndim == 2 else samples  # (N, frames per sample, D)
    if samples.ndim != 3:
        raise MetricError(f"features must be a non-empty (N, D) or (N, T, D) array, got shape {samples.shape}")
    dims = samples.shape[-1]
    _as_matrix(samples.reshape(-1, dims), "features")  # non-empty and finite
    generator = np.random.default_rng(seed)
    values = [
        frechet_distance(
            *feature_statistics(samples[generator.integers(0, len(samples), len(samples))].reshape(-1, dims)), mu, sigma
        )
        for _ in range(rounds)
    ]
    return float(np.std(values, ddof=1))


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` equal chunks of exp(mean_x KL(p(y|x) || p(y))).

    `probabilities` are (N, C) class probabilities (softmax of a classifier's logits); each row must sum
    to 1. Uniform predictions score 1; confident predictions spread evenly over C classes score C.
    """
    probabilities = _as_matrix(probabilities, "probabilities")
    count = probabilities.shape[0]
    if splits < 1 or splits > count:
        raise MetricError(f"splits must be between 1 and the sample count ({count}), got {splits}")
    if (probabilities < 0).any() or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4):
        raise MetricError("probabilities must be non-negative rows summing to 1 (apply softmax to logits)")
    scores = []
    for chunk in np.array_split(probabilities, splits):
        marginal = chunk.mean(axis=0, keepdims=True)  # (1, C)
        # 0 * log(0) is 0: mask the zeros instead of adding an epsilon that biases the score.
        terms = np.where(
            chunk > 0,
            chunk * (np.log(np.where(chunk > 0, chunk, 1.0)) - np.log(np.where(chunk > 0, marginal, 1.0))),
            0.0,
        )
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    logits = _as_matrix(logits, "logits")
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _squared_distances(rows: np.ndarray, columns: np.ndarray, column_norms: np.ndarray) -> np.ndarray:
    """(R, C) squared Euclidean distances, clipped at 0 against round-off."""
    row_norms = np.einsum("ij,ij->i", rows, rows)
    return np.maximum(row_norms[:, None] - 2.0 * rows @ columns.T + column_norms[None, :], 0.0)


def manifold_radii(features: np.ndarray, k: int = 3, batch_size: int = 1024) -> np.ndarray:
    """Squared distance of each point to its k-th nearest other point (the point itself is excluded)."""
    features = _as_matrix(features, "features")
    count = features.shape[0]
    if not 1 <= k < count:
        raise MetricError(f"k must be between 1 and N - 1 = {count - 1}, got {k}")
    norms = np.einsum("ij,ij->i", features, features)
    radii = np.empty(count)
    for start in range(0, count, batch_size):
        distances = _squared_distances(features[start : start + batch_size], features, norms)  # (B, N)
        # Index k, not k - 1: each row's own zero distance takes position 0.
        radii[start : start + batch_size] = np.partition(distances, k, axis=1)[:, k]
    return radii


def _inside_share(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, batch_size: int) -> float:
    """Share of `points` that lie inside at least one ball (centre, squared radius)."""
    norms = np.einsum("ij,ij->i", centres, centres)
    inside = 0
    for start in range(0, points.shape[0], batch_size):
        distances = _squared_distances(points[start : start + batch_size], centres, norms)  # (B, M)
        inside += int((distances <= radii[None, :]).any(axis=1).sum())
    return inside / points.shape[0]


def precision_recall(
    reference: np.ndarray, samples: np.ndarray, k: int = 3, batch_size: int = 1024
) -> tuple[float, float]:
    """Improved (precision, recall) of `samples` against `reference` features, k-NN manifolds.

    Distances are computed `batch_size` rows at a time, so 10k x 10k sets need a few tens of MB.
    """
    reference = _as_matrix(reference, "reference features")
    samples = _as_matrix(samples, "sample features")
    if reference.shape[1] != samples.shape[1]:
        raise MetricError(f"reference features have {reference.shape[1]} dims but samples have {samples.shape[1]}")
    reference_radii = manifold_radii(reference, k, batch_size)
    sample_radii = manifold_radii(samples, k, batch_size)
    precision = _inside_share(samples, reference, reference_radii, batch_size)
    recall = _inside_share(reference, samples, sample_radii, batch_size)
    return precision, recall


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose classifier argmax equals the class they were generated for."""
    logits = _as_matrix(logits, "logits")
    labels = np.asarray(labels)
    if labels.shape != (logits.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise MetricError(
            f"labels must be {logits.shape[0]} integers (one per sample), got {labels.dtype} {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise MetricError(f"labels must lie in [0, {logits.shape[1]}), got [{labels.min()}, {labels.max()}]")
    return float((logits.argmax(axis=1) == labels).mean())


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Class accuracy of the samples of each class present, by class id: which classes come out recognisable."""
    labels = np.asarray(labels)
    return {int(c): class_accuracy(np.asarray(logits)[labels == c], labels[labels == c]) for c in np.unique(labels)}
