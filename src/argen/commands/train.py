"""`argen train`: the AR transformer on a token cache (CTF: on its coarse labels)."""

from __future__ import annotations

import argparse
from typing import Any

from argen.commands.training import add_training_arguments, print_or_train, run_config
from argen.config import GPT_PRESETS


def add(commands: Any) -> None:
    train = commands.add_parser("train", help="train the AR transformer on a token cache")
    add_training_arguments(train, GPT_PRESETS)
    train.add_argument("--cache", help="token cache directory (argen tokenize)")
    train.add_argument("--coarse-table", help="CTF: train on the coarse labels of this table (argen ctf cluster)")
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.config import ARRunConfig
    from argen.io.load import ar_config_from_cache, open_coarse_table, open_token_cache
    from argen.train.recipes import train_ar

    def from_cache(base: ARRunConfig, explicit: dict) -> ARRunConfig | None:
        path, table_path = explicit.get("cache", base.cache), explicit.get("coarse_table", base.coarse_table)
        if not path:
            return None
        cache = open_token_cache(str(path))
        return ar_config_from_cache(base, cache, open_coarse_table(str(table_path), cache) if table_path else None)

    config = run_config(
        args,
        ARRunConfig,
        {"cache": args.cache, "coarse_table": args.coarse_table, "train.out_dir": args.out},
        from_cache,
    )
    print_or_train(args, config, train_ar, "AR checkpoint")
    return 0
