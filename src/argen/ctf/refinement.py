"""CTF's fine stage as a pipeline holds it: one object with the refiner, the run config and checkpoint metadata it
was trained with, where it came from, and what it decides for the refine pass (its default options, its check
against the coarse AR it is paired with, how it is saved)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from argen.config import RefinerRunConfig, to_dict
from argen.ctf.sample import RefineOptions, sample_ctf
from argen.io import checkpoint as ckpt
from argen.io.load import REFINER_KIND, load_refiner
from argen.layout import Layout
from argen.model.refiner import Refiner
from argen.sample import Generated, SamplingOptions


@dataclass
class Refinement:
    refiner: Refiner
    config: RefinerRunConfig
    meta: dict  # the refiner checkpoint's metadata (its table, grid, tokenizer)
    source: Path | None = None  # the checkpoint folder it was loaded from

    @classmethod
    def load(cls, directory: str | Path) -> Refinement:
        refiner, config, meta = load_refiner(directory)
        return cls(refiner, config, meta, Path(directory))

    @property
    def fine_vocab(self) -> int:
        return self.refiner.fine_vocab

    def check_pairs_with(self, ar_dir: Path, coarse_table: dict | None, layout: Layout) -> None:
        """The refiner must read the AR model's coarse labels: same table, same grid."""
        if coarse_table is None:
            raise ckpt.CheckpointError(
                f"a refiner was given but {ar_dir} predicts fine ids, not CTF coarse labels "
                f"(train it with coarse_table=FILE)"
            )
        table = self.meta.get("coarse_table", {})
        if table.get("checksum") != coarse_table.get("checksum"):
            raise ckpt.CheckpointError(
                f"the refiner {self.source} was trained with another fine -> coarse table than the AR model {ar_dir} "
                f"(table checksums {str(table.get('checksum'))[:12]} and {str(coarse_table.get('checksum'))[:12]})"
            )
        grid = tuple(self.meta.get("grid", layout.grid))
        if grid != layout.grid:
            raise ckpt.CheckpointError(
                f"the refiner {self.source} was trained on {grid} grids, the AR model makes {layout.grid}"
            )

    def options(self, refine: dict | None, coarse: SamplingOptions) -> RefineOptions:
        """The refine pass's options: `refine` over the defaults (the coarse stage's greedy and dtype, the
        restriction to clusters the refiner was trained with)."""
        defaults = {
            "restrict_to_cluster": self.config.refiner.restrict_to_cluster,
            "greedy": coarse.greedy,
            "dtype": coarse.dtype,
        }
        return RefineOptions(**{**defaults, **(refine or {})})

    def sample(
        self,
        model: torch.nn.Module,
        layout: Layout,
        labels: torch.Tensor,
        coarse: SamplingOptions,
        refine: RefineOptions,
        generator: torch.Generator | None,
        forced: dict | None,
        on_step: Any,
    ) -> Generated:
        """Coarse labels from the AR model, then fine ids from this refiner (argen.ctf.sample)."""
        return sample_ctf(model, layout, self.refiner, labels, coarse, refine, generator, forced, on_step)

    def save(self, directory: str | Path) -> None:
        ckpt.save_checkpoint(
            directory,
            REFINER_KIND,
            to_dict(self.config),
            self.refiner.state_dict(),
            {key: value for key, value in self.meta.items() if key not in ("kind", "config")},
        )
