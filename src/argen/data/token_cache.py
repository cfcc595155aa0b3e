"""The token cache: a dataset tokenized once into shards of ids and labels, so AR training never runs the tokenizer.

Layout: `manifest.json` (tokenizer path and checksum, grid, count, shard files) and `shard-00000.safetensors`,
... each holding `ids` (n, *grid) int16/int32 and `labels` (n,) int64 (and `prologue_ids` (n, P) when the
tokenizer has a prologue head).

With a CTF fine -> coarse table, `TokenDataset` serves coarse labels instead of fine ids: the one cache
feeds both the coarse AR (coarse ids) and the refiner (fine ids, mapped by its task).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from argen.io.checkpoint import atomic_write, save_json

if TYPE_CHECKING:
    from argen.ctf.table import CoarseTable

MANIFEST = "manifest.json"


class TokenCacheError(ValueError):
    """A token cache that is missing or inconsistent."""


def write_token_cache(encode: Callable[[torch.Tensor], dict[str, torch.Tensor]], dataset, out_dir: str | Path,
                      tokenizer: dict, batch_size: int = 256, shard_size: int = 16384,
                      progress: bool = True) -> Path:
    """Tokenize every sample of `dataset` with `encode(images) -> {"ids": ..., ["prologue_ids": ...]}`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The manifest is written last and names the shards: without it the folder is no cache, never a mixed one.
    (out_dir / MANIFEST).unlink(missing_ok=True)
    shards, pending, written = [], {}, 0

    def flush() -> None:
        nonlocal pending
        if not pending:
            return
        name = f"shard-{len(shards):05d}.safetensors"
        tensors = {k: torch.cat(v).contiguous() for k, v in pending.items()}
        atomic_write(out_dir / name, lambda tmp: save_file(tensors, str(tmp)))
        shards.append({"file": name, "count": len(tensors["labels"])})
        pending = {}

    grid, prologue_length = None, 0
    with torch.inference_mode():
        for start in tqdm(range(0, len(dataset), batch_size), desc="tokenize", unit="batch",
                          disable=not progress):
            indices = torch.arange(start, min(start + batch_size, len(dataset)))
            batch = dataset.batch(indices)
            encoded = encode(batch["images"])
            ids = encoded["ids"]
            grid = list(ids.shape[1:])
            # Codebooks up to 32767 entries fit int16; half the disk and memory of int32.
            dtype = torch.int16 if int(ids.max()) < 2 ** 15 else torch.int32
            pending.setdefault("ids", []).append(ids.to(dtype).cpu())
            pending.setdefault("labels", []).append(batch["labels"].to(torch.int64).cpu())
            if "prologue_ids" in encoded:
                prologue_length = encoded["prologue_ids"].shape[1]
                pending.setdefault("prologue_ids", []).append(encoded["prologue_ids"].to(torch.int32).cpu())
            written += len(indices)
            if sum(len(x) for x in pending["labels"]) >= shard_size:
                flush()
    flush()
    save_json(out_dir / MANIFEST, {"format": "argen-token-cache-1", "count": written, "grid": grid,
                                   "prologue_length": prologue_length, "tokenizer": tokenizer, "shards": shards})
    return out_dir


class TokenDataset:
    """A token cache in memory; `batch(indices)` returns {"ids", "labels"[, "prologue_ids"]} as int64.

    With `coarse_table`, "ids" are the coarse labels of the cached ids (the table must belong to the cache's
    tokenizer: same codebook size and, when both record it, the same weights checksum).
    """

    def __init__(self, directory: str | Path, coarse_table: "CoarseTable | None" = None):
        import json

        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise TokenCacheError(f"{directory} is not a token cache ({MANIFEST} missing); "
                                  "write one with `argen tokenize`")
        self.manifest = json.loads(manifest_path.read_text())
        parts: dict[str, list[torch.Tensor]] = {}
        for shard in self.manifest["shards"]:
            path = directory / shard["file"]
            if not path.is_file():
                raise TokenCacheError(f"{path} is listed in the manifest but missing")
            for key, value in load_file(str(path)).items():
                parts.setdefault(key, []).append(value)
        self.tensors = {key: torch.cat(values) for key, values in parts.items()}
        count = len(self.tensors["labels"])
        if count != self.manifest["count"]:
            raise TokenCacheError(f"{directory}: the manifest says {self.manifest['count']} samples, "
                                  f"the shards hold {count}")
        self.directory = directory
        self.coarse_table = coarse_table
        if coarse_table is not None:
            tokenizer = self.manifest["tokenizer"]
            coarse_table.check_tokenizer(tokenizer.get("sha256"), int(tokenizer["codebook_size"]),
                                         f"the token cache {directory}")

    def __len__(self) -> int:
        return len(self.tensors["labels"])

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.manifest["grid"])

    @property
    def codebook_size(self) -> int:
        """The tokenizer's number of codes (the fine vocabulary)."""
        return int(self.manifest["tokenizer"]["codebook_size"])

    @property
    def visual_vocab(self) -> int:
        """The vocabulary of the ids `batch` serves: the codebook, or the clusters under a coarse table."""
        return self.codebook_size if self.coarse_table is None else self.coarse_table.coarse_vocab

    @property
    def num_classes(self) -> int:
        """Classes the labels use (the largest label + 1)."""
        return int(self.tensors["labels"].max()) + 1

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = {key: value[indices].long() for key, value in self.tensors.items()}
        if self.coarse_table is not None:
            batch["ids"] = self.coarse_table.coarse(batch["ids"])
        return batch
