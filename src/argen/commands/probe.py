"""`argen probe`: a linear probe of the class on P prologue ids against the first P visual ids (Prologue)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_file, print_json


def add(commands: Any) -> None:
    probe = commands.add_parser("probe", help="linear probe of the class: P prologue ids vs the first P visual ids")
    probe.add_argument("--cache", required=True, type=Path, help="token cache with prologue ids (training set)")
    probe.add_argument("--test-cache", type=Path, help="token cache to test on (else a held-out part of --cache)")
    probe.add_argument("--test-fraction", type=float, default=0.2, help="held-out fraction without --test-cache")
    probe.add_argument("--regularization", type=float, default=1.0, help="inverse L2 strength (scikit-learn's C)")
    probe.add_argument("--max-iterations", type=int, default=1000)
    probe.add_argument("--seed", type=int, default=0)
    probe.add_argument("--out", type=output_file, help="also write the JSON here")
    probe.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.eval.probe import linear_probe

    return print_json(
        linear_probe(
            args.cache,
            args.test_cache,
            test_fraction=args.test_fraction,
            regularization=args.regularization,
            max_iterations=args.max_iterations,
            seed=args.seed,
        ),
        args.out,
    )
