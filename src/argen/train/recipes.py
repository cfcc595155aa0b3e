"""Recipes: the dataset, the task and its checks for each thing argen trains, run by the one trainer."""

from __future__ import annotations

from pathlib import Path

import torch

from argen.config import ARRunConfig, RefinerRunConfig, TokenizerRunConfig
from argen.data import load_dataset
from argen.data.video import is_video_dataset, load_video_dataset
from argen.io import checkpoint as ckpt
from argen.io.load import (
    AR_KIND,
    REFINER_KIND,
    TOKENIZER_KIND,
    build_ar,
    build_tokenizer,
    grid_vocab,
    load_perceptual,
    load_tokenizer,
    open_coarse_table,
    open_token_cache,
)
from argen.model.refiner import Refiner
from argen.model.transformer import Transformer
from argen.tokenizer.causal_video import inflate_from_image
from argen.train import trainer
from argen.train.ar_task import ARTask
from argen.train.prologue_task import PrologueTask, load_visual_path, prior_layout, resolve_prior_vocab
from argen.train.refiner_task import RefinerTask
from argen.train.tokenizer_task import VQTask


def train_tokenizer(config: TokenizerRunConfig, progress: bool = True) -> Path:
    """Train a tokenizer; with model.prologue_tokens > 0, Prologue stage 1 (tokenizer + prior, or Post)."""
    if config.model.prologue_tokens > 0:
        config = resolve_prior_vocab(config)
    if config.model.temporal_downsample:  # a causal 3D tokenizer learns from whole clips
        if not is_video_dataset(config.data.name):
            raise ValueError(
                f"model.temporal_downsample={config.model.temporal_downsample} (a causal 3D tokenizer) "
                f"trains on videos, but data.name={config.data.name} is an image dataset"
            )
        build_tokenizer(config.model).latent_frames(config.data.video.frames)  # refuses a clip length it cannot encode
        dataset = load_video_dataset(config.data, training=True)
    else:
        dataset = load_dataset(config.data)
    return trainer.run(
        config, TOKENIZER_KIND, dataset, lambda: _tokenizer_task(config), progress, num_workers=config.data.num_workers
    )


def _tokenizer_task(config: TokenizerRunConfig) -> VQTask | PrologueTask:
    model = build_tokenizer(config.model)
    if config.model.inflate_from:
        image_tokenizer, _ = load_tokenizer(config.model.inflate_from)
        inflate_from_image(model, image_tokenizer.state_dict())
    if config.model.prologue_tokens == 0:
        return VQTask(model, config.loss, load_perceptual(config.loss))
    prologue = config.prologue
    if prologue.visual_tokenizer:
        load_visual_path(model, prologue.visual_tokenizer, freeze=prologue.freeze_visual)
    # Post: the visual path is frozen and not trained, so it has no task of its own.
    visual_task = (
        None
        if prologue.visual_tokenizer and prologue.freeze_visual
        else VQTask(model, config.loss, load_perceptual(config.loss))
    )
    return PrologueTask(model, Transformer(prologue.prior), prior_layout(config.model), prologue, visual_task)


def train_ar(config: ARRunConfig, progress: bool = True) -> Path:
    """Train the class-conditional AR transformer on a token cache under the config's Layout (on coarse
    labels when `config.coarse_table` is set: CTF's stage 1)."""
    cache = open_token_cache(config.cache, config.cache_limit)
    table = open_coarse_table(config.coarse_table, cache) if config.coarse_table else None
    if tuple(config.layout.grid) != cache.grid:
        raise ValueError(f"layout.grid={tuple(config.layout.grid)} but the token cache holds {cache.grid} grids")
    if config.layout.prologue_length > 0:
        if cache.prologue_length != config.layout.prologue_length:
            found = str(cache.prologue_length or "none")
            raise ValueError(
                f"layout.prologue_length={config.layout.prologue_length} but the token cache holds "
                f"{found} prologue ids per image; tokenize with a Prologue tokenizer"
            )
        largest = max(int(shard["prologue_ids"].max()) for shard in cache.shards)
        if largest >= config.layout.prologue_vocab:
            raise ValueError(
                f"the cache has prologue id {largest} but layout.prologue_vocab={config.layout.prologue_vocab}"
            )
    _check_classes(cache.num_classes, config.model.num_classes)
    tokenizer = cache.manifest["tokenizer"]
    tokenizer_path = tokenizer.get("path")
    # Coarse labels cannot be decoded without a refiner: no sample grids under CTF.
    decodable = tokenizer_path and Path(tokenizer_path).is_dir() and table is None

    def build_task() -> ARTask:
        layout, model = build_ar(config, grid_vocab(cache, table))
        return ARTask(
            model,
            layout,
            config.model.num_classes,
            config.model.class_dropout_prob,
            tokenizer=tokenizer_path if decodable else None,
            coarse=table,
        )

    metadata = {
        "tokenizer": tokenizer_path,
        "tokenizer_sha256": tokenizer.get("sha256"),
        "grid_vocab": grid_vocab(cache, table),
        "class_names": tokenizer.get("class_names", []),
    }
    if table is not None:
        metadata["coarse_table"] = table.describe()
    return trainer.run(config, AR_KIND, cache, build_task, progress, metadata)


def train_refiner(config: RefinerRunConfig, progress: bool = True) -> Path:
    """Train the CTF refiner on a token cache: true coarse maps (from the table) in, fine ids out."""
    if not config.coarse_table:
        raise ValueError("coarse_table is not set: the refiner needs a fine -> coarse table (`argen ctf cluster`)")
    cache = open_token_cache(config.cache, config.cache_limit)
    table = open_coarse_table(config.coarse_table, cache)
    tokenizer = cache.manifest["tokenizer"]
    if config.model.vocab_size != table.coarse_vocab:
        raise ValueError(
            f"model.vocab_size={config.model.vocab_size} but the table has {table.coarse_vocab} "
            f"clusters; set model.vocab_size={table.coarse_vocab}"
        )
    _check_classes(cache.num_classes, config.model.num_classes)
    if config.train.init_from:
        # The table is part of the weights: starting from another table's refiner would silently bring it along.
        start = ckpt.load_weights(config.train.init_from).get("fine_to_coarse")
        if start is None or not torch.equal(start.long(), table.fine_to_coarse):
            raise ValueError(
                f"train.init_from={config.train.init_from} is not a refiner trained with the table "
                f"{config.coarse_table}"
            )
    tokenizer_path = tokenizer.get("path")

    def build_task() -> RefinerTask:
        return RefinerTask(
            Refiner(config.model, table.fine_to_coarse),
            cache.grid,
            config.model.class_dropout_prob,
            config.refiner,
            tokenizer=tokenizer_path if tokenizer_path and Path(tokenizer_path).is_dir() else None,
            shown=cache.batch(torch.arange(min(8, len(cache)))),
        )

    metadata = {
        "tokenizer": tokenizer_path,
        "tokenizer_sha256": tokenizer.get("sha256"),
        "grid": list(cache.grid),
        "coarse_table": table.describe(),
        "class_names": tokenizer.get("class_names", []),
    }
    return trainer.run(config, REFINER_KIND, cache, build_task, progress, metadata)


def _check_classes(in_cache: int, in_model: int) -> None:
    if in_cache > in_model:
        raise ValueError(f"the cache has class {in_cache - 1} but model.num_classes={in_model}")
