"""Speculative Jacobi decoding on the shipped models: forward passes per image and the passes' acceptance, at
batch 1, each model at its shipped guidance and temperature, for windows W of 4, 8 and 16 against plain decoding.

    .venv/bin/python benchmarks/speculative.py --count 50 [--json runs/speculative.json]

Counts, not seconds: the numbers do not depend on the machine (seeded). The images/s and FID of docs/speed.md's SJD
table come from `argen bench sample --speculative W` and `argen sample --speculative W` + `argen eval`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from argen.pipeline import load

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64"
MODELS = {"1x": "ar-1x", "PAR-4x": "ar-par4", "PAR-16x": "ar-par16", "Prologue+PAR-16x": "prologue-par16-ar"}
WINDOWS = (0, 4, 8, 16)


def measure(count: int) -> list[dict]:
    rows = []
    for name, folder in MODELS.items():
        pipeline = load(SHIPPED / folder)
        sampling = {"guidance": 2.0, "temperature": 1.0, **pipeline.tuned_sampling}
        steps = pipeline.layout.num_steps
        for window in WINDOWS:
            passes = []
            for index in range(count):
                generator = torch.Generator().manual_seed(index)
                generated = pipeline.generate_ids([index % 10], generator, speculative=window, dtype="fp32", **sampling)
                passes.append(generated.forward_passes)
            mean = statistics.mean(passes)
            rows.append(
                {
                    "model": name,
                    "steps": steps,
                    "window": window,
                    "passes_per_image": mean,
                    "fewer_passes": steps / mean,
                    **sampling,
                }
            )
            print(
                f"{name:18s} W={window:2d}: {mean:6.1f} passes per image of {steps} steps ({steps / mean:.2f}x)",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50, help="images per model and window (batch 1)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = measure(args.count)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
