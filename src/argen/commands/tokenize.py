"""`argen tokenize`: the token cache of a dataset (what the AR trains on)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_folder, progress


def add(commands: Any) -> None:
    tokenize = commands.add_parser("tokenize", help="write the token cache of a dataset")
    tokenize.add_argument("--tokenizer", required=True, type=Path)
    tokenize.add_argument("--out", required=True, type=output_folder)
    tokenize.add_argument("--split", default="train", choices=["train", "test"])
    tokenize.add_argument("--data-dir")
    tokenize.add_argument("--limit", type=int, default=0, help="tokenize only the first N images (0 = all)")
    tokenize.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="keep the split's last N images out of the cache "
        "as a validation split (guidance is chosen on it: argen eval ref --holdout-of CACHE)",
    )
    tokenize.add_argument(
        "--flip-copies",
        action="store_true",
        help="also store horizontally mirrored copies "
        "(right for clothing and natural images, wrong for digits and text)",
    )
    tokenize.add_argument(
        "--ten-crops",
        action="store_true",
        help="store LlamaGen's ten crops of every image "
        "(centre crop at 1.1x, 5 crops and their mirrors); training draws one per sample and epoch",
    )
    tokenize.add_argument(
        "--shard-size",
        type=int,
        default=16384,
        help="samples per shard file (the unit of work of a rank and of a restart)",
    )
    tokenize.add_argument(
        "--workers", type=int, help="DataLoader processes decoding images (default: the tokenizer's data.num_workers)"
    )
    tokenize.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.data.tokenize import tokenize
    from argen.io.run_folder import own_folder

    with own_folder(args.out, "tokenize"):
        directory = tokenize(
            args.tokenizer,
            args.out,
            split=args.split,
            data_dir=args.data_dir,
            flip_copies=args.flip_copies,
            ten_crops=args.ten_crops,
            limit=args.limit,
            num_workers=args.workers,
            shard_size=args.shard_size,
            progress=progress(),
            holdout=args.holdout,
        )
    print(f"token cache: {directory}")
    return 0
