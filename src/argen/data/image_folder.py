"""ImageFolder read lazily: a file index in memory, each image decoded, augmented and resized when its batch is
asked for (in DataLoader workers during training), so memory does not grow with the number of images."""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from argen.config import DataConfig
from argen.data.datasets import IMAGE_SUFFIXES, DataError
from argen.data.transforms import random_crop_box, random_flip, to_unit_range

MAX_BAD_IN_A_ROW = 100  # a run of unreadable files this long is a broken folder, not a few bad images
MAX_IMAGE_PIXELS = DataConfig.max_image_pixels  # 8192 x 8192 (PIL refuses more than 2 x 89 M pixels itself)


class ImageTooLarge(ValueError):
    """An image over the pixel limit: a decompression bomb, or simply more than the run should decode."""


def _unreadable() -> tuple[type[BaseException], ...]:
    """What decoding a corrupt, truncated or oversized file raises (PIL's DecompressionBombError is no OSError)."""
    from PIL import Image

    return OSError, ValueError, SyntaxError, Image.DecompressionBombError


UNREADABLE = _unreadable()


def decode_image(
    source: str | Path | BinaryIO, size: int, channels: int, crop_min: float = 1.0, max_pixels: int = MAX_IMAGE_PIXELS
) -> torch.Tensor:
    """An encoded image as uint8 (C, size, size): cropped to a square (centred, or LlamaGen's random crop with
    `crop_min` < 1) and resized (bicubic). Raises one of UNREADABLE for a file PIL cannot decode and
    ImageTooLarge for one of more than `max_pixels` pixels (read from its header, before decoding)."""
    from PIL import Image

    with Image.open(source) as image:
        if image.width * image.height > max_pixels:
            raise ImageTooLarge(
                f"{image.width}x{image.height} pixels, over the limit of {max_pixels} (data.max_image_pixels)"
            )
        # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the output: far less work.
        image.draft("L" if channels == 1 else "RGB", (round(size / crop_min),) * 2)
        image = image.convert("L" if channels == 1 else "RGB")
        if crop_min < 1:
            top, left, side = random_crop_box(image.height, image.width, crop_min)
        else:
            side = min(image.height, image.width)
            top, left = (image.height - side) // 2, (image.width - side) // 2
        array = np.array(
            image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side)), dtype=np.uint8
        )  # a writable copy: torch refuses PIL's read-only buffer
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def _entries(folder: Path, want: str) -> list[os.DirEntry]:
    """The entries of `folder` that are directories (want="dir") or files; one that cannot be followed (a symlink
    loop, a dangling or unreadable link) is skipped with a warning."""
    chosen, broken = [], []
    for entry in os.scandir(folder):
        try:
            if entry.is_dir() if want == "dir" else entry.is_file():
                chosen.append(entry)
        except OSError:
            broken.append(entry.name)
    if broken:
        warnings.warn(
            f"{folder}: skipped {len(broken)} entr{'y' if len(broken) == 1 else 'ies'} that cannot be "
            f"followed (symlink loops or unreadable links), e.g. {broken[0]}",
            stacklevel=3,
        )
    return chosen


def scan_image_folder(folder: Path) -> tuple[list[str], list[int], tuple[str, ...]]:
    """The images of `folder/<class>/` as (paths relative to folder, labels, class names), in sorted order."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    classes = sorted(entry.name for entry in _entries(folder, "dir"))
    if not classes:
        raise DataError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>.jpg)")
    files, labels = [], []
    for label, name in enumerate(classes):
        names = sorted(
            entry.name for entry in _entries(folder / name, "file") if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
        )
        if not names:
            raise DataError(
                f"class folder {folder / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "add some or remove the folder"
            )
        files += [f"{name}/{file}" for file in names]
        labels += [label] * len(names)
    return files, labels, tuple(classes)


class LazyFileDataset(ABC):
    """Files `folder/<files[i]>` with labels, each decoded (`decode`, by the subclass) when its batch is asked for;
    `batch` returns {"images" in [-1, 1], "labels", "readable"}.

    An unreadable file is an error with on_bad_image="error"; with "skip" it is replaced in its batch by the next
    readable file (the batch keeps its size, `readable` marks it False) and warned about once per process, with a
    count.
    """

    kind = "file"  # what a file holds, for the messages

    def __init__(
        self,
        folder: Path,
        files: list[str],
        labels: list[int],
        class_names: tuple[str, ...],
        flip: bool,
        on_bad_image: str,
    ):
        if on_bad_image not in ("skip", "error"):
            raise DataError(f"on_bad_image must be 'skip' or 'error', got {on_bad_image!r}")
        self.folder, self.flip, self.on_bad_image = folder, flip, on_bad_image
        # One bytes array, not a list of str: forked workers touching a million Python objects' reference counts
        # would copy every page of them.
        self.files = np.array([file.encode() for file in files])
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.class_names = class_names
        self.bad: set[int] = set()  # the unreadable files this process met

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def decode(self, path: Path) -> torch.Tensor:
        """A file as uint8; raises one of UNREADABLE when it cannot be decoded."""

    def read(self, index: int) -> torch.Tensor | None:
        """File `index` decoded; None when it cannot be."""
        path = self.folder / self.files[index].decode()
        try:
            return self.decode(path)
        except UNREADABLE as error:
            if self.on_bad_image == "error":
                raise DataError(
                    f"{path}: unreadable {self.kind} ({error}); data.on_bad_image=skip skips such {self.kind}s"
                )
            if index not in self.bad:
                self.bad.add(index)
                warnings.warn(
                    f"{path}: unreadable {self.kind}, skipped ({len(self.bad)} so far in this process): {error}",
                    stacklevel=2,
                )
            return None

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        images, labels, readable = [], [], []
        for index in indices.tolist():
            image, source = self.read(index), index
            while image is None and source - index < MAX_BAD_IN_A_ROW:
                source = (source + 1) % len(self)
                image = self.read(source)
            if image is None:
                raise DataError(
                    f"{self.folder}: {MAX_BAD_IN_A_ROW} unreadable {self.kind}s in a row after "
                    f"{self.files[index].decode()}"
                )
            images.append(image)
            labels.append(self.labels[source])
            readable.append(source == index)
        images = to_unit_range(torch.stack(images))
        if self.flip:
            images = random_flip(images)
        return {"images": images, "labels": torch.stack(labels), "readable": torch.tensor(readable)}


class ImageFolderDataset(LazyFileDataset):
    """`folder/<class>/<image>`, classes in sorted order, read lazily (LazyFileDataset). Every image is cropped to a
    square (centred, or LlamaGen's random crop with `crop_min` < 1) and resized to `size` (bicubic)."""

    kind = "image"

    def __init__(
        self,
        folder: str | Path,
        size: int,
        channels: int,
        flip: bool = False,
        crop_min: float = 1.0,
        on_bad_image: str = "skip",
        limit: int = 0,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ):
        folder = Path(folder)
        if channels not in (1, 3):
            raise DataError(f"data.channels must be 1 or 3, got {channels}")
        files, labels, classes = scan_image_folder(folder)
        if limit:
            files, labels = files[:limit], labels[:limit]
        super().__init__(folder, files, labels, classes, flip, on_bad_image)
        self.size, self.channels, self.crop_min, self.max_pixels = size, channels, crop_min, max_pixels

    def decode(self, path: Path) -> torch.Tensor:
        return decode_image(path, self.size, self.channels, self.crop_min, self.max_pixels)
