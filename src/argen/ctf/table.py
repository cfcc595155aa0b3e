"""The fine -> coarse table of CTF: a file, the checks that tie it to a tokenizer, and the id mappings.

File: one safetensors file with the tensor `fine_to_coarse` (V,) int64 and string metadata: the
tokenizer's path and the sha256 of its weights (as checkpoints and token caches record them), the
clustering method, seed, restarts and inertia. A cluster-size histogram PNG is written beside it.
The coarse AR and the refiner record the table's `checksum` (a hash of its contents, not of the file), so
a sampler can refuse to pair models trained with different tables.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from safetensors import safe_open
from safetensors.torch import save_file

from argen.io.checkpoint import atomic_write

TABLE_KEY = "fine_to_coarse"
FORMAT = "argen-ctf-table-1"


@dataclass(frozen=True)
class CoarseTable:
    """fine_to_coarse (V,) long: the coarse label (cluster) of every fine code; no cluster is empty."""

    fine_to_coarse: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)  # tokenizer_sha256, method, seed, ...

    def __post_init__(self) -> None:
        table = self.fine_to_coarse
        if table.dim() != 1 or table.numel() == 0 or table.is_floating_point() or table.dtype == torch.bool:
            raise ValueError(
                f"a fine -> coarse table must be a non-empty 1-D integer tensor, got {table.dtype} {tuple(table.shape)}"
            )
        if int(table.min()) < 0:
            raise ValueError("a fine -> coarse table cannot hold negative cluster ids")
        object.__setattr__(self, "fine_to_coarse", table.long().cpu().contiguous())
        empty = torch.nonzero(self.sizes == 0).flatten()
        if len(empty):
            raise ValueError(
                f"clusters {empty[:8].tolist()} of the fine -> coarse table have no code; "
                f"the coarse labels must be 0..K-1 with every cluster used"
            )

    @property
    def fine_vocab(self) -> int:
        """V, the tokenizer's codebook size."""
        return self.fine_to_coarse.numel()

    @property
    def coarse_vocab(self) -> int:
        """K, the number of clusters (coarse labels)."""
        return int(self.fine_to_coarse.max()) + 1

    @property
    def sizes(self) -> torch.Tensor:
        """(K,) codes per cluster."""
        return torch.bincount(self.fine_to_coarse, minlength=self.coarse_vocab)

    @property
    def checksum(self) -> str:
        """sha256 of the table's contents (int64 little-endian), independent of the file it came from."""
        return hashlib.sha256(self.fine_to_coarse.numpy().astype("<i8").tobytes()).hexdigest()

    @property
    def tokenizer_sha256(self) -> str | None:
        return self.metadata.get("tokenizer_sha256")

    def coarse(self, fine_ids: torch.Tensor) -> torch.Tensor:
        """Fine ids (any shape) -> their coarse labels."""
        if fine_ids.numel() and (int(fine_ids.min()) < 0 or int(fine_ids.max()) >= self.fine_vocab):
            raise ValueError(
                f"fine ids must lie in [0, {self.fine_vocab}), got values in "
                f"[{int(fine_ids.min())}, {int(fine_ids.max())}]"
            )
        return self.fine_to_coarse.to(fine_ids.device)[fine_ids.long()]

    def check_tokenizer(self, sha256: str | None, codebook_size: int, what: str) -> None:
        """Refuse a table made for another tokenizer than the one `what` (a cache, a model) was made with."""
        if codebook_size != self.fine_vocab:
            raise ValueError(
                f"the fine -> coarse table has {self.fine_vocab} codes but {what} has a codebook of "
                f"{codebook_size}; cluster that tokenizer with `argen ctf cluster`"
            )
        if sha256 and self.tokenizer_sha256 and sha256 != self.tokenizer_sha256:
            raise ValueError(
                f"the fine -> coarse table was made for the tokenizer with sha256 "
                f"{self.tokenizer_sha256[:12]}..., but {what} used {sha256[:12]}...; cluster that "
                f"tokenizer with `argen ctf cluster`"
            )

    def describe(self) -> dict[str, Any]:
        """What checkpoints record about the table they were trained with."""
        return {
            "checksum": self.checksum,
            "fine_vocab": self.fine_vocab,
            "coarse_vocab": self.coarse_vocab,
            **{k: self.metadata[k] for k in ("path", "tokenizer_sha256", "method") if k in self.metadata},
        }


def save_table(table: CoarseTable, path: str | Path) -> Path:
    """Write the table (safetensors + metadata) and its cluster-size histogram (`<name>-sizes.png`)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"the table file must end in .safetensors, got {path}")
    metadata = {
        "format": FORMAT,
        "checksum": table.checksum,
        **{key: json.dumps(value) for key, value in table.metadata.items()},
    }
    atomic_write(path, lambda tmp: save_file({TABLE_KEY: table.fine_to_coarse}, str(tmp), metadata=metadata))
    plot_sizes(table, histogram_path(path))
    return path


def histogram_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}-sizes.png")


def load_table(path: str | Path) -> CoarseTable:
    """A table written by `save_table` (its recorded checksum must match the contents), or a bare table of
    one coarse label per code from elsewhere: a .npy array or a .json list (no metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fine -> coarse table {path}: no such file (make one with `argen ctf cluster`)")
    if path.suffix in (".npy", ".json"):
        try:
            values = np.load(path, allow_pickle=False) if path.suffix == ".npy" else json.loads(path.read_text())
            return CoarseTable(torch.as_tensor(values), {"path": str(path.resolve())})
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path} is not a fine -> coarse table (one integer cluster per code): {error}") from error
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys, stored = list(handle.keys()), handle.metadata() or {}
            tensor = handle.get_tensor(TABLE_KEY) if TABLE_KEY in keys else None
    except Exception as error:  # safetensors raises its own error types for a malformed file
        raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    if tensor is None or stored.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a CTF table (expected format {FORMAT} with a '{TABLE_KEY}' tensor, "
            f"found keys {keys}); make one with `argen ctf cluster`"
        )
    metadata = {key: json.loads(value) for key, value in stored.items() if key not in ("format", "checksum")}
    table = CoarseTable(tensor, {**metadata, "path": str(path.resolve())})
    if stored.get("checksum") != table.checksum:
        raise ValueError(f"{path}: the table's contents do not match the checksum recorded in it (corrupt file)")
    return table


def plot_sizes(table: CoarseTable, path: str | Path) -> Path:
    """A histogram of cluster sizes (codes per cluster), on matplotlib's Agg canvas (no pyplot state)."""
    sizes = table.sizes
    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    largest = int(sizes.max())
    axes.hist(sizes.numpy(), bins=range(1, largest + 2), align="left", color="tab:blue", edgecolor="white")
    axes.set_xlabel("codes per cluster")
    axes.set_ylabel("clusters")
    method = table.metadata.get("method", "")
    axes.set_title(
        f"{table.fine_vocab} codes in {table.coarse_vocab} clusters"
        f"{f' ({method})' if method else ''}: sizes {int(sizes.min())} to {largest}, "
        f"mean {table.fine_vocab / table.coarse_vocab:.1f}",
        fontsize=9,
    )
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path
