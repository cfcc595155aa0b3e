"""`argen bench sample|live`: decode speed against the bandwidth bound, and what watching a run costs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import positive, print_table
from argen.config import DECODE_PRECISIONS, GPT_PRESETS, LIVE_DISPLAY_BUDGET


def add(commands: Any) -> None:
    bench = commands.add_parser("bench", help="benchmarks")
    subcommands = bench.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    sample = subcommands.add_parser("sample", help="decode speed: ms/step, images/s, bandwidth fraction")
    sample.add_argument("--model", type=Path, help="AR checkpoint directory")
    sample.add_argument(
        "--refiner", type=Path, help="CTF refiner checkpoint: time its pass too (--model is the coarse AR)"
    )
    sample.add_argument("--preset", help=f"model preset with random weights: {', '.join(GPT_PRESETS)}")
    sample.add_argument("--random-weights", action="store_true", help="build --preset with random weights")
    sample.add_argument("--batch", type=int, default=1)
    sample.add_argument(
        "--cfg",
        type=float,
        help="guidance scale (default: the model's shipped setting, as argen sample uses it; 1 for --preset)",
    )
    sample.add_argument("--parallel", type=int, default=1)
    sample.add_argument("--grid", type=int, default=16, help="token grid side for --preset")
    sample.add_argument("--dtype", default="auto", choices=DECODE_PRECISIONS)
    sample.add_argument(
        "--speculative",
        type=int,
        default=0,
        metavar="W",
        help="speculative Jacobi decoding over windows of W steps (0 = off)",
    )
    sample.add_argument("--repeats", type=int, default=3)
    sample.add_argument(
        "--bandwidth-gbs",
        type=float,
        help="memory bandwidth of the bound (default: measured once on this machine, cached)",
    )
    sample.add_argument("--json", action="store_true")
    sample.add_argument("overrides", nargs="*", metavar="key=value", help="model overrides, e.g. n_layer=2")
    sample.set_defaults(run=run_sample)
    live = subcommands.add_parser("live", help="what watching a run costs (argen serve's live display)")
    live.add_argument("--model", required=True, type=Path, help="AR checkpoint or pipeline directory")
    live.add_argument("--tokenizer", type=Path, help="tokenizer checkpoint (else the one the model names)")
    live.add_argument("--refiner", type=Path, help="CTF: the refiner of a coarse AR model")
    live.add_argument("--batch", type=int, default=1)
    live.add_argument("--cfg", type=float, default=2.0, help="classifier-free guidance scale (1 = off)")
    live.add_argument("--repeats", type=int, default=5)
    live.add_argument(
        "--budget",
        type=float,
        default=LIVE_DISPLAY_BUDGET,
        help="share of the sampling time that partial renders may take",
    )
    live.add_argument("--json", action="store_true")
    live.set_defaults(run=run_live)


def run_sample(args: argparse.Namespace) -> int:
    from argen.bench import run_sample_benchmark

    if args.preset and not args.random_weights:
        raise ValueError("--preset benchmarks random weights: add --random-weights")
    if args.refiner and not args.model:
        raise ValueError("--refiner needs --model (the coarse AR trained with the refiner's clusters table)")
    result = run_sample_benchmark(
        model=args.model,
        preset_name=args.preset,
        random_weights=args.random_weights,
        batch=args.batch,
        guidance=args.cfg,
        parallel=args.parallel,
        grid=args.grid,
        dtype=args.dtype,
        repeats=args.repeats,
        bandwidth_gbs=args.bandwidth_gbs,
        overrides=args.overrides,
        refiner=args.refiner,
        speculative=args.speculative,
    )
    return print_table(result, args.json)


def run_live(args: argparse.Namespace) -> int:
    from argen.bench import run_live_benchmark

    positive(batch=args.batch, repeats=args.repeats)
    if not args.budget >= 0:
        raise ValueError(f"--budget must be >= 0, got {args.budget}")
    return print_table(
        run_live_benchmark(args.model, args.tokenizer, args.refiner, args.batch, args.cfg, args.repeats, args.budget),
        args.json,
    )
