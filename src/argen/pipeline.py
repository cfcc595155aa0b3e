"""The Python API: `argen.load(path)` gives a pipeline (tokenizer + AR transformer) that turns class labels
into images.

    pipeline = argen.load("checkpoints/fmnist-ar")
    images = pipeline([3, 7], generator=torch.Generator().manual_seed(0), temperature=1.0, top_k=0)

Under CTF the AR model predicts coarse labels and a refiner makes the fine ids:

    pipeline = argen.load("runs/coarse-ar/checkpoint", refiner="runs/refiner/checkpoint")
    images = pipeline([3, 7], temperature=1.1, refine={"temperature": 1.1, "top_k": 0})

A pipeline directory (`save_pretrained`) holds `pipeline.json` and one checkpoint directory per component;
an AR checkpoint directory alone also loads (its tokenizer is found through its config.json).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from argen.config import ARRunConfig, to_dict
from argen.ctf.refinement import Refinement
from argen.ctf.sample import RefineOptions
from argen.data.token_cache import TokenDataset
from argen.data.transforms import to_uint8
from argen.eval.npz import write_npz
from argen.io import checkpoint as ckpt
from argen.io.load import AR_KIND, EMA_WEIGHTS_FILE, TOKENIZER_KIND, load_ar, load_tokenizer
from argen.io.video import save_preview
from argen.layout import Layout, Step
from argen.sample import Generated, SamplingOptions, generate

PIPELINE_FILE = "pipeline.json"


@dataclass
class Samples:
    """What `Pipeline.sample` made: ids in grid order, CTF's coarse labels, decoded images, and timings."""

    labels: torch.Tensor  # (N,) long
    visual: torch.Tensor  # (N, *grid) visual ids (CTF: the refined fine ids)
    coarse: torch.Tensor | None  # (N, *grid) CTF coarse labels
    images: torch.Tensor | None  # uint8 (N, C, H, W) or videos (N, T, C, H, W); None without a tokenizer
    seconds: float  # token generation (CTF's refiner pass included)
    decode_seconds: float  # ids -> pixels
    forward_passes: int = 0  # of the AR model, over all batches (fewer than the steps with speculative decoding)
    prologue: torch.Tensor | None = None  # (N, P) Prologue's prologue ids (codes of the prologue codebook)

    def save(self, out_dir: str | Path, columns: int = 10, fps: float = 4.0) -> tuple[Path, Path]:
        """Images: samples.png (a grid) and samples.npz (ADM format, with labels); videos: samples.png (a strip
        per video), samples.gif (an animated grid) and videos.npz. Returns (picture, npz)."""
        if self.images is None:
            raise ValueError("these samples were not decoded to pixels (no tokenizer)")
        video = self.images.ndim == 5
        return (
            save_preview(self.images, Path(out_dir) / "samples.png", columns, fps),
            write_npz(
                samples_file(out_dir, video),
                self.images.movedim(-3, -1).numpy(),
                labels=self.labels.numpy(),
                video=video,
            ),
        )

    def save_ids(self, path: str | Path) -> Path:
        """The ids (grid order) as JSON: classes, grid, ids, and under CTF the coarse labels."""
        return write_ids(path, self.labels, self.visual, self.coarse, self.prologue)


def write_ids(
    path: str | Path, labels: Any, visual: Any, coarse: Any | None = None, prologue: Any | None = None
) -> Path:
    """Samples' ids as JSON (atomic): "classes", "grid", "ids" (CTF: the refined fine ids), under CTF "coarse" (the
    AR's cluster labels) and under Prologue "prologue" (N, P); arrays or tensors of (N,) and (N, *grid)."""
    saved = {
        "classes": np.asarray(labels).tolist(),
        "grid": list(np.shape(visual)[1:]),
        "ids": np.asarray(visual).tolist(),
    }
    if coarse is not None:
        saved["coarse"] = np.asarray(coarse).tolist()
    if prologue is not None:
        saved["prologue"] = np.asarray(prologue).tolist()
    ckpt.atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(saved)))
    return Path(path)


def samples_file(out_dir: str | Path, video: bool) -> Path:
    """Where `Samples.save` writes the ADM batch: samples.npz, or videos.npz."""
    return Path(out_dir) / ("videos.npz" if video else "samples.npz")


@dataclass
class Pipeline:
    model: torch.nn.Module
    layout: Layout
    config: ARRunConfig
    tokenizer: torch.nn.Module | None = None
    tokenizer_config: Any = None  # the tokenizer's run config, saved with it
    class_names: tuple[str, ...] = ()
    refinement: Refinement | None = None  # CTF: the refiner that turns coarse labels into fine ids
    coarse_table: dict | None = None  # CTF: what the AR checkpoint records about its fine -> coarse table
    # Sampling settings (guidance, temperature) chosen on a validation split, recorded when shipped (scripts/ship.py)
    tuned_sampling: dict = field(default_factory=dict)
    weights_sha256: dict = field(default_factory=dict)  # {"ar", "tokenizer", "refiner"}: the files `load` read

    @property
    def coarse(self) -> bool:
        """True when the AR model predicts CTF coarse labels (decoding them needs the refiner)."""
        return self.coarse_table is not None

    @property
    def forward_passes(self) -> int:
        """Forward passes per image of plain decoding: the Layout's steps, plus CTF's refiner pass (the paper's
        "256+1")."""
        return self.layout.num_steps + (self.refinement is not None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> "Pipeline":
        for module in (self.model, self.tokenizer, self.refinement and self.refinement.refiner):
            if module is not None:
                module.to(device)
        return self

    def class_labels(self, labels) -> torch.Tensor:
        """`labels` as a (N,) long tensor on the pipeline's device, each checked to be one of its classes."""
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        classes = self.config.model.num_classes
        if labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise ValueError(f"class labels must be integers in [0, {classes}), got {labels.tolist()}")
        return labels.to(self.device)

    def generate_ids(
        self,
        labels,
        generator: torch.Generator | None = None,
        refine: dict | None = None,
        forced: dict[str, torch.Tensor] | None = None,
        on_step: Callable[[Step, torch.Tensor], None] | None = None,
        **options: Any,
    ) -> Generated:
        """Token ids in grid order (and prologue ids) for each label; options are SamplingOptions fields.

        `forced` keeps given ids (see argen.sample.generate), e.g. {"prologue": ids (B, P)} resamples only the
        visual tokens of fixed prologues; `on_step` watches every decode step (argen.sample.generate; under CTF
        the coarse stage's).

        With a refiner (CTF), `visual` holds the fine ids, `coarse` the AR's coarse labels, and `refine` the
        RefineOptions fields of the refiner pass; unless given there, `greedy` and `dtype` are the coarse stage's
        and `restrict_to_cluster` is what the refiner was trained with.
        """
        coarse_options, refine_options = self.sampling_options(refine, **options)
        if refine_options is None:
            return generate(
                self.model,
                self.layout,
                self.class_labels(labels),
                options=coarse_options,
                generator=generator,
                forced=forced,
                on_step=on_step,
            )
        return self.refinement.sample(
            self.model,
            self.layout,
            self.class_labels(labels),
            coarse_options,
            refine_options,
            generator,
            forced,
            on_step,
        )

    def sampling_options(
        self, refine: dict | None = None, **options: Any
    ) -> tuple[SamplingOptions, RefineOptions | None]:
        """The checked options of `generate_ids` (the refiner pass's None without a refiner)."""
        _check_fields(SamplingOptions, options, "sampling")
        coarse_options = SamplingOptions(**options)
        if self.refinement is None:
            if refine:
                raise ValueError("refine options were given but the pipeline has no refiner (load with refiner=DIR)")
            return coarse_options, None
        _check_fields(RefineOptions, refine or {}, "refine")
        return coarse_options, self.refinement.options(refine, coarse_options)

    def sample(
        self,
        labels,
        batch_size: int = 64,
        generator: torch.Generator | None = None,
        refine: dict | None = None,
        decode: bool = True,
        **options: Any,
    ) -> Samples:
        """`generate_ids` over `labels` in batches of `batch_size` drawing from `generator` in turn, each batch
        decoded to pixels unless `decode` is False or there is no tokenizer. (`argen sample` gives every batch its
        own `batch_generator`, so that ranks can share a run: argen.sampling_run.)"""
        labels = self.class_labels(labels).cpu()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        decode = decode and self.tokenizer is not None
        visual, coarse, prologue, images, seconds, decode_seconds, passes = [], [], [], [], 0.0, 0.0, 0
        for start in range(0, len(labels), batch_size):
            started = time.perf_counter()
            generated = self.generate_ids(labels[start : start + batch_size], generator, refine, **options)
            seconds += time.perf_counter() - started
            passes += generated.forward_passes
            visual.append(generated.visual.cpu())
            if generated.coarse is not None:
                coarse.append(generated.coarse.cpu())
            if generated.prologue is not None:
                prologue.append(generated.prologue.cpu())
            if decode:
                started = time.perf_counter()
                images.append(self.decode(generated.visual))
                decode_seconds += time.perf_counter() - started
        return Samples(
            labels,
            torch.cat(visual),
            torch.cat(coarse) if coarse else None,
            torch.cat(images) if images else None,
            seconds,
            decode_seconds,
            passes,
            torch.cat(prologue) if prologue else None,
        )

    def fixed_prologue_rows(
        self, cache: TokenDataset, rows: int, per_row: int, generator: torch.Generator | None = None, **options: Any
    ) -> torch.Tensor:
        """Fixed-prologue resampling: for each of the first `rows` images of a token cache with prologue ids,
        the image as the tokenizer reconstructs it, then `per_row` samples of its class that keep its prologue
        ids and draw only the visual tokens. uint8 (rows * (1 + per_row), C, H, W), row by row."""
        if not cache.prologue_length:
            raise ValueError(
                f"the token cache {cache.directory} has no prologue ids (tokenize with a Prologue tokenizer)"
            )
        stored = cache.prologue_length
        if self.layout.prologue_length != stored:
            raise ValueError(
                f"the prologues of {cache.directory} have {stored} ids, the model's {self.layout.prologue_length}"
            )
        rows = min(rows, len(cache))
        prologue = cache.column("prologue_ids", rows).repeat_interleave(per_row, 0)
        labels = cache.column("labels", rows)
        generated = self.generate_ids(
            labels.repeat_interleave(per_row, 0), generator, forced={"prologue": prologue.to(self.device)}, **options
        )
        originals = self.decode(cache.column("ids", rows))  # (rows, C, H, W)
        samples = self.decode(generated.visual).view(rows, per_row, *originals.shape[1:])
        return torch.cat([originals[:, None], samples], 1).flatten(0, 1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Grid ids -> uint8 images (B, C, H, W); (B, T, h, w) video grids -> uint8 videos (B, T, C, H, W)."""
        if self.tokenizer is None:
            hint = " and a refiner (its AR model predicts CTF coarse labels)" if self.coarse else ""
            raise ValueError(
                f"this pipeline has no tokenizer{hint}; use generate_ids, or load one with a tokenizer{hint}"
            )
        # In the tokenizer's own precision, whatever precision a caller's decode loop runs in (a live display
        # renders inside it): the same ids always give the same pixels.
        with torch.autocast(self.device.type, enabled=False):
            return to_uint8(self.tokenizer.decode(ids.to(self.device))).cpu()

    def __call__(
        self,
        labels,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        refine: dict | None = None,
        **options: Any,
    ):
        """Images for `labels`: a list of PIL images ("pil"), uint8 NHWC ("np") or uint8 NCHW ("pt").

        A model of (T, h, w) grids makes videos: a list of T PIL frames per label, (B, T, H, W, C) or
        (B, T, C, H, W)."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        images = self.decode(self.generate_ids(labels, generator, refine, **options).visual)
        if output_type == "pt":
            return images
        array = images.movedim(-3, -1).numpy()  # channels last
        if output_type == "np":
            return array
        from PIL import Image

        def picture(a):
            return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)

        if array.ndim == 5:
            return [[picture(frame) for frame in video] for video in array]
        return [picture(a) for a in array]

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        ar_meta = {"class_names": list(self.class_names), "grid_vocab": self.layout.grid_vocab}
        if self.coarse_table is not None:
            ar_meta["coarse_table"] = self.coarse_table
        if self.tuned_sampling:
            ar_meta["sampling"] = self.tuned_sampling
        ckpt.save_checkpoint(directory / "ar", AR_KIND, to_dict(self.config), self.model.state_dict(), ar_meta)
        components = {"ar": "ar"}
        if self.refinement is not None:
            self.refinement.save(directory / "refiner")
            components["refiner"] = "refiner"
        if self.tokenizer is not None:
            ckpt.save_checkpoint(
                directory / "tokenizer", TOKENIZER_KIND, to_dict(self.tokenizer_config), self.tokenizer.state_dict()
            )
            components["tokenizer"] = "tokenizer"
        ckpt.save_json(directory / PIPELINE_FILE, {"format": "argen-pipeline-1", "components": components})
        return directory


def batch_generator(seed: int, first_index: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The random stream of the batch whose first sample is `first_index` in a run seeded with `seed`: seeded from
    both through numpy's SeedSequence, so the streams of nearby seeds and batches are unrelated."""
    if seed < 0 or first_index < 0:
        raise ValueError(f"the seed and the first sample index must be >= 0, got {seed} and {first_index}")
    mixed = int(np.random.SeedSequence([seed, first_index]).generate_state(1, np.uint64)[0])
    return torch.Generator(device).manual_seed(mixed)


def load(
    path: str | Path,
    device: str | torch.device = "cpu",
    tokenizer: str | Path | None = None,
    ema: bool = False,
    refiner: str | Path | None = None,
) -> Pipeline:
    """A pipeline from a pipeline directory or an AR checkpoint directory (strict loading, clear errors).

    `refiner` (a CTF refiner checkpoint) is needed to decode an AR model trained on coarse labels.
    """
    path = Path(path)
    ar_dir, tokenizer_dir, refiner_dir = path, tokenizer, refiner
    if (path / PIPELINE_FILE).is_file():
        components = json.loads((path / PIPELINE_FILE).read_text())["components"]
        ar_dir = path / components["ar"]
        if tokenizer_dir is None and "tokenizer" in components:
            tokenizer_dir = path / components["tokenizer"]
        if refiner_dir is None and "refiner" in components:
            refiner_dir = path / components["refiner"]
    layout, model, config, meta = load_ar(ar_dir, ema)
    coarse_table = meta.get("coarse_table")
    refinement = None
    if refiner_dir is not None:
        refinement = Refinement.load(refiner_dir)
        refinement.check_pairs_with(ar_dir, coarse_table, layout)
    fine_vocab = layout.grid_vocab if refinement is None else refinement.fine_vocab
    if tokenizer_dir is None and meta.get("tokenizer") and (coarse_table is None or refinement is not None):
        named = ar_dir / meta["tokenizer"]  # relative names are relative to the AR directory
        if named.is_dir():
            tokenizer_dir = named
    tokenizer_model, tokenizer_config = (None, None)
    if tokenizer_dir is not None:
        if coarse_table is not None and refinement is None:
            raise ckpt.CheckpointError(
                f"{ar_dir} predicts CTF coarse labels: decoding them needs its refiner (load it with refiner=DIR)"
            )
        tokenizer_model, tokenizer_config = load_tokenizer(tokenizer_dir)
        _check_tokenizer(ar_dir, meta.get("tokenizer_sha256"), tokenizer_dir)
        spatial = (tokenizer_config.model.grid_size,) * 2
        if tuple(layout.grid[-2:]) != spatial:
            raise ckpt.CheckpointError(
                f"{ar_dir} lays out {list(layout.grid)} token grids but its tokenizer "
                f"{tokenizer_dir} makes {list(spatial)} per frame (was layout.grid edited?)"
            )
        codebook = tokenizer_config.model.codebook_size
        if codebook != fine_vocab:
            raise ckpt.CheckpointError(
                f"the tokenizer {tokenizer_dir} has {codebook} codes but the "
                f"{'refiner' if refinement is not None else 'AR model'} predicts "
                f"{fine_vocab} visual ids"
            )
    weights = {"ar": ckpt.checkpoint_checksum(ar_dir, EMA_WEIGHTS_FILE if ema else ckpt.WEIGHTS_FILE)}
    for name, directory, loaded in (
        ("tokenizer", tokenizer_dir, tokenizer_model),
        ("refiner", refiner_dir, refinement),
    ):
        if loaded is not None:
            weights[name] = ckpt.checkpoint_checksum(directory)
    return Pipeline(
        model,
        layout,
        config,
        tokenizer_model,
        tokenizer_config,
        tuple(meta.get("class_names", ())),
        refinement,
        coarse_table,
        meta.get("sampling", {}),
        weights,
    ).to(device)


def _check_tokenizer(ar_dir: Path, trained_on: str | None, tokenizer_dir: str | Path) -> None:
    """The tokenizer must be the one whose tokens the AR model learned (when its checkpoint records it): the
    same weights, or a copy shipped in another precision whose file is still the one shipped (its
    `trained_sha256` names the weights it was made from, its `shipped_sha256` the file as shipped). The file's
    hash is computed, never taken from the folder's config.json alone."""
    if not trained_on:
        return
    actual = ckpt.checkpoint_checksum(tokenizer_dir)
    if actual == trained_on:
        return
    meta = ckpt.read_meta(tokenizer_dir)
    if meta.get("trained_sha256") == trained_on:
        if meta.get("shipped_sha256") == actual:
            return
        raise ckpt.CheckpointError(
            f"{tokenizer_dir}'s weights were changed after it was shipped (sha256 "
            f"{actual[:12]}..., shipped as {str(meta.get('shipped_sha256'))[:12]}...); "
            "restore the shipped file"
        )
    raise ckpt.CheckpointError(
        f"{ar_dir} was trained on the tokens of the tokenizer with sha256 "
        f"{trained_on[:12]}..., but {tokenizer_dir} holds other weights; use the tokenizer "
        "it was trained with (its token ids mean other images under another one)"
    )


def _check_fields(cls: type, options: dict, what: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
