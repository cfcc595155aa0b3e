"""The methods `argen serve` offers: pipelines loaded once at start, read-only, each under its model card's name.

A folder laid out like the shipped checkpoints (`checkpoints/fmnist64/`) gives every method of `argen demo` found in
it, paired with its tokenizer and refiner as there; any other pipeline or AR checkpoint folder gives one method,
named `NAME=DIR` or by the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from argen.catalog import METHODS, SAMPLING
from argen.live import LiveView, render_seconds
from argen.pipeline import PIPELINE_FILE, Pipeline, load
from argen.sample import DEFAULT_SETTINGS, SamplingOptions, recorded_settings


@dataclass(frozen=True)
class Method:
    name: str
    pipeline: Pipeline
    source: Path
    render_cost: float  # seconds of a partial render of one image (argen.live.render_seconds)

    @property
    def steps(self) -> int:
        """Forward passes per image: the AR steps, plus CTF's refiner pass."""
        return self.pipeline.forward_passes

    @property
    def class_names(self) -> list[str]:
        count = self.pipeline.config.model.num_classes
        return list(self.pipeline.class_names) or [f"class {index}" for index in range(count)]

    def describe(self) -> dict[str, Any]:
        layout, own = self.pipeline.layout, SamplingOptions(**self.sampling)
        return {
            "name": self.name,
            "steps": self.steps,
            "classes": self.class_names,
            "grid": list(layout.grid),
            "prologue": layout.prologue_length,
            "ctf": self.pipeline.refinement is not None,
            "decoding": layout.describe(),
            # what a run that leaves guidance or temperature unset takes, for people
            "sampling": {name: own.describe(name) for name in ("guidance", "temperature")},
        }

    @property
    def sampling(self) -> dict[str, Any]:
        """The method's own guidance and temperature settings: recorded when it was shipped, else the catalog's."""
        return {**DEFAULT_SETTINGS, **SAMPLING, **recorded_settings(self.pipeline.tuned_sampling, True, True)}


def _method(name: str, pipeline: Pipeline, source: Path) -> Method:
    for module in (pipeline.model, pipeline.tokenizer, pipeline.refinement and pipeline.refinement.refiner):
        if module is not None:
            module.eval().requires_grad_(False)
    LiveView(pipeline, 1, sink=lambda frame: None)  # refuses what the page cannot show (no tokenizer, videos)
    # One short run first: the first calls of a model are several times slower than the next ones.
    pipeline.generate_ids([0], torch.Generator().manual_seed(0), greedy=True)
    return Method(name, pipeline, source, render_seconds(pipeline))


def load_methods(entries: list[str | Path]) -> dict[str, Method]:
    """Name -> Method for `[NAME=]DIR` entries: a checkpoint set like the shipped one, or one pipeline folder."""
    methods: dict[str, Method] = {}

    def add(method: Method) -> None:
        if method.name in methods:
            raise ValueError(
                f"two methods are named {method.name!r} ({methods[method.name].source} and "
                f"{method.source}); name one with NAME=DIR"
            )
        methods[method.name] = method

    for entry in entries:
        name, _, text = str(entry).rpartition("=")
        folder = Path(text)
        if not folder.is_dir():
            raise FileNotFoundError(f"--checkpoints {folder}: no such folder")
        found = [method for method in METHODS if (folder / method.checkpoint / "config.json").is_file()]
        if (folder / PIPELINE_FILE).is_file() or (folder / "config.json").is_file():
            add(_method(name or folder.name, load(folder), folder))
        elif found:
            if name:
                raise ValueError(
                    f"{folder} holds several methods ({', '.join(m.name for m in found)}); NAME= names "
                    "one pipeline folder"
                )
            for method in found:
                refiner = folder / method.refiner if method.refiner else None
                add(
                    _method(
                        method.name,
                        load(folder / method.checkpoint, tokenizer=folder / method.tokenizer, refiner=refiner),
                        folder / method.checkpoint,
                    )
                )
        else:
            raise ValueError(
                f"{folder} is neither a pipeline or AR checkpoint folder ({PIPELINE_FILE} or "
                f"config.json) nor a checkpoint set like checkpoints/fmnist64"
            )
    return methods
