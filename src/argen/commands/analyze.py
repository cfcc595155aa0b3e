"""`argen analyze entropy`: token dependency maps and per-position entropy of parallel vs sequential decoding
(PAR's analysis)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import named_paths, output_folder


def add(commands: Any) -> None:
    analyze = commands.add_parser("analyze", help="analyses of data and models")
    subcommands = analyze.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    entropy = subcommands.add_parser(
        "entropy", help="token dependency maps and per-position entropy of parallel vs sequential decoding (PAR)"
    )
    entropy.add_argument("--cache", required=True, type=Path, help="token cache (a test split for held-out numbers)")
    entropy.add_argument(
        "--models",
        nargs="*",
        default=[],
        metavar="[NAME=]DIR",
        help="AR checkpoints; the first is the baseline of the differences",
    )
    entropy.add_argument(
        "--reference",
        action="extend",
        nargs="+",
        default=[],
        metavar="R,C",
        help="reference positions (default: centre, corner, edge)",
    )
    entropy.add_argument("--limit", type=int, default=0, help="use the first N images of the cache (0 = all)")
    entropy.add_argument("--model-limit", type=int, default=1000, help="images teacher-forced per model (0 = all)")
    entropy.add_argument("--coarse", type=Path, help="fine -> coarse table (.safetensors, .npy, .json)")
    entropy.add_argument(
        "--alphabet",
        type=int,
        default=64,
        help="without --coarse: merge codes into this many frequency quantiles (0 = full codebook)",
    )
    entropy.add_argument("--correction", default="miller-madow", choices=["miller-madow", "none"])
    entropy.add_argument("--batch", type=int, default=64)
    entropy.add_argument("--device", default="cpu")
    entropy.add_argument("--out", required=True, type=output_folder)
    entropy.set_defaults(run=run_entropy)


def run_entropy(args: argparse.Namespace) -> int:
    from argen.eval.entropy_report import write_entropy_analysis

    try:
        references = [tuple(int(value) for value in text.split(",")) for text in args.reference] or None
    except ValueError as error:
        raise ValueError(
            f"--reference must be comma-separated grid indices such as 8,8, got {args.reference}"
        ) from error
    result = write_entropy_analysis(
        args.cache,
        args.out,
        models=named_paths(args.models, "--models"),
        references=references,
        limit=args.limit,
        model_limit=args.model_limit,
        coarse=args.coarse,
        alphabet=args.alphabet,
        correction=args.correction,
        batch_size=args.batch,
        device=args.device,
    )
    for model in result["models"]:
        increase = model.get("entropy_increase", {}).get("bits", 0.0)
        print(
            f"{model['name']}: entropy {model['entropy_bits']:.3f} bits/token, NLL {model['nll_bits']:.3f} "
            f"bits/token, entropy increase {increase:+.3f} bits/token"
        )
    print(f"entropy analysis: {Path(args.out) / 'entropy.json'}")
    return 0
