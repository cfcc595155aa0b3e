"""`argen convert`: LlamaGen's and PAR's published checkpoints as argen checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_folder


def add(commands: Any) -> None:
    convert = commands.add_parser("convert", help="convert LlamaGen / PAR checkpoints to argen checkpoints")
    convert.add_argument("kind", choices=["llamagen", "par", "llamagen-vq"])
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=output_folder)
    convert.add_argument("--preset", required=True, help="GPT preset (llamagen, par) or VQ preset (llamagen-vq)")
    convert.add_argument("--parallel", type=int, default=4, help="PAR: tokens per parallel step k")
    convert.add_argument("overrides", nargs="*", metavar="key=value")
    convert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.io.convert import convert_checkpoint

    directory = convert_checkpoint(args.kind, args.source, args.destination, args.preset, args.parallel, args.overrides)
    print(f"argen checkpoint: {directory}")
    return 0
