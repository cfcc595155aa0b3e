"""Training speed of the demo's AR size on this machine: fp32 / bf16 autocast, eager / compiled, then how to fill
the cores (batch size; one run on every thread against one single-thread run per core at once), one run.

    .venv/bin/python benchmarks/train_speed.py [--steps 20] [--cache runs/speed-cache]

Writes a token cache of 2,000 Fashion-MNIST test images with the shipped tokenizer (once), then trains
`configs/fmnist64-ar.yaml` at width 128 (the demo's models) for --steps steps in each setting, back to back, and
prints images/s and tokens/s of the steps after the first logging window (compilation and warm-up left out), with
what `train.precision=auto` picks here. Concurrent runs report their sum. Compare the ratios of one run; the CPU
model is printed with them.
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
    subprocess.run(
        [sys.executable, "-m", "argen.cli", *arguments],
        check=True,
        cwd=ROOT,
        env={**os.environ, "ARGEN_NO_PROGRESS": "1"},
    )


def train(
    work: Path, name: str, cache: Path, steps: int, overrides: list[str], processes: int = 1, threads: int | None = None
) -> dict[str, float]:
    """Train `processes` runs at once (each on `threads` threads; default all) and sum their throughput."""
    outs = [work / f"{name}-{index}" for index in range(processes)]
    launcher = [sys.executable, "-m", "argen.cli"] + (["--threads", str(threads)] if threads else [])
    runs = [
        subprocess.Popen(
            [
                *launcher,
                "train",
                "--preset",
                "GPT-S",
                "--config",
                "configs/fmnist64-ar.yaml",
                "--cache",
                str(cache),
                "--out",
                str(out),
                "model.dim=128",
                f"train.steps={steps}",
                "train.log_every=5",
                "train.sample_every=0",
                "train.checkpoint_every=1000",
                *overrides,
            ],
            cwd=ROOT,
            env={**os.environ, "ARGEN_NO_PROGRESS": "1"},
        )
        for out in outs
    ]
    if any(run.wait() for run in runs):
        sys.exit(f"a training run of setting {name} failed")
    total = {"images_per_s": 0.0, "tokens_per_s": 0.0}
    for out in outs:
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()][1:]
        for key in total:
            total[key] += sum(record[key] for record in records) / len(records)
    return {key: round(value, 1) for key, value in total.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "speed-cache")
    args = parser.parse_args()
    if not (args.cache / "manifest.json").is_file():
        argen(
            "tokenize",
            "--tokenizer",
            "checkpoints/fmnist64/tokenizer",
            "--split",
            "test",
            "--limit",
            "2000",
            "--out",
            str(args.cache),
        )
    machine = describe()
    print(
        json.dumps(
            {
                "cpu": machine.get("cpu_model"),
                "isa": machine.get("isa"),
                "threads": machine.get("threads"),
                "auto_picks": training_precision("cpu"),
            }
        )
    )
    with tempfile.TemporaryDirectory() as work:
        for precision, compiled in SETTINGS:
            speed = train(
                Path(work),
                f"{precision}-{compiled}",
                args.cache,
                args.steps,
                [f"train.precision={precision}", f"train.compile={str(compiled).lower()}"],
            )
            print(json.dumps({"precision": precision, "compile": compiled, **speed}), flush=True)
        cores = os.cpu_count() or 1
        for batch, processes, threads in ((32, 1, None), (64, 1, None), (64, cores, 1)):
            speed = train(
                Path(work),
                f"b{batch}-p{processes}",
                args.cache,
                args.steps,
                ["train.precision=auto", f"train.batch_size={batch}"],
                processes,
                threads,
            )
            print(
                json.dumps(
                    {
                        "precision": "auto",
                        "batch": batch,
                        "processes": processes,
                        "threads_each": threads or "all",
                        **speed,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
