"""Sample batches on disk: ADM-style `.npz` files and folders of PNG/JPEG images.

An ADM sample batch (the format of guided-diffusion's and LlamaGen's evaluators) is an uncompressed
`.npz` whose `arr_0` holds uint8 images (N, H, W, C) in [0, 255]; class-conditional samplers add the
labels as `arr_1`. Files are read with allow_pickle=False, so a batch can never carry code. A video batch
is the same file with uint8 videos (N, T, H, W, C) in `arr_0` (`video=True`).

Batches too large for one process's memory are written chunk by chunk (`write_npz_chunks`) and read a slice at
a time (`open_npz_images`: a memory map into the zip archive, whose entries numpy stores uncompressed).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from argen.io.checkpoint import atomic_write

IMAGES_KEY = "arr_0"
LABELS_KEY = "arr_1"
IMAGE_FILE_SUFFIXES = (".png", ".jpg", ".jpeg")


class SampleFileError(ValueError):
    """A sample file or folder that cannot be read; the message names it and says what was expected."""


@dataclass
class SampleBatch:
    """uint8 images (N, H, W, C) (videos: (N, T, H, W, C)) and optional int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray | None = None


def _check_images(images: np.ndarray | torch.Tensor, where: str, video: bool = False) -> np.ndarray:
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 3 and not video:  # (N, H, W) grey
        array = array[..., None]
    if array.dtype != np.uint8 or array.ndim != 4 + video or array.shape[-1] not in (1, 3):
        expected = "videos (N, T, H, W, 1|3)" if video else "images (N, H, W, 1|3)"
        hint = "; video batches are read by `argen eval video`" if array.ndim == 5 and not video else ""
        raise SampleFileError(f"{where}: expected uint8 {expected}, got {array.dtype} {array.shape}{hint}")
    return array


def _check_labels(labels: np.ndarray | torch.Tensor | None, count: int, where: str) -> np.ndarray | None:
    if labels is None:
        return None
    array = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer):
        raise SampleFileError(f"{where}: expected {count} integer labels, got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def write_npz(
    path: str | Path,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | None = None,
    video: bool = False,
) -> Path:
    """Write uint8 NHWC images (videos: NTHWC) (and labels) as an ADM sample batch; atomic."""
    path = Path(path)
    array = _check_images(images, str(path), video)
    arrays = {IMAGES_KEY: array}
    label_array = _check_labels(labels, len(array), str(path))
    if label_array is not None:
        arrays[LABELS_KEY] = label_array

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a handle, so numpy does not append ".npz" to the temp name
            np.savez(handle, **arrays)

    atomic_write(path, write)
    return path


def write_npz_chunks(
    path: str | Path, chunks: Iterable[np.ndarray], count: int, labels: np.ndarray | None = None, video: bool = False
) -> Path:
    """Write an ADM sample batch of `count` images (videos with `video`) given as uint8 NHWC chunks (and the
    labels), one chunk in memory at a time; the file is the one `write_npz` makes of the chunks joined. Atomic."""
    path = Path(path)
    label_array = _check_labels(labels, count, str(path))
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None or count < 1:
        raise SampleFileError(f"{path}: a sample batch needs at least one image, got {count} and no chunk")
    first = _check_images(first, str(path), video)
    item = first.shape[1:]
    header = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False, "shape": (count, *item)}

    def write(temporary: Path) -> None:
        nonlocal first
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            # force_zip64: the entry's size is unknown when it is opened and may pass 4 GiB.
            with archive.open(f"{IMAGES_KEY}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array_header_1_0(entry, header)
                written, chunk, first = 0, first, None  # only the chunk being written is held
                while chunk is not None:
                    if chunk.shape[1:] != item:
                        raise SampleFileError(f"{path}: a chunk of {chunk.shape[1:]} images among ones of {item}")
                    written += len(chunk)
                    if written > count:
                        raise SampleFileError(f"{path}: the chunks hold more than the {count} images announced")
                    entry.write(np.ascontiguousarray(chunk))
                    chunk = None  # released before the next one is made
                    chunk = next(chunks, None)
                    chunk = None if chunk is None else _check_images(chunk, str(path), video)
                if written != count:
                    raise SampleFileError(f"{path}: the chunks hold {written} images, {count} were announced")
            if label_array is not None:
                with archive.open(f"{LABELS_KEY}.npy", "w") as entry:
                    np.lib.format.write_array(entry, label_array, allow_pickle=False)

    atomic_write(path, write)
    return path


def open_npz(path: str | Path) -> SampleBatch:
    """An ADM sample batch whose images (`arr_0`) are a read-only memory map, so that a slice of them reads only
    that slice, and its labels; a compressed file cannot be mapped and is read whole (`read_npz`)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{IMAGES_KEY}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return read_npz(path)
        with open(path, "rb") as handle:
            # The entry's data follows its local header: 30 bytes, then its name and extra field.
            handle.seek(info.header_offset + 26)
            name_length, extra_length = struct.unpack("<HH", handle.read(4))
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"npy format version {version} is not supported")
            shape, fortran_order, dtype = read_header[version](handle)
            offset = handle.tell()
        if dtype != np.uint8 or fortran_order:
            raise SampleFileError(f"{path}: expected uint8 images in C order, got {dtype}")
        with np.load(path, allow_pickle=False) as data:
            labels = data[LABELS_KEY] if LABELS_KEY in data.files else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, SampleFileError):
            raise
        raise SampleFileError(f"{path} is not a readable .npz sample batch with '{IMAGES_KEY}': {error}") from error
    images = _check_images(np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=shape), str(path))
    if len(images) == 0:
        raise SampleFileError(f"{path} holds no images")
    return SampleBatch(images, _check_labels(labels, len(images), str(path)))


def read_npz(path: str | Path, video: bool = False) -> SampleBatch:
    """The images (`arr_0`; videos with `video`) and labels (`arr_1`, if present) of an ADM sample batch."""
    path = Path(path)
    if not path.is_file():
        raise SampleFileError(f"sample file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            if IMAGES_KEY not in data.files:
                raise SampleFileError(
                    f"{path} has no '{IMAGES_KEY}' array (found: {', '.join(data.files)}); "
                    "ADM sample batches keep uint8 NHWC images there"
                )
            images = _check_images(data[IMAGES_KEY], str(path), video)
            labels = data[LABELS_KEY] if LABELS_KEY in data.files else None
    except (OSError, ValueError) as error:
        if isinstance(error, SampleFileError):
            raise
        raise SampleFileError(f"{path} is not a readable .npz file: {error}") from error
    if len(images) == 0:
        raise SampleFileError(f"{path} holds no {'videos' if video else 'images'}")
    return SampleBatch(images, _check_labels(labels, len(images), str(path)))


def read_image_folder(folder: str | Path, channels: int | None = None) -> SampleBatch:
    """All PNG/JPEG files of `folder` (sorted by name) as uint8 NHWC; one size for all.

    `channels` 1 or 3 converts every image; None keeps grey when every file is grey, else RGB.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SampleFileError(f"image folder {folder} does not exist")
    if channels not in (None, 1, 3):
        raise SampleFileError(f"channels must be 1, 3 or None, got {channels}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_FILE_SUFFIXES)
    if not files:
        raise SampleFileError(f"{folder} holds no {'/'.join(IMAGE_FILE_SUFFIXES)} files")
    pictures = []
    for file in files:
        try:
            with Image.open(file) as picture:
                picture.load()
                pictures.append(picture.copy())
        except (OSError, UnidentifiedImageError) as error:
            raise SampleFileError(f"cannot read image {file}: {error}") from error
    if channels is None:
        channels = 1 if all(p.mode in ("L", "1") for p in pictures) else 3
    mode = "L" if channels == 1 else "RGB"
    sizes = {p.size for p in pictures}
    if len(sizes) > 1:
        raise SampleFileError(f"images in {folder} differ in size ({sorted(sizes)[:4]}); resize them to one size")
    images = np.stack([np.asarray(p.convert(mode), dtype=np.uint8) for p in pictures])
    return SampleBatch(_check_images(images, str(folder)))


def read_samples(path: str | Path) -> SampleBatch:
    """A `.npz` sample batch or a folder of images."""
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path)
    if path.suffix == ".npz":
        return read_npz(path)
    raise SampleFileError(f"{path} is neither a .npz sample batch nor a folder of images")
