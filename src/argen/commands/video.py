"""`argen video make-dataset`: a video dataset split as a video batch (.npz) with a GIF and PNG preview."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_file


def add(commands: Any) -> None:
    video = commands.add_parser("video", help="video datasets")
    subcommands = video.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    make_dataset = subcommands.add_parser(
        "make-dataset",
        help="write a video dataset split as a video batch (.npz) with a GIF and PNG preview",
        description="Overrides are data.* keys, e.g. data.name=moving-digits data.video.frames=4.",
    )
    make_dataset.add_argument("--print-config", action="store_true", help="print the data config and exit")
    make_dataset.add_argument("overrides", nargs="*", metavar="data.key=value")
    make_dataset.add_argument(
        "--tokenizer", type=Path, help="start from the data config of this tokenizer (else moving-fashion-mnist)"
    )
    make_dataset.add_argument("--split", default="test", choices=["train", "test"])
    make_dataset.add_argument("--count", type=int, default=0, help="the first N videos (0 = all)")
    make_dataset.add_argument("--preview", type=int, default=20, help="videos in the preview GIF and strip")
    make_dataset.add_argument("--fps", type=float, default=4.0)
    make_dataset.add_argument("--out", required=True, type=output_file, help="video batch file (.npz)")
    make_dataset.set_defaults(run=run_make_dataset)


def run_make_dataset(args: argparse.Namespace) -> int:
    from argen.config import DataConfig, build, dump_yaml
    from argen.data.video import load_video_dataset
    from argen.eval.video import write_real_videos
    from argen.io.load import tokenizer_config

    # The tokenizer's data settings: the videos its token cache was written from.
    base = tokenizer_config(args.tokenizer).data if args.tokenizer else DataConfig(name="moving-fashion-mnist")
    unprefixed = [item for item in args.overrides if not item.startswith("data.")]
    if unprefixed:
        raise ValueError(f"make-dataset takes data.* overrides (as `argen tokenizer train` does), got {unprefixed}")
    config = build(
        DataConfig,
        base=base,
        overrides=[
            f"split={args.split}",
            f"limit={args.count}",
            "flip=false",
            *(item[len("data.") :] for item in args.overrides),
        ],
    )
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    dataset = load_video_dataset(config)
    out = write_real_videos(dataset, args.out, args.preview, args.fps)
    print(
        f"{len(dataset)} videos of {config.video.frames} frames of {config.image_size}x{config.image_size}, "
        f"{dataset.num_classes} classes: {out} (preview: {out.with_suffix('.gif')}, {out.with_suffix('.png')})"
    )
    return 0
