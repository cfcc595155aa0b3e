"""Class-conditional video datasets held in memory as uint8 (N, T, C, H, W): moving sprites, folders of videos.

- `moving-<image dataset>` (moving-fashion-mnist, moving-digits, moving-synthetic, moving-idx): no download
  beyond the image dataset. Video i shows image i of the dataset (its class is the video's class) and
  `objects - 1` other images of the same class, resized to `sprite_size`, on a black `image_size` canvas.
  Each sprite moves in a straight line at `speed` pixels per frame and bounces off the borders, so it never
  leaves the canvas; overlaps keep the brighter pixel. Start positions and directions come from
  (seed, split): the same config always gives the same videos, and the two splits differ.
- `videofiles` (UCF-101, your own .avi/.mp4/.webm/.mkv files): read per batch, see argen.data.video_files.
- `videofolder` (your own frames or GIFs): `path/<class>/<video>/` folders of frame images (sorted by
  name) or `path/<class>/<video>.gif` animated GIFs. The first `frames` frames of each video are kept and
  resized (centre crop, bicubic) to `image_size`. A video that cannot be read, has fewer frames, or whose
  frames differ in size is skipped with a warning, or is an error with data.on_bad_image=error.

An image tokenizer trains on the frames (`frames_view()`, what `load_dataset` returns for these names), a causal
3D tokenizer on the clips; `argen tokenize` stores (T, h, w) token grids (T latent frames for a 3D tokenizer).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from argen.config import DataConfig
from argen.data.datasets import IMAGE_SUFFIXES, DataError, ImageDataset, load_image_dataset
from argen.data.transforms import random_flip, to_resolution, to_unit_range
from argen.data.video_files import VideoFileDataset, split_list
from argen.io.video import VideoFileError, read_gif

MOVING_PREFIX = "moving-"
VIDEO_FOLDER = "videofolder"
VIDEO_FILES = "videofiles"
SPLIT_STREAMS = {"train": 0, "test": 1}


def is_video_dataset(name: str) -> bool:
    return name.startswith(MOVING_PREFIX) or name in (VIDEO_FOLDER, VIDEO_FILES)


@dataclass
class VideoDataset:
    """Videos (N, T, C, H, W) uint8 and labels (N,) int64; with `flip` a batch mirrors each video with
    probability 1/2."""

    videos: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    flip: bool = False

    def __post_init__(self) -> None:
        if self.videos.dtype != torch.uint8 or self.videos.ndim != 5:
            raise DataError(f"videos must be uint8 (N, T, C, H, W), got {self.videos.dtype} {tuple(self.videos.shape)}")
        if len(self.videos) != len(self.labels):
            raise DataError(f"{len(self.videos)} videos but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"images": (B, T, C, H, W) float in [-1, 1], "labels": (B,)}."""
        videos = to_unit_range(self.videos[indices])
        return {"images": random_flip(videos) if self.flip else videos, "labels": self.labels[indices]}

    def frames_view(self) -> ImageDataset:
        """Every frame as an image (labelled with its video's class), e.g. to train an image tokenizer."""
        frames_per_video = self.videos.shape[1]
        return ImageDataset(
            self.videos.flatten(0, 1), self.labels.repeat_interleave(frames_per_video), self.class_names, flip=self.flip
        )


# ------------------------------------------------------------------------------------------------
# moving sprites


def bounce(start: np.ndarray, velocity: np.ndarray, frames: int, extent: float) -> np.ndarray:
    """(..., frames) positions in [0, extent] of points moving from `start` at `velocity` per frame,
    reflected at 0 and `extent` (a reflected line is a triangle wave of period 2 * extent)."""
    travelled = start[..., None] + velocity[..., None] * np.arange(frames)
    if extent == 0:
        return np.zeros_like(travelled)
    folded = np.mod(travelled, 2 * extent)
    return np.where(folded > extent, 2 * extent - folded, folded)


def moving_sprites(
    sprites: np.ndarray,
    labels: np.ndarray,
    frames: int,
    canvas: int,
    objects: int = 1,
    speed: float = 2.0,
    seed: int | list[int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Videos of bouncing sprites: uint8 (M, T, C, canvas, canvas) and the sprites' top-left corners
    (M, objects, T, 2) as (row, col). Sprite 0 of video i is `sprites[i]`; the others are drawn at random
    from the sprites of the same label."""
    if sprites.dtype != np.uint8 or sprites.ndim != 4 or sprites.shape[2] != sprites.shape[3]:
        raise DataError(f"sprites must be square uint8 images (M, C, S, S), got {sprites.dtype} {sprites.shape}")
    count, channels, size = sprites.shape[0], sprites.shape[1], sprites.shape[2]
    if labels.shape != (count,):
        raise DataError(f"{count} sprites but labels of shape {labels.shape}")
    if frames < 1 or objects < 1 or speed < 0:
        raise DataError(f"need frames >= 1, objects >= 1 and speed >= 0, got {frames}, {objects}, {speed}")
    if size > canvas:
        raise DataError(
            f"sprites of {size} pixels do not fit on a {canvas}-pixel canvas; use a larger "
            f"data.image_size or a smaller data.video.sprite_size"
        )
    rng = np.random.default_rng(seed)
    chosen = np.repeat(np.arange(count)[:, None], objects, axis=1)  # (M, objects) sprite indices
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen[members, 1:] = rng.choice(members, size=(len(members), objects - 1))
    extent = canvas - size
    start = rng.uniform(0, extent, size=(count, objects, 2))
    angle = rng.uniform(0, 2 * math.pi, size=(count, objects))
    velocity = speed * np.stack([np.sin(angle), np.cos(angle)], axis=-1)  # (M, objects, 2)
    corners = np.rint(bounce(start, velocity, frames, extent)).astype(np.int64).transpose(0, 1, 3, 2)
    videos = np.zeros((count, frames, canvas, canvas, channels), dtype=np.uint8)  # channels last to paste
    video = np.arange(count)[:, None, None]
    offsets = np.arange(size)
    for obj in range(objects):
        sprite = sprites[chosen[:, obj]].transpose(0, 2, 3, 1)  # (M, S, S, C)
        for t in range(frames):
            rows = (corners[:, obj, t, 0, None] + offsets)[:, :, None]  # (M, S, 1)
            cols = (corners[:, obj, t, 1, None] + offsets)[:, None, :]  # (M, 1, S)
            videos[video, t, rows, cols] = np.maximum(videos[video, t, rows, cols], sprite)
    return videos.transpose(0, 1, 4, 2, 3), corners


def _moving_dataset(config: DataConfig) -> VideoDataset:
    source = config.name[len(MOVING_PREFIX) :]
    if is_video_dataset(source):
        raise DataError(f"data.name={config.name}: the sprites must come from an image dataset, not {source!r}")
    video = config.video
    if video.sprite_size < 1:
        raise DataError(f"data.video.sprite_size must be >= 1, got {video.sprite_size}")
    sprite_config = dataclasses.replace(config, name=source, image_size=video.sprite_size, pad_to=0, flip=False)
    sprites = load_image_dataset(sprite_config, training=False)
    videos, _ = moving_sprites(
        sprites.images.numpy(),
        sprites.labels.numpy(),
        video.frames,
        config.image_size,
        video.objects,
        video.speed,
        seed=[video.seed, SPLIT_STREAMS[config.split]],
    )
    return VideoDataset(torch.from_numpy(np.ascontiguousarray(videos)), sprites.labels, sprites.class_names)


# ------------------------------------------------------------------------------------------------
# folders of videos


def read_video(path: str | Path, channels: int = 1) -> np.ndarray:
    """One video as uint8 (T, channels, H, W): a folder of frame images (sorted by name) or an animated GIF."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_file():
        try:
            return read_gif(path, channels)
        except VideoFileError as error:
            raise DataError(str(error)) from error
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{path}: no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    mode = "L" if channels == 1 else "RGB"
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frame = np.asarray(image.convert(mode), dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise DataError(f"{file}: unreadable frame ({error})") from error
        if frames and frame.shape != frames[0].shape:
            raise DataError(
                f"{file}: frame of {frame.shape[1]}x{frame.shape[0]} pixels, but {files[0].name} "
                f"has {frames[0].shape[1]}x{frames[0].shape[0]}; all frames of a video need one size"
            )
        frames.append(frame)
    video = np.stack(frames)
    return video[:, None] if channels == 1 else video.transpose(0, 3, 1, 2)


def load_video_folder(
    folder: str | Path, frames: int, size: int, channels: int, on_bad_video: str = "skip"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """uint8 videos (N, frames, channels, size, size), labels and class names from `folder/<class>/<video>`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"video folder {folder} does not exist")
    if on_bad_video not in ("skip", "error"):
        raise DataError(f"on_bad_image must be 'skip' or 'error', got {on_bad_video!r}")
    if frames < 1:
        raise DataError(f"data.video.frames must be >= 1, got {frames}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(
            f"{folder} has no class sub-folders (expected {folder}/<class>/<video>/<frame>.png "
            f"or {folder}/<class>/<video>.gif)"
        )
    videos, labels, bad = [], [], []
    for label, name in enumerate(classes):
        for entry in sorted((folder / name).iterdir()):
            if not (entry.is_dir() or entry.suffix.lower() == ".gif"):
                continue
            try:
                video = read_video(entry, channels)
                if len(video) < frames:
                    raise DataError(f"{entry}: {len(video)} frames, fewer than data.video.frames={frames}")
            except DataError as error:
                if on_bad_video == "error":
                    raise
                bad.append(error)
                continue
            videos.append(to_resolution(video[:frames], size, mode="resize"))
            labels.append(label)
    if bad:
        warnings.warn(f"{folder}: skipped {len(bad)} bad video(s), e.g. {bad[0]}", stacklevel=2)
    if not videos:
        raise DataError(f"{folder}: no usable videos in {len(classes)} class folders")
    return np.stack(videos), np.asarray(labels, dtype=np.int64), tuple(classes)


# ------------------------------------------------------------------------------------------------


def load_video_dataset(config: DataConfig, training: bool = False) -> VideoDataset | VideoFileDataset:
    """The video dataset named by `config`: T = data.video.frames frames of image_size, `channels` channels;
    mirrored at random when `training` with data.flip."""
    if config.split not in SPLIT_STREAMS:
        raise DataError(f"split must be 'train' or 'test', got {config.split!r}")
    flip = config.flip and training
    if config.name == VIDEO_FILES:
        if not config.path:
            raise DataError("data.name=videofiles needs data.path (one sub-folder of video files per class)")
        listing = split_list(config.video.split_file, config.split) if config.video.split_file else ""
        return VideoFileDataset(
            config.path,
            config.video.frames,
            config.video.stride,
            config.image_size,
            config.channels,
            listing,
            flip,
            config.on_bad_image,
            config.limit,
            random_start=config.video.random_start and training,
        )
    if config.name.startswith(MOVING_PREFIX):
        return dataclasses.replace(_moving_dataset(config), flip=flip)
    if config.name == VIDEO_FOLDER:
        if not config.path:
            raise DataError("data.name=videofolder needs data.path (one sub-folder per class)")
        videos, labels, class_names = load_video_folder(
            config.path, config.video.frames, config.image_size, config.channels, config.on_bad_image
        )
        if config.limit:
            videos, labels = videos[: config.limit], labels[: config.limit]
        return VideoDataset(torch.from_numpy(videos), torch.from_numpy(labels), class_names, flip)
    raise DataError(
        f"{config.name!r} is not a video dataset; video datasets: {MOVING_PREFIX}<image dataset>, "
        f"{VIDEO_FOLDER}, {VIDEO_FILES}"
    )
