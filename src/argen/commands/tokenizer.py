"""`argen tokenizer train` and `argen tokenizer eval` (also `argen eval tokenizer`): a VQ tokenizer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import add_extractor, output_folder, print_json, progress
from argen.commands.training import add_training_arguments, print_or_train, run_config
from argen.config import VQ_PRESETS


def add(commands: Any) -> None:
    tokenizer = commands.add_parser("tokenizer", help="train or evaluate a VQ tokenizer")
    subcommands = tokenizer.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    train = subcommands.add_parser("train", help="train a VQ tokenizer on images")
    add_training_arguments(train, VQ_PRESETS)
    train.add_argument("--data-dir", help="dataset folder (else found automatically)")
    train.set_defaults(run=run_train)
    add_eval(subcommands, "eval")


def add_eval(commands: Any, name: str) -> None:
    """The tokenizer evaluation under `name` (it is both `tokenizer eval` and `eval tokenizer`)."""
    evaluate = commands.add_parser(
        name,
        help="PSNR, codebook usage, a reconstruction grid; rFID and the "
        "reconstructions' class accuracy with an extractor; LPIPS with its weight files",
    )
    evaluate.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    add_extractor(evaluate)
    evaluate.add_argument("--lpips-vgg", type=Path, help="torchvision's VGG16 weights (with --lpips-linear: LPIPS)")
    evaluate.add_argument("--lpips-linear", type=Path, help="LPIPS' lin layers (LlamaGen's vgg.pth)")
    evaluate.add_argument("--out", type=output_folder, default="runs/tokenizer-eval")
    evaluate.add_argument("--split", default="test", choices=["train", "test"])
    evaluate.add_argument("--count", type=int, default=0, help="images to use (0 = all)")
    evaluate.add_argument("--data-dir", help="dataset folder (else the one the tokenizer was trained on)")
    evaluate.set_defaults(run=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from argen.config import TokenizerRunConfig
    from argen.train.recipes import train_tokenizer

    config = run_config(args, TokenizerRunConfig, {"data.path": args.data_dir, "train.out_dir": args.out})
    print_or_train(args, config, train_tokenizer, "tokenizer checkpoint")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from argen.eval.inception import load_extractor
    from argen.eval.tokenizer import evaluate_tokenizer
    from argen.tokenizer.lpips import load_lpips

    if (args.lpips_vgg is None) != (args.lpips_linear is None):
        raise ValueError("LPIPS needs both files: --lpips-vgg (VGG16) and --lpips-linear (vgg.pth)")
    lpips = load_lpips(args.lpips_vgg, args.lpips_linear) if args.lpips_vgg else None
    extractor = load_extractor(args.classifier, args.inception, required=False)
    return print_json(
        evaluate_tokenizer(
            args.tokenizer,
            args.out,
            split=args.split,
            count=args.count,
            data_dir=args.data_dir,
            progress=progress(),
            extractor=extractor,
            lpips=lpips,
        )
    )
