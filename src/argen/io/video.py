"""Video files: animated GIFs and PNG strips of uint8 videos; clips decoded from .avi/.mp4/.webm/.mkv (PyAV).

A video is uint8 (T, C, H, W) with C in {1, 3}; a batch of videos is (N, T, C, H, W). A batch is shown as
an animated GIF whose frame t is the grid of every video's frame t, and as a PNG strip with one row per
video and its frames from left to right.

Pillow's GIF writer merges identical consecutive frames (adding up their durations), so a video that
stands still for a while reads back with fewer frames; every other video round-trips its frame count,
and grey videos their pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence, UnidentifiedImageError

from argen.io.images import make_grid, save_grid


class VideoFileError(ValueError):
    """A video file that cannot be read or written; the message names it and says what was expected."""


def _as_videos(videos: torch.Tensor | np.ndarray) -> torch.Tensor:
    videos = torch.as_tensor(videos)
    if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[2] not in (1, 3) or 0 in videos.shape:
        raise VideoFileError(f"expected uint8 videos (N, T, 1|3, H, W), got {videos.dtype} {tuple(videos.shape)}")
    return videos


def _picture(frame: np.ndarray, scale: int) -> Image.Image:
    """(H, W, C) uint8 -> a PIL image, enlarged `scale` times (nearest: tiny frames stay sharp)."""
    picture = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def _prepared(path: str | Path, scale: int) -> Path:
    if scale < 1:
        raise VideoFileError(f"scale must be >= 1, got {scale}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_gif(
    videos: torch.Tensor | np.ndarray, path: str | Path, columns: int = 8, fps: float = 4.0, scale: int = 1
) -> Path:
    """An animated GIF (looping) of uint8 videos (N, T, C, H, W): frame t is the grid of every frame t."""
    videos = _as_videos(videos)
    if fps <= 0:
        raise VideoFileError(f"fps must be > 0, got {fps}")
    path = _prepared(path, scale)
    frames = [_picture(make_grid(videos[:, t], columns), scale) for t in range(videos.shape[1])]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return path


def save_strip(videos: torch.Tensor | np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """A PNG of uint8 videos (N, T, C, H, W): one row per video, frames from left to right."""
    videos = _as_videos(videos)
    path = _prepared(path, scale)
    _picture(make_grid(videos.flatten(0, 1), columns=videos.shape[1]), scale).save(path)
    return path


def save_preview(images: torch.Tensor, path: str | Path, columns: int = 10, fps: float = 4.0) -> Path:
    """uint8 images (N, C, H, W) as a grid at `path` (PNG); videos (N, T, C, H, W) as a strip per video there and
    an animated grid beside it (.gif). Pixels doubled. Returns the PNG."""
    path = Path(path)
    if images.ndim == 5:
        save_gif(images, path.with_suffix(".gif"), columns=columns, fps=fps, scale=2)
        return save_strip(images, path, scale=2)
    return save_grid(images, path, columns=columns, scale=2)


def read_gif(path: str | Path, channels: int = 1) -> np.ndarray:
    """The frames of an (animated) GIF as uint8 (T, channels, H, W); channels 1 (grey) or 3 (RGB)."""
    if channels not in (1, 3):
        raise VideoFileError(f"channels must be 1 or 3, got {channels}")
    path = Path(path)
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as picture:
            frames = [np.asarray(frame.convert(mode), dtype=np.uint8) for frame in ImageSequence.Iterator(picture)]
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise VideoFileError(f"{path}: unreadable GIF ({error})") from error
    video = np.stack(frames)  # (T, H, W) or (T, H, W, 3)
    return video[:, None] if channels == 1 else video.transpose(0, 3, 1, 2)


def video_frame_count(path: str | Path) -> int:
    """The number of frames the file's video stream declares (0 where the container does not say)."""
    import av

    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames) if container.streams.video else 0
    except (av.FFmpegError, OSError):
        return 0  # read_video_clip then says what is wrong with it


def read_video_clip(path: str | Path, frames: int, stride: int = 1, channels: int = 1, start: int = 0) -> np.ndarray:
    """A clip of a video file (any container and codec FFmpeg reads, through PyAV) as uint8 (frames, channels,
    H, W): frames start, start + stride, ...; decoding stops at the clip's last frame. Raises VideoFileError
    saying what is wrong with the file, without its name (the datasets' messages lead with it)."""
    import av  # FFmpeg's libraries load only when a video file is read

    if frames < 1 or stride < 1 or channels not in (1, 3):
        raise VideoFileError(f"need frames >= 1, stride >= 1 and channels 1 or 3, got {frames}, {stride}, {channels}")
    kept = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoFileError("no video stream")
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index >= start and (index - start) % stride == 0:
                    kept.append(frame.to_ndarray(format="gray" if channels == 1 else "rgb24"))
                    if len(kept) == frames:
                        break
    except (av.FFmpegError, OSError) as error:
        raise VideoFileError(f"FFmpeg cannot decode it: {error}") from error
    if len(kept) < frames:
        raise VideoFileError(
            f"too short: {len(kept)} of the {frames} frames a clip needs (data.video.frames="
            f"{frames}, stride {stride}: {(frames - 1) * stride + 1} frames of the file from frame "
            f"{start})"
        )
    video = np.stack(kept)  # (T, H, W) or (T, H, W, 3)
    return video[:, None] if channels == 1 else video.transpose(0, 3, 1, 2)
