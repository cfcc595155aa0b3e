"""The `argen` commands, one module each. A module's `add` declares the command's arguments and sets `run`, the
function that runs it; the parser is assembled from them here and argen.cli runs the chosen one.

Command modules import only what their arguments need at the top; each `run` imports the library (and with it torch)
when it starts, so that `argen --help` and `argen --version` answer at once. These late imports are the one
exception to importing at the top (tests/test_imports.py): nothing imports a command module but this package, so no
cycle can hide behind them."""

from __future__ import annotations

import argparse

from argen import __version__
from argen.commands import (
    analyze,
    bench,
    convert,
    ctf,
    data,
    demo,
    evaluate,
    probe,
    report,
    sample,
    serve,
    tokenize,
    tokenizer,
    train,
    video,
)
from argen.commands.arguments import Parser

DESCRIPTION = (
    "argen: autoregressive image and video generation - LlamaGen's transformer decoded one token at a "
    "time, with PAR, CTF or Prologue. `argen COMMAND --help` lists a command's options and defaults."
)
# In the order `argen --help` lists them: the pipeline's steps first.
COMMANDS = (
    tokenizer,
    tokenize,
    train,
    sample,
    data,
    ctf,
    bench,
    convert,
    evaluate,
    video,
    report,
    probe,
    demo,
    serve,
    analyze,
)


def build_parser(description: str = DESCRIPTION) -> argparse.ArgumentParser:
    """Every command's arguments; a parsed command line's `run` is the function that runs it."""
    parser = Parser(prog="argen", description=description)
    parser.add_argument("--version", action="version", version=f"argen {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads of this process (default: one per core; on a "
        "machine shared with other jobs, or under torchrun, 1 is faster; OMP_NUM_THREADS also works)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="command")
    for command in COMMANDS:
        command.add(subparsers)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse a command line; `key=value` overrides may come anywhere, also after an option (argparse alone takes
    them only before the first one), and `argen eval SAMPLES` means `argen eval samples SAMPLES`."""
    args, unknown = parser.parse_known_args(evaluate.shorthand(list(argv)))
    overrides = [item for item in unknown if "=" in item and not item.startswith("-")]
    if unknown and (overrides != unknown or not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args
