"""The token cache: a dataset tokenized once into shards of ids and labels, so AR training never runs the tokenizer.

Layout: `manifest.json` (tokenizer path and checksum, grid, views, count, shard files) and `shard-00000.safetensors`,
... each holding `ids` (n, *grid) int16/int32 (n, V, *grid with V stored views per image, e.g. LlamaGen's ten
crops), `labels` (n,) int64 and, with a Prologue tokenizer, `prologue_ids` (n, P) (n, V, P with views).

Shard k holds the samples [k * shard_size, (k + 1) * shard_size) of the dataset (less any unreadable image), so
ranks write disjoint shards, a restart skips the shards already written, and the manifest, written last by one
process, names them all. Readers memory-map the shards: a batch reads only its rows, and processes on one
machine share the pages. The cache always serves the tokenizer's (fine) ids: under CTF the coarse AR's task maps
them to cluster labels, so the one cache feeds both the coarse AR and the refiner.
"""

from __future__ import annotations

import json
import struct
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from argen.io.checkpoint import is_intact, remove_checked, save_json, write_checked

if TYPE_CHECKING:
    pass

MANIFEST = "manifest.json"
PLAN = "plan.json"  # what the shards being written hold; a restart with another plan starts over
FORMAT = "argen-token-cache-1"
SAFETENSORS_DTYPES = {"I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "F32": np.float32}


class TokenCacheError(ValueError):
    """A token cache that is missing or inconsistent."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only memory maps (copy-on-write, so torch accepts them): nothing is
    read until indexed, and every process mapping the file shares its pages."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        size = path.stat().st_size
        mapped = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
            begin, end = info["data_offsets"]
            shape = tuple(info["shape"])
            if 8 + length + end > size or end - begin != dtype.itemsize * int(np.prod(shape)):
                raise TokenCacheError(
                    f"{path}: truncated or corrupt shard ({key} does not fit the file); rerun "
                    "the `argen tokenize` command that wrote the cache to remake it"
                )
            mapped[key] = (
                np.memmap(path, dtype, "c", 8 + length + begin, shape) if end > begin else np.empty(shape, dtype)
            )
        return mapped
    except (OSError, ValueError, KeyError, struct.error) as error:
        if isinstance(error, TokenCacheError):
            raise
        raise TokenCacheError(
            f"{path}: not a readable token cache shard ({error}); rerun the `argen tokenize` "
            "command that wrote the cache to remake it"
        ) from error


def write_token_cache(
    encode: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    dataset,
    out_dir: str | Path,
    tokenizer: dict,
    batch_size: int = 256,
    shard_size: int = 16384,
    progress: bool = True,
    plan: dict[str, Any] | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    batches: Callable[[Iterable[torch.Tensor]], Iterable[dict]] | None = None,
) -> Path:
    """Tokenize every sample of `dataset` with `encode(images) -> {"ids": ..., ["prologue_ids": ...]}`.

    Images of shape (n, V, C, H, W) are V views of each sample, stored side by side. Under torchrun each rank
    writes shards rank, rank + world_size, ...; shards already written under the same `plan` are kept (a killed
    run restarts from them). `batches(index batches)` reads the batches (e.g. through DataLoader workers); rows
    a batch marks unreadable (`readable` False) are left out and counted."""
    out_dir = Path(out_dir)
    if len(dataset) == 0:
        raise TokenCacheError("the dataset is empty: nothing to tokenize")
    plan = {
        "format": FORMAT,
        "count": len(dataset),
        "batch_size": batch_size,
        "shard_size": shard_size,
        "tokenizer": tokenizer,
        **(plan or {}),
    }
    if batch_size < 1 or shard_size < 1 or shard_size % batch_size:
        raise TokenCacheError(
            f"the shard size ({shard_size}) must be a positive multiple of the batch size "
            f"({batch_size}): the same batches, whatever the number of ranks, give the same ids"
        )
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        # The manifest is written last and names the shards: without it the folder is no cache, never a mixed one.
        (out_dir / MANIFEST).unlink(missing_ok=True)
        if _read_json(out_dir / PLAN) != json.loads(json.dumps(plan)):
            for stale in out_dir.glob("shard-*.safetensors"):
                remove_checked(stale)
            save_json(out_dir / PLAN, plan)
    barrier()
    shard_count = max(1, -(-len(dataset) // shard_size))
    mine = []
    for k in range(rank, shard_count, world_size):
        shard = out_dir / shard_name(k)
        if shard.is_file() and not is_intact(shard):  # changed since it was written (or by an older argen)
            print(
                f"tokenize (rank {rank}): {shard} is damaged (its size or sha256 is not the one written, or none "
                "was recorded); making it again"
            )
            remove_checked(shard)
        if not shard.is_file():
            mine.append(k)
    starts = [
        (k, start) for k in mine for start in range(k * shard_size, min((k + 1) * shard_size, len(dataset)), batch_size)
    ]
    requests = [torch.arange(start, min(start + batch_size, (k + 1) * shard_size, len(dataset))) for k, start in starts]
    read = batches(requests) if batches is not None else (dataset.batch(indices) for indices in requests)
    # Codebooks up to 32768 entries fit int16; half the disk and memory of int32.
    small_codebook = int(tokenizer.get("codebook_size", 2**31)) <= 2**15
    pending: dict[str, list[torch.Tensor]] = {}
    skipped = 0
    with torch.inference_mode():
        for (shard, start), batch in tqdm(
            zip(starts, read), total=len(starts), desc=f"tokenize (rank {rank})", unit="batch", disable=not progress
        ):
            readable = batch.pop("readable", None)
            if readable is not None and not bool(readable.all()):
                skipped += int((~readable).sum())
                batch = {key: value[readable] for key, value in batch.items()}
            encoded = encode(batch["images"]) if len(batch["labels"]) else {}
            ids = encoded.get("ids")
            if ids is not None:
                dtype = torch.int16 if small_codebook else torch.int32
                pending.setdefault("ids", []).append(ids.to(dtype).cpu())
                pending.setdefault("labels", []).append(batch["labels"].to(torch.int64).cpu())
                if "prologue_ids" in encoded:
                    pending.setdefault("prologue_ids", []).append(encoded["prologue_ids"].to(torch.int32).cpu())
            if start + batch_size >= min((shard + 1) * shard_size, len(dataset)):  # the shard's last batch
                tensors = {key: torch.cat(parts).contiguous() for key, parts in pending.items()}
                write_checked(out_dir / shard_name(shard), lambda tmp: save_file(tensors, str(tmp)))
                pending = {}
    if skipped:
        print(f"tokenize (rank {rank}): left out {skipped} unreadable {getattr(dataset, 'kind', 'image')}(s)")
    barrier()
    if rank == 0:
        write_manifest(out_dir, shard_count, tokenizer, plan)
    barrier()
    return out_dir


def write_manifest(out_dir: Path, shard_count: int, tokenizer: dict, plan: dict[str, Any]) -> None:
    """Name every shard in the manifest (the cache's last write), from the shards themselves."""
    shards, grid, views, prologue_length = [], None, 1, 0
    for index in range(shard_count):
        path = out_dir / shard_name(index)
        if not path.is_file():
            raise TokenCacheError(f"{path} was not written (did a rank fail?); rerun the same command to finish")
        tensors = map_safetensors(path)
        if "ids" in tensors:
            views = int(plan.get("views", 1))
            grid = list(tensors["ids"].shape[1 + (views > 1) :])
            if "prologue_ids" in tensors:
                prologue_length = int(tensors["prologue_ids"].shape[-1])
        shards.append({"file": path.name, "count": len(tensors["labels"]) if "labels" in tensors else 0})
    count = sum(shard["count"] for shard in shards)
    if count == 0:
        raise TokenCacheError(f"{out_dir}: no readable sample to tokenize")
    shards = [shard for shard in shards if shard["count"]]
    for index in range(shard_count):  # shards with no readable image are not named
        if not any(shard["file"] == shard_name(index) for shard in shards):
            (out_dir / shard_name(index)).unlink(missing_ok=True)
    held_out = {"holdout": plan["holdout"]} if plan.get("holdout") else {}  # the validation split kept aside
    save_json(
        out_dir / MANIFEST,
        {
            "format": FORMAT,
            "count": count,
            "grid": grid,
            "views": views,
            "prologue_length": prologue_length,
            "tokenizer": tokenizer,
            "shards": shards,
            **held_out,
        },
    )
    (out_dir / PLAN).unlink(missing_ok=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class TokenDataset:
    """A token cache, memory-mapped; `batch(indices)` gathers {"ids", "labels"[, "prologue_ids"]} as int64.

    With V stored views per image, each sample of a batch is one view drawn at random (the global RNG, which the
    trainer seeds per step: a new draw per sample and epoch).
    """

    def __init__(self, directory: str | Path, limit: int = 0):
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise TokenCacheError(
                f"{directory} is not a token cache ({MANIFEST} missing); write one with `argen tokenize`"
            )
        self.manifest = _read_json(manifest_path)
        if not isinstance(self.manifest, dict) or not isinstance(self.manifest.get("shards"), list):
            raise TokenCacheError(f"{manifest_path} is not a token cache manifest")
        self.shards = []
        for shard in self.manifest["shards"]:
            path = directory / shard["file"]
            if not path.is_file():
                raise TokenCacheError(f"{path} is listed in the manifest but missing")
            tensors = map_safetensors(path)
            if len(tensors.get("labels", ())) != shard["count"]:
                raise TokenCacheError(
                    f"{path}: the manifest says {shard['count']} samples, the shard holds "
                    f"{len(tensors.get('labels', ()))}"
                )
            self.shards.append(tensors)
        self.offsets = np.cumsum([0] + [len(tensors["labels"]) for tensors in self.shards])
        if not self.shards or int(self.offsets[-1]) != self.manifest["count"]:
            raise TokenCacheError(
                f"{directory}: the manifest says {self.manifest['count']} samples, "
                f"the shards hold {int(self.offsets[-1])}"
            )
        self.keys = tuple(self.shards[0])
        self.directory = directory
        stored = int(self.offsets[-1])
        if limit < 0 or limit > stored:
            raise TokenCacheError(f"limit={limit}, but {directory} holds {stored} samples (0 = all of them)")
        self.size = limit or stored  # serve the first `limit` samples only: the rest stay held out

    def __len__(self) -> int:
        return self.size

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.manifest["grid"])

    @property
    def views(self) -> int:
        """Stored views per image (10 for LlamaGen's ten crops, else 1)."""
        return int(self.manifest.get("views", 1))

    @property
    def prologue_length(self) -> int:
        return int(self.manifest.get("prologue_length", 0)) if "prologue_ids" in self.keys else 0

    @property
    def codebook_size(self) -> int:
        """The tokenizer's number of codes (the fine vocabulary)."""
        return int(self.manifest["tokenizer"]["codebook_size"])

    @cached_property
    def num_classes(self) -> int:
        """Classes the labels use (the largest label + 1)."""
        return max(int(tensors["labels"].max()) for tensors in self.shards) + 1

    def rows(self, key: str, indices: torch.Tensor) -> torch.Tensor:
        """The stored rows `indices` of one column (all views), read from the mapped shards."""
        indices = torch.as_tensor(indices).numpy()
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        first = self.shards[0][key]
        out = np.empty((len(indices), *first.shape[1:]), first.dtype)
        for shard in np.unique(shard_of):
            chosen = shard_of == shard
            out[chosen] = self.shards[shard][key][indices[chosen] - self.offsets[shard]]
        return torch.from_numpy(out)

    def column(self, key: str, count: int | None = None) -> torch.Tensor:
        """The first `count` rows (default all) of one stored column as int64, the first view of each image; for
        analyses and previews."""
        column = self.rows(key, torch.arange(len(self) if count is None else min(count, len(self)))).long()
        return column[:, 0] if self.views > 1 and key in ("ids", "prologue_ids") else column

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = {key: self.rows(key, indices).long() for key in self.keys}
        if self.views > 1:
            view = torch.randint(self.views, (len(indices),))
            rows = torch.arange(len(indices))
            for key in ("ids", "prologue_ids"):
                if key in batch:
                    batch[key] = batch[key][rows, view]
        return batch
