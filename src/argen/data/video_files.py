"""`videofiles`: class-conditional clips decoded from video files (.avi, .mp4, .webm, .mkv) when their batch is
asked for, in DataLoader workers; the dataset holds only the file list.

Layout: UCF-101's `root/<class>/<video>.avi`. Without a split file every video file under a class folder is read,
classes in sorted order. `data.video.split_file` (UCF-101's `ucfTrainTestlist/trainlist01.txt`, relative to the
root or absolute; the test split reads testlist01.txt beside it) names the videos instead, one
`Class/v_Class_g08_c01.avi [label]` line each; `classInd.txt` beside it (`1 ApplyEyeMakeup` lines) numbers the
classes, and a line's label, when given, must agree with it. A clip is frames 0, stride, 2 * stride, ...
(data.video.frames of them) of its video, or with data.video.random_start (training only) the same span from a
random first frame, drawn per clip from the batch's seeded torch RNG (a resumed run draws the same), each frame
centre-cropped to a square and resized to image_size (the shorter side becomes image_size). A file that cannot be
decoded or is too short is skipped with a warning naming it and a count, or is an error with
data.on_bad_image=error (argen.data.image_folder.LazyFileDataset).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from argen.data.datasets import DataError
from argen.data.image_folder import LazyFileDataset
from argen.data.transforms import to_resolution
from argen.io.video import VideoFileError, read_video_clip, video_frame_count

VIDEO_SUFFIXES = {".avi", ".mp4", ".webm", ".mkv"}
CLASS_INDEX = "classInd.txt"


def read_class_index(path: Path) -> tuple[str, ...]:
    """Class names in the order of UCF-101's classInd.txt (`1 ApplyEyeMakeup` lines, numbered from 1)."""
    numbered = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit():
            raise DataError(f"{path}:{number}: expected `<number> <class>`, got {line!r}")
        numbered[int(fields[0])] = fields[1]
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise DataError(f"{path}: the classes must be numbered 1 to {len(numbered)}, each once")
    return tuple(numbered[number] for number in range(1, len(numbered) + 1))


def read_split_file(path: Path, class_names: tuple[str, ...], numbered: bool) -> tuple[list[str], list[int]]:
    """The videos a UCF-101 split list names (`Class/name.avi [label]` lines) as (relative paths, labels); a label
    given on a line must be the class's number in `class_names` (from 1) when they come from classInd.txt."""
    files, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        name = fields[0]
        class_name = name.split("/")[0]
        if len(fields) > 2 or "/" not in name or class_name not in class_names:
            raise DataError(f"{path}:{number}: expected `<class>/<video> [label]` with a known class, got {line!r}")
        label = class_names.index(class_name)
        if numbered and len(fields) == 2 and fields[1] != str(label + 1):
            raise DataError(
                f"{path}:{number}: label {fields[1]} but {class_name} is class {label + 1} in {CLASS_INDEX}"
            )
        files.append(name)
        labels.append(label)
    if not files:
        raise DataError(f"{path} names no video")
    return files, labels


def split_list(split_file: str, split: str) -> str:
    """The list of `split`: data.video.split_file names one of UCF-101's pair (trainlistNN.txt, testlistNN.txt), the
    other split reads its sibling, so one tokenizer config serves `argen tokenize --split train` and `--split test`."""
    name = Path(split_file).name
    if "trainlist" not in name and "testlist" not in name:
        raise DataError(
            f"data.video.split_file={split_file}: name it as UCF-101 does (trainlist01.txt, beside "
            f"testlist01.txt) so that each split finds its list"
        )
    wanted, other = ("trainlist", "testlist") if split == "train" else ("testlist", "trainlist")
    return str(Path(split_file).with_name(name.replace(other, wanted)))


def scan_video_files(root: Path, split_file: str = "") -> tuple[list[str], list[int], tuple[str, ...]]:
    """(paths relative to root, labels, class names) of `root/<class>/<video>`, or of the videos a split file
    names."""
    if not root.is_dir():
        raise DataError(f"video folder {root} does not exist")
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    classes = tuple(
        name
        for name in folders
        if any(Path(entry).suffix.lower() in VIDEO_SUFFIXES for entry in os.listdir(root / name))
    )
    if split_file:
        listing = Path(split_file) if Path(split_file).is_absolute() else root / split_file
        if not listing.is_file():
            raise DataError(f"data.video.split_file: {listing} does not exist")
        index = listing.parent / CLASS_INDEX
        class_names = read_class_index(index) if index.is_file() else classes
        files, labels = read_split_file(listing, class_names, numbered=index.is_file())
        return files, labels, class_names
    files, labels = [], []
    if not classes:
        raise DataError(
            f"{root} has no class folder holding videos (expected {root}/<class>/<video>.avi; "
            f"{', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    for label, name in enumerate(classes):
        names = sorted(entry for entry in os.listdir(root / name) if Path(entry).suffix.lower() in VIDEO_SUFFIXES)
        files += [f"{name}/{entry}" for entry in names]
        labels += [label] * len(names)
    return files, labels, classes


class VideoFileDataset(LazyFileDataset):
    """Clips (T, C, size, size) of the video files of `root` (see the module); `batch` returns {"images":
    (B, T, C, size, size) in [-1, 1], "labels", "readable"}, with `flip` each clip mirrored with probability 1/2."""

    kind = "video"

    def __init__(
        self,
        root: str | Path,
        frames: int,
        stride: int,
        size: int,
        channels: int,
        split_file: str = "",
        flip: bool = False,
        on_bad_image: str = "skip",
        limit: int = 0,
        random_start: bool = False,
    ):
        """`split_file`: the list to read (see `split_list`), or empty for every video under `root`."""
        if frames < 1 or stride < 1:
            raise DataError(f"data.video.frames and data.video.stride must be >= 1, got {frames} and {stride}")
        if channels not in (1, 3):
            raise DataError(f"data.channels must be 1 or 3, got {channels}")
        root = Path(root)
        files, labels, classes = scan_video_files(root, split_file)
        if limit:
            files, labels = files[:limit], labels[:limit]
        super().__init__(root, files, labels, classes, flip, on_bad_image)
        self.frames, self.stride, self.size, self.channels = frames, stride, size, channels
        self.random_start = random_start

    def decode(self, path: Path) -> torch.Tensor:
        start = 0
        if self.random_start:  # any first frame whose span fits the frames the container declares
            spare = video_frame_count(path) - (self.frames - 1) * self.stride - 1
            start = int(torch.randint(0, spare + 1, ())) if spare > 0 else 0
        try:
            clip = read_video_clip(path, self.frames, self.stride, self.channels, start)
        except VideoFileError:
            if not start:
                raise
            clip = read_video_clip(path, self.frames, self.stride, self.channels)  # it declared more than it has
        return torch.from_numpy(to_resolution(clip, self.size, mode="resize"))

    def frames_view(self) -> ClipFrames:
        """Every frame of every clip as an image (for an image tokenizer)."""
        return ClipFrames(self)


class ClipFrames:
    """The frames of a VideoFileDataset's clips as images: sample i is frame i % T of clip i // T. A batch decodes
    each clip it touches once."""

    def __init__(self, clips: VideoFileDataset):
        self.clips, self.class_names = clips, clips.class_names

    def __len__(self) -> int:
        return len(self.clips) * self.clips.frames

    @property
    def num_classes(self) -> int:
        return self.clips.num_classes

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        clips, positions = indices // self.clips.frames, indices % self.clips.frames
        unique, inverse = clips.unique(return_inverse=True)
        batch = self.clips.batch(unique)
        return {
            "images": batch["images"][inverse, positions],
            "labels": batch["labels"][inverse],
            "readable": batch["readable"][inverse],
        }
