"""Previews during training: what a task shows every train.sample_every steps (the trainer writes it into the run
folder), and the tokenizer that decodes them, loaded once per run rather than once per preview."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from argen.data.transforms import to_uint8
from argen.io.load import load_tokenizer


@dataclass
class Preview:
    """uint8 images (N, C, H, W) or videos (N, T, C, H, W), shown `columns` to a row."""

    images: torch.Tensor
    columns: int


class PreviewDecoder:
    """Token ids -> uint8 pixels (on the CPU) with the tokenizer checkpoint `directory`, loaded on first use."""

    def __init__(self, directory: str | Path):
        self.directory = directory
        self._tokenizer = None

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if self._tokenizer is None:
            self._tokenizer, _ = load_tokenizer(self.directory, ids.device)
        with torch.no_grad():
            return to_uint8(self._tokenizer.decode(ids)).cpu()
