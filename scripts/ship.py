"""Copy a trained checkpoint into the repository's checkpoints/ folder, compactly.

    .venv/bin/python scripts/ship.py runs/fmnist64-ar1x/checkpoint checkpoints/fmnist64/ar-1x \
        --fp16 --tokenizer ../tokenizer

Writes model.safetensors (fp16 with --fp16: the loaders cast back to the model's dtype; the EMA weights with
--ema), config.json with
the tokenizer named relative to the shipped folder (its sha256, that of the weights it was trained with, is
kept) and `trained_sha256`, the sha256 of the weights as trained (fp16 changes the file, not what the models
trained on it expect), and the run's training log (log.jsonl beside the checkpoint); the optimizer state is
left behind. `--cfg G --temperature T` record the sampling settings chosen on a validation split
(`scripts/results_table.py choose` prints them), which `argen demo` then samples the model with; `--sampling JSON`
records any SamplingOptions fields instead (Prologue's split guidance), also with `--restamp`. The folder is
written beside the destination and swapped in whole. `shipped_sha256` records the weights file as shipped, so
that a later change to it is caught when the folder loads; absolute paths of the machine that trained the model
(its run folder, its CTF table) are cut to their last part. `--restamp DIR` applies both to a folder already in
checkpoints/ without touching its weights.
Reference statistics (`.npz` from `argen eval ref`) keep mu and sigma exact; --fp16 stores the
precision/recall feature vectors in fp16.
"""

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from argen.eval.reference import ReferenceStatistics
from argen.io import checkpoint as ckpt
from argen.io.load import EMA_WEIGHTS_FILE
from argen.sample import SamplingOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("source", type=Path, help="a checkpoint directory (config.json + model.safetensors)")
    parser.add_argument("destination", type=Path, nargs="?")
    parser.add_argument("--fp16", action="store_true", help="store floating weights in fp16")
    parser.add_argument("--tokenizer", help="the tokenizer's path relative to the destination (AR checkpoints)")
    parser.add_argument("--ema", action="store_true", help="ship the EMA weights (ema.safetensors)")
    parser.add_argument("--cfg", type=float, help="the guidance scale chosen for this model")
    parser.add_argument("--temperature", type=float, help="the temperature chosen for this model")
    parser.add_argument(
        "--sampling",
        type=json.loads,
        help="the sampling settings chosen, SamplingOptions fields as "
        "JSON (e.g. Prologue's split guidance), instead of --cfg and --temperature",
    )
    parser.add_argument("--restamp", action="store_true", help="only restamp the shipped folder SOURCE's config")
    args = parser.parse_args()
    if args.sampling is not None:
        if args.cfg is not None or args.temperature is not None:
            raise SystemExit("--sampling replaces --cfg and --temperature")
        SamplingOptions(**args.sampling)  # refused here, not when the model is sampled
    if args.restamp:
        restamp(args.source, args.sampling)
        return
    if args.destination is None:
        raise SystemExit("give the destination folder")
    if args.source.suffix == ".npz":
        ship_reference(args.source, args.destination, args.fp16)
        return
    meta = ckpt.read_meta(args.source)
    if args.tokenizer:
        if "tokenizer" not in meta:
            raise SystemExit(f"{args.source} names no tokenizer: --tokenizer is for AR checkpoints")
        meta["tokenizer"] = args.tokenizer
    meta.setdefault("trained_sha256", ckpt.checkpoint_checksum(args.source))
    if (args.cfg is None) != (args.temperature is None):
        raise SystemExit("--cfg and --temperature go together")
    if args.cfg is not None:
        meta["sampling"] = {"guidance": args.cfg, "temperature": args.temperature}
    if args.sampling is not None:
        meta["sampling"] = args.sampling
    kind, config = meta.pop("kind"), meta.pop("config")
    staging = args.destination.with_name(f".{args.destination.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    weights = ckpt.load_weights(args.source, EMA_WEIGHTS_FILE if args.ema else ckpt.WEIGHTS_FILE)
    ckpt.save_checkpoint(staging, kind, config, weights, extra=meta, dtype=torch.float16 if args.fp16 else None)
    restamp(staging)
    log = args.source.parent / "log.jsonl"
    if log.is_file():
        shutil.copyfile(log, staging / "log.jsonl")
    replaced = args.destination.with_name(f".{args.destination.name}.replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    if args.destination.exists():
        args.destination.rename(replaced)
    staging.rename(args.destination)
    shutil.rmtree(replaced, ignore_errors=True)
    size = sum(path.stat().st_size for path in args.destination.iterdir()) / 2**20
    print(f"{args.destination}: {kind}, {size:.1f} MB")


def without_machine_paths(value):
    """`value` (config.json's contents) with every absolute path cut to its last part."""
    if isinstance(value, dict):
        return {key: without_machine_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_machine_paths(item) for item in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return Path(value).name
    return value


def restamp(folder: Path, sampling: dict | None = None) -> None:
    """Record the shipped weights' sha256 in the folder's config.json and cut its machine paths; with `sampling`,
    record those sampling settings."""
    meta = without_machine_paths(ckpt.read_meta(folder))
    if sampling is not None:
        meta["sampling"] = sampling
    meta["shipped_sha256"] = ckpt.file_checksum(folder / ckpt.WEIGHTS_FILE)
    ckpt.save_json(folder / ckpt.CONFIG_FILE, meta)


def ship_reference(source: Path, destination: Path, fp16: bool) -> None:
    reference = ReferenceStatistics.load(source)
    if fp16:
        reference = dataclasses.replace(reference, features=reference.features.astype(np.float16))
    reference.save(destination)
    print(f"{destination}: reference statistics, {destination.stat().st_size / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
