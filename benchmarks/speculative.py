"""Speculative Jacobi decoding on the shipped models: forward passes per image and the passes' acceptance, at
batch 1, each model at its shipped guidance and temperature, for windows W of 4, 8 and 16 against plain decoding.

    .venv/bin/python benchmarks/speculative.py --count 50 [--json runs/speculative.json]
    .venv/bin/python benchmarks/speculative.py --speed [--repeats 5]     # wall clock, on a quiet machine

Counts, not seconds: the numbers do not depend on the machine (seeded). `--speed` times instead, with
`argen bench sample --model MODEL --batch B --speculative W` (the default precision) at batch 1 and 40: forward
passes per batch, ms per pass and images/s (median and range of the repeats). The FIDs of docs/speed.md's SJD
table come from `scripts/reproduce.sh sjd`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from argen.bench import run_sample_benchmark
from argen.machine import describe
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


def speed(repeats: int) -> list[dict]:
    print("| model | batch | W | passes per batch | ms per pass | images/s (range) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name, folder in MODELS.items():
        for batch in (1, 40):
            plain = None
            for window in WINDOWS:
                result = run_sample_benchmark(SHIPPED / folder, batch=batch, repeats=repeats, speculative=window)
                plain = plain or result["images_per_s"]
                low, high = result["images_per_s_range"]
                print(
                    f"| {name} | {batch} | {window or 'off'} | {result['forward_passes']:.1f} | "
                    f"{result['ms_per_pass_median']:.2f} | {result['images_per_s']:.2f} ({low:.2f}-{high:.2f}) | "
                    f"{result['images_per_s'] / plain:.2f}x |",
                    flush=True,
                )
                rows.append({"model": name, "window": window, **result})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50, help="images per model and window (batch 1)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--speed", action="store_true", help="time the decoders instead of counting passes")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (--speed)")
    args = parser.parse_args()
    if args.speed:
        print(f"{describe()}, median of {args.repeats} runs\n")
        rows = speed(args.repeats)
    else:
        torch.set_num_threads(1)
        rows = measure(args.count)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
