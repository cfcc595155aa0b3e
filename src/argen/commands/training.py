"""What the training commands (`tokenizer train`, `train`, `ctf train-refiner`, `eval train-classifier`) take and
do alike: a preset, a YAML file, key=value overrides and a run folder, merged into one run config that
--print-config prints and a run trains."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from argen.commands.arguments import progress
from argen.config import build_run, dump_yaml
from argen.io.paths import check_writable
from argen.io.run_folder import own_folder


def add_training_arguments(parser: argparse.ArgumentParser, presets: dict[str, Any] | None) -> None:
    """A model preset (when the model has presets), a YAML config, --print-config, key=value overrides and --out."""
    if presets is not None:
        parser.add_argument("--preset", help=f"model preset: {', '.join(presets)}")
    parser.add_argument("--config", type=Path, help="YAML file merged over the preset")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4")
    parser.add_argument("--out", help="output run directory (train.out_dir)")


def run_config(
    args: argparse.Namespace, cls: type, options: dict[str, Any], derive: Callable[[Any], Any] | None = None
) -> Any:
    """The run config of --preset, --config and key=value overrides (argen.config.build_run); `options` are the
    command-line options given, as dotted keys (unset ones are left out)."""
    overrides = [*(f"{key}={value}" for key, value in options.items() if value), *args.overrides]
    return build_run(cls, getattr(args, "preset", None), args.config, overrides, derive)


def print_or_train(args: argparse.Namespace, config: Any, train: Callable[..., Path], what: str) -> Path | None:
    """--print-config prints the config; otherwise train (the run folder checked writable and owned first) and
    return the checkpoint folder."""
    if args.print_config:
        print(dump_yaml(config), end="")
        return None
    check_writable(config.train.out_dir)
    with own_folder(config.train.out_dir, what):
        directory = train(config, progress=progress())
    print(f"{what}: {directory}")
    return directory
