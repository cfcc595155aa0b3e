"""`argen tokenize`: a dataset split through a trained tokenizer into a token cache, by one process or by every
rank of a `torchrun` (each encodes and writes its own shards; see argen.data.token_cache)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from argen import distributed
from argen.config import DataConfig, TokenizerRunConfig
from argen.data import load_dataset
from argen.data.loader import BatchRequest, load_batches
from argen.data.token_cache import write_token_cache
from argen.data.transforms import ten_crop
from argen.data.video import is_video_dataset, load_video_dataset
from argen.io import checkpoint as ckpt
from argen.io.load import load_tokenizer

TEN_CROP_SCALE = 1.1  # LlamaGen: centre crop at 1.1x the image size, then TenCrop


def evaluation_data(config: TokenizerRunConfig, split: str, data_dir: str | None) -> DataConfig:
    """The data a tokenizer was trained on, as a fixed evaluation set: one split, unflipped, whole."""
    return dataclasses.replace(
        config.data, split=split, flip=False, limit=0, path=data_dir if data_dir else config.data.path
    )


def tokenize(
    directory: str | Path,
    out_dir: str | Path,
    split: str = "train",
    data_dir: str | None = None,
    flip_copies: bool = False,
    ten_crops: bool = False,
    limit: int = 0,
    num_workers: int | None = None,
    shard_size: int = 16384,
    progress: bool = True,
    holdout: int = 0,
) -> Path:
    """Write the token cache of a dataset split (the first `limit` images if > 0; with `holdout` N, all but the
    split's last N, which the manifest records as the validation split for `argen eval ref --holdout-of`, and
    which the cache never holds). Augmentations stored: flipped
    copies as extra samples, or LlamaGen's ten crops (centre crop at 1.1x, TenCrop) as 10 views of each image.
    A tokenizer with a Prologue head also writes `prologue_ids` (n, P). A video dataset (argen.data.video) gives
    (T, h, w) grids: the tokenizer encodes each frame. Under torchrun the ranks share the work; the cache holds
    the same ids as one process's. `shard_size` is rounded down to a multiple of the encoder's batch."""
    if flip_copies and ten_crops:
        raise ValueError(
            "flip copies and ten crops are two ways to store augmentations; choose one "
            "(the ten crops include the mirrored images)"
        )
    context = distributed.setup()
    try:
        model, config = load_tokenizer(directory, context.device)
        data = dataclasses.replace(evaluation_data(config, split, data_dir), limit=limit)
        data, validation = _hold_out(data, holdout) if holdout else (data, None)
        size = data.image_size
        if ten_crops:
            data = dataclasses.replace(data, image_size=round(TEN_CROP_SCALE * size), resize="resize")
        batch_size = 256
        if is_video_dataset(data.name):  # every frame is encoded: (T, h, w) grids
            if config.model.prologue_tokens > 0:
                raise ValueError(
                    f"{directory} has a Prologue head, which summarises one image; video token "
                    f"caches need a tokenizer without one (model.prologue_tokens=0)"
                )
            if ten_crops:
                raise ValueError("ten crops apply to images, not videos")
            dataset = load_video_dataset(data)
            batch_size = max(1, batch_size // data.video.frames)  # about as many frames per encoder pass as images
        else:
            dataset = load_dataset(data, training=False)

        tokenizer = {
            "path": str(Path(directory).resolve()),
            "sha256": ckpt.checkpoint_checksum(directory),
            "codebook_size": config.model.codebook_size,
            "class_names": list(dataset.class_names),
        }
        if config.model.prologue_tokens > 0:
            tokenizer["prologue_codebook_size"] = config.model.prologue_codebook_size
        if flip_copies:
            dataset = _WithFlippedCopies(dataset)
        if ten_crops:
            dataset = _TenCrops(dataset, size)
        plan = {
            "split": split,
            "data": dataclasses.asdict(data),
            "flip_copies": flip_copies,
            "views": 10 if ten_crops else 1,
        }
        if validation is not None:
            plan["holdout"] = {"images": holdout, "data": dataclasses.asdict(validation)}
        workers = data.num_workers if num_workers is None else num_workers

        def read(requests):
            # No random augmentation here: the seed is unused, the batches are the dataset's as they are.
            return load_batches(
                dataset,
                (BatchRequest(indices, 0) for indices in requests),
                workers,
                pin_memory=context.device.type == "cuda",
            )

        def encode(images: torch.Tensor) -> dict[str, torch.Tensor]:
            images = images.to(context.device, non_blocking=True)
            if not ten_crops:
                return model.encode_tokens(images)
            encoded = model.encode_tokens(images.flatten(0, 1))  # views side by side: (n, 10, ...)
            return {key: value.unflatten(0, images.shape[:2]) for key, value in encoded.items()}

        batch_size = max(1, min(batch_size, shard_size))
        return write_token_cache(
            encode,
            dataset,
            out_dir,
            tokenizer,
            batch_size=batch_size,
            shard_size=shard_size - shard_size % batch_size,
            progress=progress,
            plan=plan,
            rank=context.rank,
            world_size=context.world_size,
            barrier=lambda: distributed.barrier(context),
            batches=read,
        )
    finally:
        distributed.teardown(context)


def _hold_out(data: DataConfig, holdout: int) -> tuple[DataConfig, DataConfig]:
    """(the images to tokenize, the held-out last `holdout` images of the split) for an in-memory dataset."""
    if data.limit:
        raise ValueError("--holdout and --limit both choose the images: give one")
    if data.name in ("imagefolder", "webdataset") or is_video_dataset(data.name):
        raise ValueError(
            f"--holdout keeps the split's last images aside, which suits datasets stored in random "
            f"order (IDX, fashion-mnist, digits); {data.name} is sorted by class: keep a validation "
            "folder of its own instead"
        )
    total = len(load_dataset(data, training=False))
    if not 0 < holdout < total:
        raise ValueError(f"--holdout must be in [1, {total - 1}] (the split has {total} images), got {holdout}")
    return (
        dataclasses.replace(data, limit=total - holdout),
        dataclasses.replace(data, skip=data.skip + total - holdout, limit=0),
    )


class _WithFlippedCopies:
    """Every image (or video) twice: as is, then mirrored (a fixed, stored augmentation)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return 2 * len(self.dataset)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = self.dataset.batch(indices % len(self.dataset))
        images = batch["images"]
        flip = (indices >= len(self.dataset)).view(-1, *[1] * (images.ndim - 1))
        batch["images"] = torch.where(flip, images.flip(-1), images)
        return batch


class _TenCrops:
    """Every image as LlamaGen's ten crops of `size`: images (n, 10, C, size, size)."""

    def __init__(self, dataset, size: int):
        self.dataset, self.size = dataset, size

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = self.dataset.batch(indices)
        batch["images"] = ten_crop(batch["images"], self.size)
        return batch
