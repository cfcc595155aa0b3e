"""Print the markdown tables of docs/results.md from the outputs of `scripts/reproduce.sh`.

    .venv/bin/python scripts/results_table.py par
"""

import json
import sys
from pathlib import Path

RUNS = Path("runs")
PAR_MODELS = {  # run name -> what differs from the sequential baseline
    "ar1x": "1x raster (sequential)",
    "par4": "PAR-4x: region order, 4 tokens per step",
    "par16": "PAR-16x: region order, 16 tokens per step",
    "raster4": "raster order, 4 tokens per step",
    "par4-noinit": "PAR-4x without the 4 sequential initial tokens",
    "par4-causal": "PAR-4x with causal attention inside a group",
}


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def par() -> None:
    print("| model | steps | train min | loss | s/image (batch 1) | speed-up | FID (± bootstrap std) | IS | precision "
          "| recall | class acc. |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    baseline_seconds = None
    for name, description in PAR_MODELS.items():
        metrics = read(RUNS / "eval64" / name / "metrics.json")
        bench = read(RUNS / "eval64" / name / "bench-b1.json")
        log = RUNS / f"fmnist64-{name}" / "log.jsonl"
        if not metrics or not bench or not log.is_file():
            print(f"| {description} | (not run) |")
            continue
        last = json.loads(log.read_text().splitlines()[-1])
        seconds = bench["ms_per_step_median"] * bench["steps"] / 1e3
        baseline_seconds = baseline_seconds or seconds
        fid = f"{metrics['fid']:.1f} ± {metrics['fid_bootstrap_std']:.1f}"
        print(f"| {description} | {bench['steps']} | {last['elapsed_s'] / 60:.1f} | {last['model_loss']:.3f} | "
              f"{seconds:.3f} | {baseline_seconds / seconds:.2f}x | {fid} | {metrics['inception_score']:.2f} | "
              f"{metrics['precision']:.3f} | {metrics['recall']:.3f} | {metrics['class_accuracy']:.1%} |")


if __name__ == "__main__":
    {"par": par}[sys.argv[1] if len(sys.argv) > 1 else "par"]()
