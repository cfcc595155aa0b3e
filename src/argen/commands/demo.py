"""`argen demo`: Fashion-MNIST end to end with the shipped models: samples, metrics and an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_folder, progress


def add(commands: Any) -> None:
    demo = commands.add_parser("demo", help="Fashion-MNIST end to end: samples, metrics and an HTML report")
    demo.add_argument("--out", type=output_folder, default="runs/demo")
    demo.add_argument("--checkpoints", type=Path, help="checkpoint folder (default: the shipped checkpoints)")
    demo.add_argument("--train", action="store_true", help="train a quick pipeline from scratch first")
    demo.add_argument("--per-class", type=int, default=20, help="samples per class and method")
    demo.add_argument(
        "--per-batch",
        type=int,
        default=4,
        help="images of each class in one sampling batch (1: the latency regime, batch = classes)",
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.demo import run_demo

    run_demo(
        args.out,
        checkpoints=args.checkpoints,
        train=args.train,
        per_class=args.per_class,
        per_batch=args.per_batch,
        progress=progress(),
    )
    return 0
