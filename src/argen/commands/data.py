"""`argen data pack`: an image folder as WebDataset tar shards."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_folder


def add(commands: Any) -> None:
    data = commands.add_parser("data", help="prepare datasets")
    subcommands = data.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    pack = subcommands.add_parser(
        "pack", help="pack an image folder (<class>/<image>) into WebDataset tar shards (data.name=webdataset)"
    )
    pack.add_argument("--images", required=True, type=Path, help="image folder, one sub-folder per class")
    pack.add_argument("--out", required=True, type=output_folder, help="folder for the shards and shards.json")
    pack.add_argument("--shard-size", type=int, default=2000, help="images per tar shard")
    pack.set_defaults(run=run_pack)


def run_pack(args: argparse.Namespace) -> int:
    from argen.data.tar_shards import pack_image_folder
    from argen.io.run_folder import own_folder

    with own_folder(args.out, "data pack"):
        directory = pack_image_folder(args.images, args.out, args.shard_size)
    print(f"tar shards: {directory}")
    return 0
