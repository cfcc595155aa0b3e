"""A tiny UCF-101-format folder written with PyAV: two classes of short clips of a bright square moving right."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

CLASSES = ("Jump", "Run")  # classInd numbers them 1 and 2
SIZE = 32
STEP = 1  # pixels the square moves per frame


def moving_square(frames: int, row: int, size: int = SIZE) -> np.ndarray:
    """uint8 RGB frames (T, size, size, 3): an 8-pixel white square at `row`, moving STEP pixels right per frame."""
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        video[t, row : row + 8, 2 + STEP * t : 10 + STEP * t] = 255
    return video


# The codec a container gets and its options for a nearly lossless video (the square stays where it was drawn):
# MPEG-4 Part 2 as in UCF-101's .avi files, VP9 in .webm (which holds only VP8/VP9/AV1).
CODECS = {".webm": ("libvpx-vp9", {"crf": "4", "b": "0"})}
MPEG4 = ("mpeg4", {"qscale": "2"})


def write_video(path: Path, video: np.ndarray) -> Path:
    """RGB frames (T, H, W, 3) as a video in the container the suffix names (.avi, .mp4, .webm, .mkv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec, options = CODECS.get(path.suffix, MPEG4)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        stream.options = options
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_ucf(root: Path, frames: int = 20) -> Path:
    """root/<class>/v_<class>_g0<g>_c01.avi for groups 1-3 of both classes (the square's row tells the class), and
    root/ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt: groups 1-2 train, group 3 tests."""
    for label, name in enumerate(CLASSES):
        for group in (1, 2, 3):
            write_video(root / name / f"v_{name}_g0{group}_c01.avi", moving_square(frames, row=4 + 16 * label))
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(CLASSES)))
    (lists / "trainlist01.txt").write_text(
        "".join(f"{name}/v_{name}_g0{g}_c01.avi {i + 1}\n" for i, name in enumerate(CLASSES) for g in (1, 2))
    )
    (lists / "testlist01.txt").write_text("".join(f"{name}/v_{name}_g03_c01.avi\n" for name in CLASSES))
    return root
