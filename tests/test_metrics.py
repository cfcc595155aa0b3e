"""Metrics from features: FID against closed forms, IS extremes, precision/recall, class accuracy, npz files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from argen.eval.metrics import (
    MetricError,
    MomentAccumulator,
    class_accuracy,
    feature_statistics,
    fid_bootstrap_std,
    fid_from_features,
    frechet_distance,
    inception_score,
    manifold_radii,
    per_class_accuracy,
    precision_recall,
    softmax,
)
from argen.eval.npz import SampleFileError, read_image_folder, read_npz, read_samples, write_npz


def random_covariance(rng: np.random.Generator, dims: int) -> np.ndarray:
    factor = rng.normal(size=(dims, dims))
    return factor @ factor.T / dims + 0.1 * np.eye(dims)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(2000, 16)) @ rng.normal(size=(16, 16)) + 3.0
    second = rng.normal(size=(1500, 16)) * 2.0 - 1.0
    assert abs(fid_from_features(first, first)) < 1e-6
    forward, backward = fid_from_features(first, second), fid_from_features(second, first)
    assert forward > 1.0
    assert forward == pytest.approx(backward, rel=1e-9, abs=1e-9)


def test_frechet_distance_matches_the_closed_form_of_two_gaussians():
    rng = np.random.default_rng(1)
    dims = 6
    mu1, mu2 = rng.normal(size=dims), rng.normal(size=dims)
    sigma1, sigma2 = random_covariance(rng, dims), random_covariance(rng, dims)
    # Closed form with symmetric square roots: Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).
    root1 = scipy.linalg.sqrtm(sigma1).real
    expected = float(
        np.sum((mu1 - mu2) ** 2)
        + np.trace(sigma1)
        + np.trace(sigma2)
        - 2 * np.trace(scipy.linalg.sqrtm(root1 @ sigma2 @ root1).real)
    )
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)
    # Diagonal covariances: sum (m1 - m2)^2 + sum (s1 - s2)^2 with standard deviations s.
    std1, std2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    shift = np.array([1.0, -1.0, 2.0])
    diagonal = frechet_distance(np.zeros(3), np.diag(std1**2), shift, np.diag(std2**2))
    assert diagonal == pytest.approx(float(shift @ shift + np.sum((std1 - std2) ** 2)), rel=1e-12)


def test_fid_bootstrap_std_matches_the_spread_of_independent_sample_sets():
    generator = np.random.default_rng(0)
    mu, sigma = np.full(6, 0.3), np.eye(6)  # samples N(0, I) against N(0.3, I)
    draws = [generator.standard_normal((400, 6)) for _ in range(60)]
    spread = np.std([frechet_distance(*feature_statistics(draw), mu, sigma) for draw in draws], ddof=1)
    estimates = [fid_bootstrap_std(draw, mu, sigma, rounds=40, seed=1) for draw in draws[:5]]
    assert 0.6 * spread < np.median(estimates) < 1.6 * spread
    assert fid_bootstrap_std(draws[0], mu, sigma, 40, seed=1) == estimates[0]  # seeded
    with pytest.raises(MetricError, match="2 rounds"):
        fid_bootstrap_std(draws[0], mu, sigma, 1)


def test_fid_bootstrap_of_videos_resamples_whole_videos():
    # 8 identical frames a video: the frames are one draw, so resampling frames would understate the spread.
    generator = np.random.default_rng(0)
    mu, sigma = np.full(4, 0.3), np.eye(4)
    draws = [np.repeat(generator.standard_normal((150, 1, 4)), 8, axis=1) for _ in range(60)]
    spread = np.std([frechet_distance(*feature_statistics(draw.reshape(-1, 4)), mu, sigma) for draw in draws], ddof=1)
    by_video = np.median([fid_bootstrap_std(draw, mu, sigma, 40, seed=1) for draw in draws[:5]])
    by_frame = np.median([fid_bootstrap_std(draw.reshape(-1, 4), mu, sigma, 40, seed=1) for draw in draws[:5]])
    assert 0.6 * spread < by_video < 1.6 * spread and by_frame < 0.5 * spread
    with pytest.raises(MetricError, match=r"\(N, D\) or \(N, T, D\)"):
        fid_bootstrap_std(np.zeros((2, 3, 4, 5)), mu, sigma, 2)


def test_fid_of_large_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    dims, count = 4, 100_000
    mu1, mu2 = np.zeros(dims), np.full(dims, 0.5)
    sigma1, sigma2 = np.eye(dims), np.diag([1.0, 4.0, 0.25, 1.0])
    first = rng.multivariate_normal(mu1, sigma1, size=count)
    second = rng.multivariate_normal(mu2, sigma2, size=count)
    expected = frechet_distance(mu1, sigma1, mu2, sigma2)  # 1 + (0 + 1 + 0.25 + 0) = 2.25
    assert expected == pytest.approx(2.25)
    assert fid_from_features(first, second) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("failure", ["non-finite", "warning"])
def test_a_failed_square_root_is_retried_with_an_offset(monkeypatch, failure):
    calls, original = [], scipy.linalg.sqrtm

    def failing_once(matrix):
        calls.append(matrix)
        if len(calls) == 1:
            if failure == "warning":
                warnings.warn("Matrix is singular.", scipy.linalg.LinAlgWarning)
            else:
                return np.full_like(matrix, np.nan)
        return original(matrix)

    monkeypatch.setattr("argen.eval.metrics.scipy.linalg.sqrtm", failing_once)
    sigma1, sigma2 = np.diag([1.0, 4.0]), np.diag([4.0, 1.0])
    value = frechet_distance(np.zeros(2), sigma1, np.ones(2), sigma2, eps=1e-3)
    offset = 1e-3 * np.eye(2)
    assert len(calls) == 2 and np.allclose(calls[1], (sigma1 + offset) @ (sigma2 + offset))
    assert value == pytest.approx(2 + 5 + 5 - 2 * 2 * np.sqrt(4.0 + 5e-3 + 1e-6), rel=1e-9)


def test_low_rank_features_give_finite_distances():
    rng = np.random.default_rng(3)
    low_rank = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 8))  # rank 2 in 8 dims
    other = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 8))
    value = fid_from_features(low_rank, other)
    assert np.isfinite(value) and value > 0
    assert abs(fid_from_features(low_rank, low_rank)) < 1e-3


def test_moment_accumulator_equals_numpy_in_any_batching():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(1001, 5)) * 3 + 1e4  # a large mean must not cost precision
    accumulator = MomentAccumulator()
    for start in range(0, len(features), 97):
        accumulator.update(features[start : start + 97])
    mean, covariance = accumulator.statistics()
    assert np.allclose(mean, features.mean(axis=0), rtol=0, atol=1e-9)
    assert np.allclose(covariance, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-9)
    with pytest.raises(MetricError, match="width"):
        accumulator.update(np.zeros((3, 4)))


def test_frechet_distance_rejects_mismatched_statistics():
    with pytest.raises(MetricError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_extremes():
    uniform = np.full((100, 10), 0.1)
    assert inception_score(uniform)[0] == pytest.approx(1.0, abs=1e-12)
    classes = 7
    one_hot = np.eye(classes)[np.arange(700) % classes]  # balanced within every split
    mean, std = inception_score(one_hot, splits=10)
    assert mean == pytest.approx(classes, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-9)
    # One confident class everywhere: no diversity, score 1.
    assert inception_score(np.eye(classes)[np.zeros(70, dtype=int)], splits=7)[0] == pytest.approx(1.0)


def test_inception_score_from_logits_and_validation():
    logits = np.random.default_rng(5).normal(size=(50, 4)) * 5
    probabilities = softmax(logits)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    mean, _ = inception_score(probabilities, splits=5)
    assert 1.0 < mean < 4.0
    with pytest.raises(MetricError, match="softmax"):
        inception_score(logits, splits=5)
    with pytest.raises(MetricError, match="splits"):
        inception_score(probabilities, splits=51)


def test_precision_recall_of_a_set_with_itself_is_one():
    features = np.random.default_rng(6).normal(size=(300, 8))
    assert precision_recall(features, features, k=3, batch_size=64) == (1.0, 1.0)


def test_precision_recall_separate_mode_collapse_from_spread():
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(600, 2))
    collapsed = rng.normal(size=(600, 2)) * 0.05  # on the manifold, but covers little of it
    far = rng.normal(size=(600, 2)) + 20.0
    precision, recall = precision_recall(reference, collapsed, batch_size=128)
    assert precision > 0.95 and recall < 0.3
    assert precision_recall(reference, far) == (0.0, 0.0)


def test_manifold_radii_are_kth_neighbour_distances_without_self():
    points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    # k = 1: nearest other point; k = 2: second nearest. Squared distances.
    assert np.allclose(manifold_radii(points, k=1, batch_size=2), [1, 1, 4, 9, 16])
    assert np.allclose(manifold_radii(points, k=2, batch_size=3), [9, 4, 9, 16, 49])
    with pytest.raises(MetricError, match="k must be"):
        manifold_radii(points, k=5)


def test_class_accuracy():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert class_accuracy(logits, np.array([0, 1, 2, 1])) == 0.75
    with pytest.raises(MetricError, match="labels"):
        class_accuracy(logits, np.array([0, 1, 2]))
    with pytest.raises(MetricError, match=r"\[0, 3\)"):
        class_accuracy(logits, np.array([0, 1, 2, 3]))
    # Class 1's two samples: one recognised, one taken for class 0; class 0 has none.
    assert per_class_accuracy(logits, np.array([0, 1, 2, 1])) == {0: 1.0, 1: 0.5, 2: 1.0}


def test_feature_statistics_rejects_bad_input():
    with pytest.raises(MetricError, match="NaN"):
        feature_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(MetricError, match="at least 2"):
        feature_statistics(np.zeros((1, 3)))


# ------------------------------------------------------------------------------------------------
# sample files


def test_npz_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5])
    path = write_npz(tmp_path / "samples.npz", torch.from_numpy(images), labels=labels)
    batch = read_npz(path)
    assert batch.images.dtype == np.uint8 and np.array_equal(batch.images, images)
    assert np.array_equal(batch.labels, labels)
    with np.load(path, allow_pickle=False) as data:  # ADM layout: arr_0 uint8 NHWC, arr_1 labels
        assert sorted(data.files) == ["arr_0", "arr_1"]
    grey = rng.integers(0, 256, size=(2, 4, 4), dtype=np.uint8)
    unlabelled = read_samples(write_npz(tmp_path / "grey.npz", grey))
    assert unlabelled.labels is None and np.array_equal(unlabelled.images[..., 0], grey)


def test_npz_rejects_wrong_inputs(tmp_path):
    with pytest.raises(SampleFileError, match="uint8"):
        write_npz(tmp_path / "bad.npz", np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(SampleFileError, match="labels"):
        write_npz(tmp_path / "bad.npz", np.zeros((2, 4, 4, 3), dtype=np.uint8), labels=np.zeros(3, dtype=int))
    np.savez(tmp_path / "other.npz", images=np.zeros((1, 2, 2, 3), dtype=np.uint8))
    with pytest.raises(SampleFileError, match="arr_0"):
        read_npz(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(SampleFileError, match="not a readable"):
        read_npz(tmp_path / "junk.npz")


def test_image_folder_reads_png_and_jpeg(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, size=(3, 5, 6, 3), dtype=np.uint8)
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{index:03d}.png")
    smooth = np.broadcast_to(np.linspace(0, 250, 6, dtype=np.uint8)[None, :, None], (5, 6, 3)).copy()
    Image.fromarray(smooth).save(tmp_path / "zzz.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("ignored")
    batch = read_image_folder(tmp_path)
    assert batch.images.shape == (4, 5, 6, 3)
    assert np.array_equal(batch.images[:3], images)  # PNG is lossless; files in name order
    assert np.abs(batch.images[3].astype(int) - smooth).mean() < 8  # JPEG is lossy but close
    assert read_image_folder(tmp_path, channels=1).images.shape == (4, 5, 6, 1)
    Image.fromarray(images[0][:4]).save(tmp_path / "small.png")
    with pytest.raises(SampleFileError, match="differ in size"):
        read_samples(tmp_path)
