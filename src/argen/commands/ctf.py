"""`argen ctf cluster|redundancy|ceiling|train-refiner`: CTF's codebook clusters, its premise measured, what its
fine stage alone costs, and its refiner."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_file, output_folder, positive, progress
from argen.commands.training import add_training_arguments, print_or_train, run_config
from argen.config import CLUSTER_METHODS, GPT_PRESETS


def add(commands: Any) -> None:
    ctf = commands.add_parser("ctf", help="CTF: codebook clusters and the coarse-to-fine refiner")
    subcommands = ctf.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    cluster = subcommands.add_parser("cluster", help="cluster a tokenizer's codebook into a fine -> coarse table")
    cluster.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    cluster.add_argument("--clusters", required=True, type=int, help="number of clusters K (coarse labels)")
    cluster.add_argument(
        "--method",
        default="spherical",
        choices=CLUSTER_METHODS,
        help="spherical (cosine) k-means, as CTF clusters l2-normalised codes; kmeans (Euclidean); "
        "balanced (equal sizes); random (the CTF paper's negative ablation) (default: %(default)s)",
    )
    cluster.add_argument("--restarts", type=int, default=4, help="k-means restarts; the lowest inertia is kept")
    cluster.add_argument("--seed", type=int, default=0)
    cluster.add_argument(
        "--out", required=True, type=output_file, help="table file (.safetensors); a -sizes.png beside"
    )
    cluster.set_defaults(run=run_cluster)
    redundancy = subcommands.add_parser(
        "redundancy", help="CTF's premise: PSNR after swapping each token for a random member of its cluster"
    )
    redundancy.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    redundancy.add_argument("--clusters", required=True, type=int, help="number of clusters K (coarse labels)")
    redundancy.add_argument(
        "--methods",
        nargs="+",
        default=list(CLUSTER_METHODS),
        choices=CLUSTER_METHODS,
        help="clusterings to compare (default: %(default)s)",
    )
    redundancy.add_argument("--count", type=int, default=500, help="test images (default: %(default)s)")
    redundancy.add_argument("--seed", type=int, default=0)
    redundancy.add_argument("--out", type=output_file, help="also write the JSON here")
    redundancy.set_defaults(run=run_redundancy)
    ceiling = subcommands.add_parser(
        "ceiling",
        help="what the fine stage alone costs: test images' true coarse "
        "maps refined and decoded (token accuracy, PSNR, samples.npz for argen eval)",
    )
    ceiling.add_argument("--refiner", required=True, type=Path, help="refiner checkpoint directory")
    ceiling.add_argument("--tokenizer", required=True, type=Path, help="the tokenizer the refiner was trained on")
    ceiling.add_argument("--count", type=int, default=1000, help="test images")
    ceiling.add_argument("--refine-temperature", type=float, default=1.0)
    ceiling.add_argument("--seed", type=int, default=0)
    ceiling.add_argument("--out", required=True, type=output_folder)
    ceiling.set_defaults(run=run_ceiling)
    train_refiner = subcommands.add_parser("train-refiner", help="train the refiner: coarse map -> fine ids")
    add_training_arguments(train_refiner, GPT_PRESETS)
    train_refiner.add_argument("--cache", help="token cache directory (argen tokenize)")
    train_refiner.add_argument("--table", help="fine -> coarse table of the cache's tokenizer (argen ctf cluster)")
    train_refiner.set_defaults(run=run_train_refiner)


def run_cluster(args: argparse.Namespace) -> int:
    from argen.ctf.cluster import cluster_tokenizer
    from argen.ctf.table import histogram_path

    table = cluster_tokenizer(
        args.tokenizer, args.clusters, args.out, method=args.method, restarts=args.restarts, seed=args.seed
    )
    sizes = table.sizes
    print(
        f"{table.fine_vocab} codes in {table.coarse_vocab} clusters ({args.method}): sizes {int(sizes.min())} to "
        f"{int(sizes.max())}, inertia {table.metadata['inertia']:.6g}"
    )
    print(f"fine -> coarse table: {args.out} (histogram: {histogram_path(args.out)})")
    return 0


def run_redundancy(args: argparse.Namespace) -> int:
    from argen.ctf.redundancy import group_redundancy
    from argen.io.checkpoint import save_json

    result = group_redundancy(
        args.tokenizer, args.clusters, args.methods, args.count, seed=args.seed, progress=progress()
    )
    print(
        f"{result['images']} test images, {args.clusters} clusters; every token swapped for a random member of its "
        "cluster, PSNR against the reconstruction:"
    )
    for method, scores in result["methods"].items():
        print(
            f"  {method:10s} {scores['psnr_db']:6.2f} dB   within-cluster cosine "
            f"{scores['within_cluster_cosine']:.3f}   largest cluster {scores['largest_cluster']} codes"
        )
    if args.out:
        save_json(args.out, result)
    return 0


def run_ceiling(args: argparse.Namespace) -> int:
    from argen.ctf.ceiling import refiner_ceiling
    from argen.ctf.sample import RefineOptions

    positive(count=args.count)
    result = refiner_ceiling(
        args.refiner,
        args.tokenizer,
        args.out,
        args.count,
        RefineOptions(temperature=args.refine_temperature),
        args.seed,
        progress=progress(),
    )
    print(
        f"refiner ceiling on {result['images']} test images: {result['token_accuracy']:.1%} of tokens right, "
        f"{result['outside_cluster']:.1%} outside their cluster, {result['psnr_db']:.2f} dB against the "
        f"reconstruction; score {Path(args.out) / 'samples.npz'} with argen eval"
    )
    return 0


def run_train_refiner(args: argparse.Namespace) -> int:
    from argen.config import RefinerRunConfig
    from argen.ctf.table import load_table
    from argen.io.load import open_token_cache, refiner_config_from_cache
    from argen.train.recipes import train_refiner

    def from_cache(base: RefinerRunConfig, explicit: dict) -> RefinerRunConfig | None:
        path, table_path = explicit.get("cache", base.cache), explicit.get("coarse_table", base.coarse_table)
        if not (path and table_path):
            return None
        return refiner_config_from_cache(base, open_token_cache(str(path)), load_table(str(table_path)).coarse_vocab)

    config = run_config(
        args, RefinerRunConfig, {"cache": args.cache, "coarse_table": args.table, "train.out_dir": args.out}, from_cache
    )
    print_or_train(args, config, train_refiner, "refiner checkpoint")
    return 0
