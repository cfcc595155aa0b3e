"""`argen convert`: LlamaGen's, PAR's and Prologue's published checkpoints as argen checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_folder

KINDS = ("llamagen", "par", "llamagen-vq", "prologue-ar", "prologue-tokenizer")


def add(commands: Any) -> None:
    convert = commands.add_parser(
        "convert", help="convert LlamaGen / PAR checkpoints (.pt) and Prologue's released ARs and tokenizers"
    )
    convert.add_argument("kind", choices=KINDS)
    convert.add_argument("source", type=Path, help="the checkpoint file (Prologue's: the released folder)")
    convert.add_argument("destination", type=output_folder)
    convert.add_argument("--preset", help="GPT preset (llamagen, par) or VQ preset (llamagen-vq)")
    convert.add_argument("--parallel", type=int, default=4, help="PAR: tokens per parallel step k")
    convert.add_argument("--prologue-length", type=int, default=16, help="prologue-ar: prologue tokens per image")
    convert.add_argument("--prologue-codes", type=int, default=1024, help="prologue-ar: the prologue codebook's size")
    convert.add_argument("--grid", type=int, nargs=2, default=[16, 16], metavar=("H", "W"),
                         help="prologue-ar: the visual token grid")  # fmt: skip
    convert.add_argument("--rope-dims", type=int, nargs="+", help="RoPE's head dims: prologue-ar the rotated ones "
                         "(24), prologue-tokenizer the three axes' (20 20 24)")  # fmt: skip
    convert.add_argument("--tokenizer", type=Path, help="prologue-ar: the converted tokenizer folder it decodes with")
    convert.add_argument("--image-size", type=int, default=256, help="prologue-tokenizer: the image side")
    convert.add_argument("--patch-size", type=int, default=16, help="prologue-tokenizer: the patch side")
    convert.add_argument("overrides", nargs="*", metavar="key=value")
    convert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.io.convert import convert_checkpoint
    from argen.io.prologue_release import convert_prologue_ar, convert_prologue_tokenizer

    if args.kind.startswith("prologue") and (args.preset or args.overrides):
        raise ValueError(f"{args.kind} reads its sizes from the weights: drop --preset and key=value overrides")
    if args.tokenizer and args.kind != "prologue-ar":
        raise ValueError("--tokenizer names the tokenizer a converted prologue-ar decodes with")
    if args.kind == "prologue-ar":
        rope = args.rope_dims or [24]
        if len(rope) != 1:
            raise ValueError("prologue-ar: --rope-dims takes one number, the rotated head dims (24)")
        directory = convert_prologue_ar(args.source, args.destination, args.prologue_length, args.prologue_codes,
                                        tuple(args.grid), rope[0], args.tokenizer)  # fmt: skip
    elif args.kind == "prologue-tokenizer":
        rope = tuple(args.rope_dims or (20, 20, 24))
        directory = convert_prologue_tokenizer(args.source, args.destination, args.image_size, args.patch_size, rope)
    else:
        if not args.preset:
            raise ValueError(f"convert {args.kind} needs --preset (the model's size is not stored in a .pt)")
        directory = convert_checkpoint(
            args.kind, args.source, args.destination, args.preset, args.parallel, args.overrides
        )
    print(f"argen checkpoint: {directory}")
    return 0
