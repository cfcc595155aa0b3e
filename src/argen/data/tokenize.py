"""`argen tokenize`: a dataset split through a trained tokenizer into a token cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from argen.config import DataConfig, TokenizerRunConfig
from argen.data import load_dataset
from argen.data.token_cache import write_token_cache
from argen.data.video import is_video_dataset, load_video_dataset
from argen.io import checkpoint as ckpt
from argen.io.load import load_tokenizer


def evaluation_data(config: TokenizerRunConfig, split: str, data_dir: str | None) -> DataConfig:
    """The data a tokenizer was trained on, as a fixed evaluation set: one split, unflipped, whole."""
    return dataclasses.replace(config.data, split=split, flip=False, limit=0,
                               path=data_dir if data_dir else config.data.path)


def tokenize(directory: str | Path, out_dir: str | Path, split: str = "train", data_dir: str | None = None,
             flip_copies: bool = False, limit: int = 0, progress: bool = True) -> Path:
    """Write the token cache of a dataset split (the first `limit` images if > 0; optionally with flipped
    copies as extra samples); a tokenizer with a Prologue head also writes `prologue_ids` (n, P).
    A video dataset (argen.data.video) gives (T, h, w) grids: the tokenizer encodes each frame."""
    model, config = load_tokenizer(directory)
    data = dataclasses.replace(evaluation_data(config, split, data_dir), limit=limit)
    batch_size = 256
    if is_video_dataset(data.name):  # every frame is encoded: (T, h, w) grids
        if config.model.prologue_tokens > 0:
            raise ValueError(f"{directory} has a Prologue head, which summarises one image; video token caches "
                             f"need a tokenizer without one (model.prologue_tokens=0)")
        dataset = load_video_dataset(data)
        batch_size = max(1, batch_size // data.video.frames)  # about as many frames per encoder pass as images
    else:
        dataset = load_dataset(data, training=False)

    tokenizer = {"path": str(Path(directory).resolve()), "sha256": ckpt.checkpoint_checksum(directory),
                 "codebook_size": config.model.codebook_size, "class_names": list(dataset.class_names)}
    if config.model.prologue_tokens > 0:
        tokenizer["prologue_codebook_size"] = config.model.prologue_codebook_size
    if flip_copies:
        dataset = _WithFlippedCopies(dataset)
    return write_token_cache(model.encode_tokens, dataset, out_dir, tokenizer, batch_size=batch_size,
                             progress=progress)


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
