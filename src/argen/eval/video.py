"""Video metrics from per-frame features of an image feature extractor (argen.eval.features).

- Frame FID: the Frechet distance between the "pool" features of every frame of the generated videos and
  of every frame of the real videos. It measures what single frames look like, not motion.
- Temporal distance: the mean Euclidean distance between the "pool" features of consecutive frames of a
  video, averaged over videos; reported for the generated and the real videos and as the gap
  (generated - real). Videos that stand still score below the real ones; flicker, or an object that
  changes identity from frame to frame, scores above them.
- Video class accuracy: the class of a video is the argmax of its frames' mean logits (frame accuracy,
  the share of single frames classified as the video's class, is reported beside).

- FVD (argen.eval.i3d), when an I3D weight file is given: the standard protocol (16 frames at 224 x 224, I3D's
  Kinetics-400 logits), comparable with published FVDs when the real set is the benchmark's. The frame
  metrics above depend on the extractor and are not comparable with published video metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from argen.data.transforms import to_uint8
from argen.eval.features import FeatureExtractor
from argen.eval.i3d import FVD_FRAMES, I3DFeatures, fvd
from argen.eval.metrics import MetricError, class_accuracy, feature_statistics, fid_bootstrap_std, fid_from_features
from argen.eval.npz import write_npz
from argen.io.video import save_gif, save_strip


def _check_videos(videos: np.ndarray, name: str) -> np.ndarray:
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] not in (1, 3) or videos.shape[1] < 2:
        raise MetricError(
            f"{name} must be uint8 videos (N, T, H, W, 1|3) with T >= 2, got {videos.dtype} {videos.shape}"
        )
    return videos


def frame_features(videos: np.ndarray, extractor: FeatureExtractor) -> dict[str, np.ndarray]:
    """Features of every frame of uint8 videos (N, T, H, W, C): each output (N, T, ...)."""
    videos = _check_videos(videos, "videos")
    count, frames = videos.shape[:2]
    flat = extractor.features(videos.reshape(count * frames, *videos.shape[2:]))
    return {key: value.reshape(count, frames, *value.shape[1:]) for key, value in flat.items()}


def temporal_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance between the features (N, T, D) of consecutive frames."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 3 or features.shape[1] < 2:
        raise MetricError(f"features must be (N, T, D) with T >= 2, got {features.shape}")
    return float(np.linalg.norm(np.diff(features, axis=1), axis=-1).mean())


def video_class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of videos whose mean frame logits (N, T, C) pick their label (N,)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 3:
        raise MetricError(f"logits must be (N, T, C), got {logits.shape}")
    return class_accuracy(logits.mean(axis=1), labels)


def evaluate_videos(
    samples: np.ndarray,
    real: np.ndarray,
    extractor: FeatureExtractor,
    labels: np.ndarray | None = None,
    i3d: I3DFeatures | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Frame FID and temporal distances of uint8 videos `samples` against `real` (both (N, T, H, W, C), one T),
    with `labels` (the classes the samples were generated for) their class accuracies, and with `i3d` their FVD.
    With `bootstrap` >= 2 rounds, also the standard deviations of frame FID and video accuracy over resamples of
    the sample videos (whole videos, with replacement; seeded)."""
    samples, real = _check_videos(samples, "samples"), _check_videos(real, "real videos")
    if samples.shape[1] != real.shape[1]:
        raise MetricError(
            f"the samples have {samples.shape[1]} frames per video but the real videos "
            f"{real.shape[1]}; compare videos of one length"
        )
    generated, reference = frame_features(samples, extractor), frame_features(real, extractor)
    pool, real_pool = generated["pool"], reference["pool"]
    moving, real_moving = temporal_distance(pool), temporal_distance(real_pool)
    result: dict[str, Any] = {
        "videos": len(samples),
        "frames": samples.shape[1],
        "real_videos": len(real),
        "frame_fid": fid_from_features(pool.reshape(-1, pool.shape[-1]), real_pool.reshape(-1, pool.shape[-1])),
        "temporal_distance": moving,
        "real_temporal_distance": real_moving,
        "temporal_distance_gap": moving - real_moving,
        "extractor": extractor.name,
        "checksum": extractor.checksum,
    }
    if bootstrap:
        result["frame_fid_bootstrap_std"] = fid_bootstrap_std(
            pool, *feature_statistics(real_pool.reshape(-1, pool.shape[-1])), bootstrap, seed
        )
    if i3d is not None:
        result.update(
            fvd=fvd(samples, real, i3d),
            i3d_checksum=i3d.checksum,
            fvd_protocol=(f"the first {FVD_FRAMES} frames at {i3d.size}x{i3d.size}, I3D Kinetics-400 logits"),
        )
    if labels is not None:
        logits = generated["logits"]
        result["video_class_accuracy"] = video_class_accuracy(logits, labels)
        if bootstrap:
            correct = np.asarray(logits, dtype=np.float64).mean(axis=1).argmax(axis=-1) == np.asarray(labels)
            draws = np.random.default_rng(seed).integers(0, len(correct), (bootstrap, len(correct)))
            result["video_class_accuracy_bootstrap_std"] = float(np.std(correct[draws].mean(axis=1), ddof=1))
        result["frame_class_accuracy"] = class_accuracy(
            logits.reshape(-1, logits.shape[-1]), np.repeat(np.asarray(labels), logits.shape[1])
        )
    return result


def write_real_videos(dataset: Any, out: str | Path, preview: int = 20, fps: float = 4.0, batch_size: int = 64) -> Path:
    """A video dataset (argen.data.video: in memory, or video files read batch by batch) as the real batch of
    `evaluate_videos`: a video .npz with labels, and a GIF and PNG strip of its first `preview` videos beside it.
    Unreadable video files are left out."""
    out = Path(out)
    videos, labels = [], []
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(torch.arange(start, min(start + batch_size, len(dataset))))
        readable = batch.get("readable", torch.ones(len(batch["labels"]), dtype=torch.bool))
        videos.append(to_uint8(batch["images"][readable]))
        labels.append(batch["labels"][readable])
    videos = torch.cat(videos)  # (N, T, C, H, W)
    write_npz(out, videos.permute(0, 1, 3, 4, 2).numpy(), torch.cat(labels).numpy(), video=True)
    shown = videos[:preview]
    save_gif(shown, out.with_suffix(".gif"), columns=10, fps=fps, scale=2)
    save_strip(shown, out.with_suffix(".png"), scale=2)
    return out
