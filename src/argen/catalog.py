"""The catalog of shipped models: where the checkpoint set lies, its methods (which AR folder, which tokenizer and
refiner each decodes with, the layout `argen demo --train` trains it with) and the default sampling settings.

The command line, the demo, the web app and the tests read it here. The set is `checkpoints/fmnist64` of the
repository (an editable install finds it beside the package); elsewhere, e.g. a wheel, point ARGEN_CHECKPOINTS at a
copy of that folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from argen.config import LayoutConfig

SHIPPED = Path(os.environ.get("ARGEN_CHECKPOINTS") or Path(__file__).resolve().parents[2] / "checkpoints" / "fmnist64")
# Guidance 2 and temperature 0.8 unless a model records its own, chosen on a validation split (Pipeline.tuned_sampling).
SAMPLING = {"guidance": 2.0, "temperature": 0.8}


@dataclass(frozen=True)
class Method:
    name: str
    checkpoint: str  # the AR model's folder inside the checkpoint folder
    tokenizer: str = "tokenizer"  # the tokenizer folder it decodes with (and, for --train, is trained on)
    refiner: str | None = None  # CTF: the refiner folder that turns its coarse labels into fine ids
    # What --train trains for it (the shipped checkpoints carry their own layout).
    layout: LayoutConfig = field(default_factory=LayoutConfig)


# The combinations decode their prologue 4 tokens per step and drop PAR's sequential initial tokens (the
# prologue already fixes the image's global content): 4 + 1 (separator) + 16 steps (+ CTF's refiner pass).
COMBINED = LayoutConfig(order="region", parallel=16, sequential_initial=False, prologue_parallel=4)
METHODS = (
    Method("1x raster", "ar-1x"),
    Method("PAR-4x", "ar-par4", layout=LayoutConfig(order="region", parallel=4)),
    Method("PAR-16x", "ar-par16", layout=LayoutConfig(order="region", parallel=16)),
    Method("CTF", "ctf-ar", refiner="ctf-refiner"),
    Method("Prologue", "prologue-ar", tokenizer="prologue-tokenizer"),
    Method("Prologue+PAR-16x", "prologue-par16-ar", tokenizer="prologue-tokenizer", layout=COMBINED),
    # The Post tokenizer's visual codes are the baseline's: CTF's k-means table and refiner serve the combination.
    Method(
        "Prologue+CTF+PAR-16x", "combined-ar", tokenizer="prologue-tokenizer", refiner="ctf-refiner", layout=COMBINED
    ),
)
COMPONENTS = (
    "tokenizer",
    "prologue-tokenizer",
    "classifier",
    "ctf-refiner",
    *(method.checkpoint for method in METHODS),
)


def shipped_checkpoints() -> Path | None:
    """The shipped checkpoint folder when every component is there."""
    if all((SHIPPED / name / "config.json").is_file() for name in COMPONENTS):
        return SHIPPED
    return None
