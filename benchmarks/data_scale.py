"""The scale rehearsal of docs/data.md on a CPU: peak memory against dataset size, data throughput against
workers, 2-rank tokenization against 1 rank. Run from the repository root:

    python scripts/make_imagefolder.py --count 2000 --out /tmp/scale/fm256-2k
    python scripts/make_imagefolder.py --count 20000 --out /tmp/scale/fm256-20k
    PYTHONPATH=src python benchmarks/data_scale.py --small /tmp/scale/fm256-2k --large /tmp/scale/fm256-20k \\
        --work /tmp/scale/work

Peak RSS is the training process's own (ru_maxrss of a child run by a fresh Python), with data.num_workers=0 so
that it does all the reading itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from argen.data.image_folder import ImageFolderDataset
from argen.data.loader import BatchRequest, load_batches
from argen.data.token_cache import MANIFEST, write_token_cache

ARGEN = [sys.executable, "-m", "argen.cli", "--threads", "1"]
TOKENIZER = [
    "model.image_size=64",
    "model.in_channels=3",
    "model.ch=32",
    "model.ch_mult=[1,2,2]",
    "model.num_res_blocks=1",
    "model.z_channels=16",
    "model.codebook_size=256",
    "model.codebook_dim=8",
    "data.name=imagefolder",
    "data.image_size=64",
    "data.channels=3",
    "data.crop_min=0.8",
    "data.flip=true",
    "train.batch_size=8",
    "train.steps=3",
    "train.checkpoint_every=3",
]
AR = [
    "model.dim=64",
    "model.n_layer=2",
    "model.n_head=2",
    "train.batch_size=32",
    "train.steps=3",
    "train.checkpoint_every=3",
]


def peak_rss_mib(command: list[str]) -> float:
    """Run `command` from a fresh Python and return the peak RSS (MiB) of its largest process."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def throughput(folder: Path, workers: int, batches: int = 40, batch_size: int = 32) -> float:
    """Images per second decoded, randomly cropped, resized to 64 and flipped, read through `workers` workers."""
    dataset = ImageFolderDataset(folder, 64, 3, flip=True, crop_min=0.8)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    requests = [BatchRequest(order[i * batch_size : (i + 1) * batch_size], i) for i in range(batches + 2)]
    stream = load_batches(dataset, requests, workers)
    next(stream), next(stream)  # workers started and warm
    started = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch_size / (time.perf_counter() - started)


def token_cache(directory: Path, samples: int, copies: int) -> Path:
    """A cache of `samples` random 16x16 grids, its manifest listing the shards `copies` times."""
    ids = torch.randint(256, (samples, 2, 2))

    class Random:
        def __len__(self):
            return samples

        def batch(self, indices):
            return {"images": ids[indices], "labels": indices % 10}

    write_token_cache(
        lambda images: {"ids": images.repeat_interleave(8, 1).repeat_interleave(8, 2)},
        Random(),
        directory,
        {"codebook_size": 256, "path": "none"},
        batch_size=1000,
        shard_size=10000,
        progress=False,
    )
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["shards"] = manifest["shards"] * copies
    manifest["count"] *= copies
    (directory / MANIFEST).write_text(json.dumps(manifest))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=Path, required=True)
    parser.add_argument("--large", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    result = {"cpu": platform.processor() or platform.machine(), "cores": torch.get_num_threads()}
    try:
        result["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    for name, folder in (("small", args.small), ("large", args.large)):
        images = sum(1 for _ in folder.glob("*/*.jpg"))
        rss = peak_rss_mib(
            [*ARGEN, "tokenizer", "train", "--out", str(args.work / f"tok-{name}"), f"data.path={folder}", *TOKENIZER]
        )
        result[f"tokenizer_train_{images}_rss_mib"] = round(rss, 1)
        print(f"tokenizer train, 3 steps, {images} images: peak RSS {rss:.1f} MiB", flush=True)
    for workers in (0, 1, 2):
        speed = throughput(args.large, workers)
        result[f"images_per_s_{workers}_workers"] = round(speed, 1)
        print(f"decode + crop + flip, {workers} workers: {speed:.1f} images/s", flush=True)
    base = token_cache(args.work / "cache", 20000, 1)
    for copies in (1, 10):
        cache = base if copies == 1 else token_cache(args.work / "cache10", 20000, copies)
        rss = peak_rss_mib([*ARGEN, "train", "--cache", str(cache), "--out", str(args.work / f"ar-{copies}"), *AR])
        result[f"ar_train_{20000 * copies}_rss_mib"] = round(rss, 1)
        print(f"argen train, 3 steps, cache of {20000 * copies} samples: peak RSS {rss:.1f} MiB", flush=True)
    tokenizer = args.work / "tok-small" / "checkpoint"
    common = [
        "tokenize",
        "--tokenizer",
        str(tokenizer),
        "--shard-size",
        "512",
        "--workers",
        "0",
        "--data-dir",
        str(args.small),
    ]
    for ranks in (1, 2):
        command = (
            [*ARGEN, *common, "--out", str(args.work / f"cache-{ranks}")]
            if ranks == 1
            else [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                "--master_port=29533",
                "-m",
                "argen.cli",
                *common,
                "--out",
                str(args.work / f"cache-{ranks}"),
            ]
        )
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        result[f"tokenize_{ranks}_ranks_s"] = round(seconds, 1)
        print(f"tokenize {args.small.name} with {ranks} rank(s): {seconds:.1f} s", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
