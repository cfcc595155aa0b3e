"""Training speed of the demo's AR size on this machine: fp32 / bf16 autocast, eager / compiled, one run.

    .venv/bin/python benchmarks/train_speed.py [--steps 20] [--cache runs/speed-cache]

Writes a token cache of 2,000 Fashion-MNIST test images with the shipped tokenizer (once), then trains
`configs/fmnist64-ar.yaml` at width 128 (the demo's models) for --steps steps in each setting, back to back, and
prints images/s and tokens/s of the steps after the first logging window (compilation and warm-up left out), with
what `train.precision=auto` picks here. Compare the ratios of one run; the CPU model is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from argen.machine import describe
from argen.precision import training_precision

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]


def argen(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "argen.cli", *arguments], check=True, cwd=ROOT,
                   env={**os.environ, "ARGEN_NO_PROGRESS": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "speed-cache")
    args = parser.parse_args()
    if not (args.cache / "manifest.json").is_file():
        argen("tokenize", "--tokenizer", "checkpoints/fmnist64/tokenizer", "--split", "test", "--limit", "2000",
              "--out", str(args.cache))
    machine = describe()
    print(json.dumps({"cpu": machine.get("cpu_model"), "isa": machine.get("isa"), "threads": machine.get("threads"),
                      "auto_picks": training_precision("cpu")}))
    with tempfile.TemporaryDirectory() as work:
        for precision, compiled in SETTINGS:
            out = Path(work) / f"{precision}-{compiled}"
            argen("train", "--preset", "GPT-S", "--config", "configs/fmnist64-ar.yaml", "--cache", str(args.cache),
                  "--out", str(out), "model.dim=128", f"train.steps={args.steps}", "train.log_every=5",
                  f"train.precision={precision}", f"train.compile={str(compiled).lower()}", "train.sample_every=0",
                  "train.checkpoint_every=1000")
            records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()][1:]
            images = sum(record["images_per_s"] for record in records) / len(records)
            tokens = sum(record["tokens_per_s"] for record in records) / len(records)
            print(json.dumps({"precision": precision, "compile": compiled, "images_per_s": round(images, 1),
                              "tokens_per_s": round(tokens)}), flush=True)


if __name__ == "__main__":
    main()
