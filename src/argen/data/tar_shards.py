"""WebDataset tar shards, for object storage and many nodes: `pack_image_folder` writes them, `TarShardDataset`
streams them.

A packed folder holds `shard-000000.tar`, ... (each sample `<key>.<jpg|png|...>` as the file was, and `<key>.cls`)
and `shards.json` (every shard and its sample count, the class names). An epoch deals the shards, in a seeded
order, to the streams (rank x worker); each stream reads only its shards, through a seeded shuffle buffer, so no
sample is read twice in an epoch. Every stream yields the same number of micro-batches (the smallest stream's),
so the ranks stay in step; the rest of an epoch's samples wait for the next epoch's deal. The stream is a
function of (seed, ranks, workers) and resumes exactly by skipping, undecoded, the samples already trained on.
"""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from argen.data.datasets import IMAGE_SUFFIXES, DataError
from argen.data.image_folder import MAX_IMAGE_PIXELS, UNREADABLE, decode_image, scan_image_folder
from argen.data.transforms import random_flip, to_unit_range
from argen.io.checkpoint import atomic_write, save_json

INDEX = "shards.json"
FORMAT = "argen-tar-shards-1"
SHUFFLE_BUFFER = 2000  # raw (undecoded) samples each stream shuffles among
EXTENSIONS = tuple(suffix[1:] for suffix in sorted(IMAGE_SUFFIXES))


def pack_image_folder(folder: str | Path, out_dir: str | Path, shard_size: int = 2000) -> Path:
    """Pack `folder/<class>/<image>` into tar shards of `shard_size` samples (files stored as they are); a file that
    cannot be read is left out and counted."""
    import webdataset as wds

    folder, out_dir = Path(folder), Path(out_dir)
    if shard_size < 1:
        raise DataError(f"the shard size must be >= 1, got {shard_size}")
    files, labels, classes = scan_image_folder(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards, unreadable = [], []
    for first in range(0, len(files), shard_size):
        name = f"shard-{first // shard_size:06d}.tar"
        written = 0

        def write(tmp: Path, first: int = first) -> None:
            nonlocal written
            with tmp.open("wb") as stream, wds.TarWriter(stream) as writer:
                for index in range(first, min(first + shard_size, len(files))):
                    try:
                        data = (folder / files[index]).read_bytes()
                    except OSError as error:
                        unreadable.append(f"{files[index]} ({error.strerror or error})")
                        continue
                    suffix = Path(files[index]).suffix.lower()[1:]
                    writer.write({"__key__": f"{index:09d}", suffix: data, "cls": str(labels[index]).encode()})
                    written += 1

        atomic_write(out_dir / name, write)
        shards.append({"file": name, "count": written})
    if unreadable:
        print(f"data pack: left out {len(unreadable)} unreadable image(s), e.g. {unreadable[0]}")
    if not sum(shard["count"] for shard in shards):
        for shard in shards:
            (out_dir / shard["file"]).unlink()
        raise DataError(f"{folder}: no readable image to pack")
    save_json(
        out_dir / INDEX,
        {
            "format": FORMAT,
            "count": sum(shard["count"] for shard in shards),
            "class_names": list(classes),
            "shards": shards,
        },
    )
    return out_dir


def _shard_path(folder: Path, name: Any) -> str:
    """A shard named in shards.json: a file of the folder itself, never a path that leads out of it."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"shard file {name!r} is not a file name of the folder")
    return str(folder / name)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"a shard's count must be an integer >= 0, got {value!r}")
    return value


class TarShardDataset:
    """Packed shards (`pack_image_folder`), decoded and augmented as ImageFolderDataset does; trained on through
    `stream`, not indexed."""

    def __init__(
        self,
        folder: str | Path,
        size: int,
        channels: int,
        flip: bool = False,
        crop_min: float = 1.0,
        on_bad_image: str = "skip",
        max_pixels: int = MAX_IMAGE_PIXELS,
    ):
        folder = Path(folder)
        try:
            index = json.loads((folder / INDEX).read_text())
            self.shards = [(_shard_path(folder, shard["file"]), _count(shard["count"])) for shard in index["shards"]]
            self.class_names = tuple(index["class_names"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(
                f"{folder}: no readable {INDEX} (pack an image folder with `argen data pack`): {error}"
            ) from error
        missing = [url for url, _ in self.shards if not Path(url).is_file()]
        if missing:
            raise DataError(f"{missing[0]} is listed in {folder / INDEX} but missing")
        self.size, self.channels, self.flip, self.crop_min = size, channels, flip, crop_min
        self.on_bad_image, self.max_pixels = on_bad_image, max_pixels

    def __len__(self) -> int:
        return sum(count for _, count in self.shards)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        raise DataError("tar shards are streamed, not indexed: train on them; tokenize the image folder")

    def stream(
        self,
        seed: int,
        start: int,
        micro_batch: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's micro-batches from its `start`-th on, forever (epoch after epoch)."""
        plan = _StreamPlan(self, seed, start, micro_batch, rank, world_size, max(1, num_workers))
        loader = DataLoader(
            plan,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers else None,
        )
        for batch in loader:
            if isinstance(batch, str):
                raise DataError(batch)
            yield batch


class _StreamPlan(IterableDataset):
    """The micro-batches of one rank: batch j of an epoch comes from the rank's stream j % workers."""

    def __init__(
        self, dataset: TarShardDataset, seed: int, start: int, micro_batch: int, rank: int, world: int, workers: int
    ):
        self.dataset, self.seed, self.start, self.micro_batch = dataset, seed, start, micro_batch
        self.rank, self.world, self.workers = rank, world, workers

    def _deal(self, epoch: int) -> tuple[list[list[str]], int]:
        """Each stream's shards in this epoch, and the micro-batches every stream yields."""
        streams = self.world * self.workers
        shards = self.dataset.shards
        if len(shards) < streams:
            raise DataError(
                f"{len(shards)} tar shards for {streams} streams ({self.world} ranks x {self.workers} "
                "workers): pack with smaller shards or use fewer workers"
            )
        order = np.random.default_rng([self.seed, epoch]).permutation(len(shards))
        dealt = [[shards[i] for i in order[q::streams]] for q in range(streams)]
        per_stream = min(sum(count for _, count in mine) for mine in dealt) // self.micro_batch
        if per_stream == 0:
            raise DataError(f"a stream's shards hold fewer than {self.micro_batch} samples: pack larger shards")
        return [[url for url, _ in mine] for mine in dealt], per_stream

    def __iter__(self):
        info = get_worker_info()
        if info is not None:
            torch.set_num_threads(1)  # workers decode; threads would only fight the training ranks for the cores
        try:
            yield from self._batches(info.id if info is not None else 0)
        except DataError as error:  # as its message: a worker's exception would arrive wrapped in a traceback
            yield str(error)

    def _batches(self, worker: int):
        # Worker w serves batches start + w, start + w + workers, ...: the DataLoader takes them in turn.
        first, epoch = self.start + worker, 0
        dealt, per_stream = self._deal(epoch)
        while first >= per_stream * self.workers:
            first -= per_stream * self.workers
            epoch += 1
            dealt, per_stream = self._deal(epoch)
        stream, skip = first % self.workers, first // self.workers
        while True:
            q = self.rank * self.workers + stream
            yield from self._epoch(dealt[q], [self.seed, epoch, q], per_stream, skip)
            epoch, skip = epoch + 1, 0
            dealt, per_stream = self._deal(epoch)

    def _epoch(self, urls: list[str], seed: list[int], batches: int, skip: int):
        rng = np.random.default_rng(seed)
        samples = _shuffled(_read_shards(urls), rng)
        for number in range(batches):
            raw = [next(samples, None) for _ in range(self.micro_batch)]
            if raw[-1] is None:
                raise DataError(f"the shards {', '.join(urls)} hold fewer samples than {INDEX} says; repack them")
            if number >= skip:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(np.random.SeedSequence([*seed, number]).generate_state(1)[0]))
                    yield self._decode(raw)

    def _decode(self, raw: list[tuple[str, bytes, int]]) -> dict[str, torch.Tensor]:
        dataset = self.dataset
        readable = []
        for key, data, label in raw:
            try:
                readable.append(
                    (
                        decode_image(
                            io.BytesIO(data), dataset.size, dataset.channels, dataset.crop_min, dataset.max_pixels
                        ),
                        label,
                    )
                )
            except UNREADABLE as error:
                if dataset.on_bad_image == "error":
                    raise DataError(
                        f"sample {key}: unreadable image ({error}); data.on_bad_image=skip skips such images"
                    ) from error
                warnings.warn(f"sample {key}: unreadable image, skipped", stacklevel=2)
        if not readable:
            raise DataError(f"a whole batch of unreadable images (e.g. sample {raw[0][0]})")
        # The batch keeps its size: the readable images stand in for the skipped ones.
        chosen = [readable[i % len(readable)] for i in range(len(raw))]
        images = to_unit_range(torch.stack([image for image, _ in chosen]))
        return {
            "images": random_flip(images) if dataset.flip else images,
            "labels": torch.tensor([label for _, label in chosen]),
        }


def _read_shards(urls: list[str]) -> Iterator[tuple[str, bytes, int]]:
    """(key, encoded image, label) of every sample of the shards, in order; a truncated or corrupt shard is an
    error naming it."""
    import webdataset as wds

    for url in urls:
        try:
            for sample in wds.WebDataset(
                [url], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
            ):
                image = next((sample[ext] for ext in EXTENSIONS if ext in sample), None)
                if image is None or "cls" not in sample:
                    raise DataError(f"{url}: sample {sample['__key__']} lacks an image or its .cls label")
                yield sample["__key__"], image, _label(url, sample)
        except (tarfile.TarError, OSError, ValueError) as error:
            if isinstance(error, DataError):
                raise
            raise DataError(f"{url}: truncated or corrupt tar shard ({error}); repack it") from error


def _label(url: str, sample: dict) -> int:
    text = sample["cls"].decode("utf-8", "replace").strip() if isinstance(sample["cls"], bytes) else sample["cls"]
    if not (isinstance(text, str) and text.isdigit()):
        raise DataError(
            f"{url}: sample {sample['__key__']} has the label {str(text)[:40]!r}, not a class number "
            "(.cls holds an integer >= 0); repack it"
        )
    return int(text)


def _shuffled(samples: Iterator, rng: np.random.Generator) -> Iterator:
    """The samples through a shuffle buffer of SHUFFLE_BUFFER samples."""
    buffer = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) >= SHUFFLE_BUFFER:
            position = int(rng.integers(len(buffer)))
            buffer[position], buffer[-1] = buffer[-1], buffer[position]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer
