"""A sampling run of `argen sample`: N samples in fixed batches, shared by the torchrun ranks, written to disk batch
by batch and assembled into one ADM `.npz` (and, when asked, the ids as JSON).

Batch b holds samples [b * batch_size, (b + 1) * batch_size) and draws from `batch_generator(seed, its first
index)`; rank r makes the batches b with b % world_size == r. So sample i is the same whatever the number of ranks
(for one seed, batch size, class schedule and sampling options, on one kind of device): ranks change who makes a
batch, never what it holds. Each finished batch is saved as `<npz>.parts/<first index>.npz`, so no process holds
more than a batch of images; rank 0 then streams the parts into the `.npz` (atomic) and removes them. A part holds
the batch's ids too, so `ids` (`argen sample --save-ids`) comes from the same samples and the same writer, also
for a model without a tokenizer (ids only). A run that stopped keeps its finished parts: rerunning the same command
makes only the missing batches, and those damaged since they were written (each part's size and sha256 are noted
beside it). The plan records the sha256 of the weights, so a rerun with other weights at the same path is refused
rather than mixed in.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from argen import distributed
from argen.distributed import DistributedContext
from argen.eval.npz import write_npz_chunks
from argen.io.checkpoint import is_intact, save_json, write_checked
from argen.io.video import save_preview
from argen.pipeline import Pipeline, batch_generator, samples_file, write_ids

PLAN_FILE = "plan.json"
PREVIEW_SAMPLES = 100  # samples.png shows the first ones: a grid of 50,000 images would be unreadable


@dataclass
class SamplingRun:
    """What a run wrote (on rank 0) and how long its own batches took."""

    picture: Path | None  # None without a tokenizer (ids only)
    npz: Path | None
    made: int  # samples made by this run (those of parts kept from an earlier run are not counted)
    seconds: float  # the slowest rank's token generation and decoding time
    forward_passes: int  # of the AR model, over the batches this run made (all ranks)


def sample_to_npz(
    pipeline: Pipeline,
    labels: list[int],
    batch_size: int,
    seed: int,
    out_dir: str | Path,
    context: DistributedContext,
    refine: dict | None = None,
    plan: dict[str, Any] | None = None,
    columns: int = 10,
    fps: float = 4.0,
    ids: str | Path | None = None,
    **options: Any,
) -> SamplingRun | None:
    """Sample `labels` (options: SamplingOptions fields) in batches of `batch_size` over the ranks of `context`
    and write `out_dir`/samples.npz (videos.npz), a preview of the first samples (samples.png; videos: samples.gif
    too) and the ids to the JSON file `ids` when given (`write_ids`; a pipeline without a tokenizer writes only
    these); None on ranks other than 0.

    `plan` describes what else decides the samples (e.g. the model); parts left by a run of another plan are
    refused rather than mixed in."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    decode = pipeline.tokenizer is not None
    if not decode and ids is None:
        raise ValueError("the pipeline has no tokenizer to decode images (ask for the ids alone)")
    pipeline.class_labels(labels), pipeline.sampling_options(refine, **options)  # refused before anything is written
    video = len(pipeline.layout.grid) == 3
    npz = samples_file(out_dir, video)
    parts = npz.with_suffix(".parts")
    plan = json.loads(
        json.dumps(
            {
                **(plan or {}),
                "weights_sha256": pipeline.weights_sha256,
                "labels": list(labels),
                "batch_size": batch_size,
                "seed": seed,
                "refine": refine,
                "options": options,
            }
        )
    )
    if context.is_main and not (parts / PLAN_FILE).is_file():
        save_json(parts / PLAN_FILE, plan)
    distributed.barrier(context)
    earlier = json.loads((parts / PLAN_FILE).read_text())
    if earlier != plan:
        differing = sorted(key for key in {*earlier, *plan} if earlier.get(key) != plan.get(key))
        what = "other weights" if "weights_sha256" in differing else "other settings"
        raise ValueError(
            f"{parts} holds the parts of a run with {what} ({', '.join(differing)} differ); delete "
            "it, or rerun that run's command with its weights to finish it"
        )

    starts = range(0, len(labels), batch_size)
    made, seconds, passes = 0, 0.0, 0
    for start in starts[context.rank :: context.world_size]:
        part = parts / f"{start:09d}.npz"
        if is_intact(part):  # finished by an earlier run
            continue
        if part.is_file():
            print(f"argen sample: {part} is damaged (its size or sha256 is not the one written); making it again")
        batch = labels[start : start + batch_size]
        samples = pipeline.sample(batch, len(batch), batch_generator(seed, start, pipeline.device), refine, **options)
        arrays = {"ids": samples.visual.int().numpy()}
        if samples.coarse is not None:
            arrays["coarse"] = samples.coarse.int().numpy()
        if samples.prologue is not None:
            arrays["prologue"] = samples.prologue.int().numpy()
        if decode:
            arrays["images"] = samples.images.movedim(-3, -1).numpy()

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as handle:  # a handle, so numpy does not append ".npz" to the temp name
                np.savez(handle, **arrays)

        write_checked(part, write)
        made += len(batch)
        seconds += samples.seconds + samples.decode_seconds
        passes += samples.forward_passes

    timings = distributed.gather_to_main((made, seconds, passes), context)
    distributed.barrier(context)
    if not context.is_main:
        return None

    def read(start: int, key: str) -> np.ndarray:
        with np.load(parts / f"{start:09d}.npz", allow_pickle=False) as part:
            return part[key]

    if ids is not None:
        with np.load(parts / f"{starts[0]:09d}.npz", allow_pickle=False) as part:
            kept = set(part)  # "coarse": CTF with its refiner ("ids" are then the fine ids); "prologue": Prologue

        def column(key: str) -> np.ndarray | None:
            return np.concatenate([read(start, key) for start in starts]) if key in kept else None

        write_ids(ids, labels, column("ids"), column("coarse"), column("prologue"))
    picture = None
    if decode:
        write_npz_chunks(npz, (read(start, "images") for start in starts), len(labels), np.asarray(labels), video)
        first = np.concatenate([read(start, "images") for start in starts[: -(-PREVIEW_SAMPLES // batch_size)]])[
            :PREVIEW_SAMPLES
        ]
        picture = save_preview(torch.from_numpy(first).movedim(-1, -3), Path(out_dir) / "samples.png", columns, fps)
    shutil.rmtree(parts)
    return SamplingRun(
        picture,
        npz if decode else None,
        sum(m for m, _, _ in timings),
        max(s for _, s, _ in timings),
        sum(p for _, _, p in timings),
    )
