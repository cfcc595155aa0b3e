"""The `argen` command line: a thin layer over argen's recipes; every command validates its inputs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from argen import __version__
from argen.config import ConfigError, build, dump_yaml, preset


def _progress() -> bool:
    return os.environ.get("ARGEN_NO_PROGRESS", "") == ""


def _add_config_arguments(parser: argparse.ArgumentParser, presets: dict[str, Any] | None) -> None:
    if presets is not None:
        parser.add_argument("--preset", help=f"model preset: {', '.join(presets)}")
    parser.add_argument("--config", type=Path, help="YAML file merged over the preset")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4")


def _run_config(args: argparse.Namespace, cls: type, presets: dict[str, Any] | None, model_cls: type | None,
                extra: list[str] | None = None) -> Any:
    """Defaults, then the named model preset, then --config YAML, then key=value overrides."""
    base = cls()
    if presets is not None and getattr(args, "preset", None):
        base = dataclasses.replace(base, model=preset(presets, args.preset, model_cls))
        if hasattr(base, "data") and hasattr(base.model, "image_size"):
            # The tokenizer fixes the image format: keep the data in step with the preset.
            base = dataclasses.replace(base, data=dataclasses.replace(
                base.data, image_size=base.model.image_size, channels=base.model.in_channels))
    return build(cls, base=base, yaml_path=args.config, overrides=[*(extra or []), *args.overrides])


def _print_or_none(args: argparse.Namespace, config: Any) -> bool:
    if args.print_config:
        print(dump_yaml(config), end="")
        return True
    return False


# ------------------------------------------------------------------------------------------------
# commands


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from argen.config import VQ_PRESETS, TokenizerRunConfig, VQConfig

    extra = [f"data.path={args.data_dir}"] if args.data_dir else []
    extra += [f"train.out_dir={args.out}"] if args.out else []
    config = _run_config(args, TokenizerRunConfig, VQ_PRESETS, VQConfig, extra)
    if _print_or_none(args, config):
        return 0
    from argen.train import recipes

    directory = recipes.train_tokenizer(config, progress=_progress())
    print(f"tokenizer checkpoint: {directory}")
    return 0


def cmd_tokenizer_eval(args: argparse.Namespace) -> int:
    from argen.train import recipes

    result = recipes.evaluate_tokenizer(args.tokenizer, args.out, split=args.split, count=args.count,
                                        data_dir=args.data_dir, progress=_progress())
    print(json.dumps(result, indent=2))
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from argen.train import recipes

    directory = recipes.tokenize(args.tokenizer, args.out, split=args.split, data_dir=args.data_dir,
                                 flip_copies=args.flip_copies, progress=_progress())
    print(f"token cache: {directory}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from argen.config import VQ_PRESETS

    parser = argparse.ArgumentParser(prog="argen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"argen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")

    tokenizer = commands.add_parser("tokenizer", help="train or evaluate a VQ tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    train = tokenizer_commands.add_parser("train", help="train a VQ tokenizer on images")
    _add_config_arguments(train, VQ_PRESETS)
    train.add_argument("--data-dir", help="dataset folder (else found automatically)")
    train.add_argument("--out", help="output run directory (train.out_dir)")
    train.set_defaults(handler=cmd_tokenizer_train)
    evaluate = tokenizer_commands.add_parser("eval", help="MSE, PSNR, codebook usage and a reconstruction grid")
    evaluate.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    evaluate.add_argument("--out", type=Path, default=Path("runs/tokenizer-eval"))
    evaluate.add_argument("--split", default="test", choices=["train", "test"])
    evaluate.add_argument("--count", type=int, default=0, help="images to use (0 = all)")
    evaluate.add_argument("--data-dir", help="dataset folder (else the one the tokenizer was trained on)")
    evaluate.set_defaults(handler=cmd_tokenizer_eval)

    tokenize = commands.add_parser("tokenize", help="write the token cache of a dataset")
    tokenize.add_argument("--tokenizer", required=True, type=Path)
    tokenize.add_argument("--out", required=True, type=Path)
    tokenize.add_argument("--split", default="train", choices=["train", "test"])
    tokenize.add_argument("--data-dir")
    tokenize.add_argument("--flip-copies", action="store_true", help="also store horizontally flipped copies")
    tokenize.set_defaults(handler=cmd_tokenize)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"argen: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
