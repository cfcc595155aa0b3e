"""Recipes: dataset + model + task + trainer for each thing argen trains, and the tokenizer's own tools."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from argen.config import ARRunConfig, DataConfig, RefinerRunConfig, TokenizerRunConfig, from_dict
from argen.data import load_dataset
from argen.data.token_cache import TokenDataset, write_token_cache
from argen.data.transforms import to_uint8
from argen.io import checkpoint as ckpt
from argen.io.images import save_grid
from argen.train import distributed
from argen.train.trainer import Trainer

TOKENIZER_KIND = "tokenizer"
AR_KIND = "ar"
REFINER_KIND = "refiner"


# ------------------------------------------------------------------------------------------------
# tokenizer


def load_tokenizer(directory: str | Path, device: str | torch.device = "cpu"):
    """A trained tokenizer (eval mode) and its run config, from a checkpoint directory."""
    from argen.tokenizer.vq import VQModel

    meta = ckpt.read_meta(directory, TOKENIZER_KIND)
    config = from_dict(TokenizerRunConfig, meta["config"])
    model = VQModel(config.model)
    ckpt.load_state_into(model, ckpt.load_weights(directory), str(directory))
    return model.to(device).eval(), config


def train_tokenizer(config: TokenizerRunConfig, progress: bool = True) -> Path:
    """Train a tokenizer; with model.prologue_tokens > 0, Prologue stage 1 (tokenizer + prior, or Post)."""
    from argen.train.prologue_task import resolve_prior_vocab, validate_prologue_training

    validate_prologue_training(config)
    if config.model.prologue_tokens > 0:
        config = resolve_prior_vocab(config)
    if (config.data.image_size, config.data.channels) != (config.model.image_size, config.model.in_channels):
        raise ValueError(f"data.image_size/channels ({config.data.image_size}, {config.data.channels}) must match "
                         f"model.image_size/in_channels ({config.model.image_size}, {config.model.in_channels})")
    context = distributed.setup()
    try:
        dataset = load_dataset(config.data)
        torch.manual_seed(config.train.seed)
        task = _tokenizer_task(config)
        trainer = Trainer(task, dataset, config.train, config, TOKENIZER_KIND, context, progress)
        trainer.fit()
        return trainer.checkpoint_dir
    finally:
        distributed.teardown(context)


def _tokenizer_task(config: TokenizerRunConfig):
    from argen.tokenizer.task import VQTask
    from argen.tokenizer.vq import VQModel

    model = VQModel(config.model)
    if config.model.prologue_tokens == 0:
        return VQTask(model, config.loss)
    from argen.model.transformer import Transformer
    from argen.train.prologue_task import PrologueTask, load_visual_path, prior_layout

    prologue = config.prologue
    if prologue.visual_tokenizer:
        load_visual_path(model, prologue.visual_tokenizer, freeze=prologue.freeze_visual)
    # Post: the visual path is frozen and not trained, so it has no task of its own.
    visual_task = None if prologue.visual_tokenizer and prologue.freeze_visual else VQTask(model, config.loss)
    return PrologueTask(model, Transformer(config.prologue.prior), prior_layout(config.model), config.prologue,
                        visual_task)


def _data_config(config: TokenizerRunConfig, split: str, data_dir: str | None) -> DataConfig:
    return dataclasses.replace(config.data, split=split, flip=False, limit=0,
                               path=data_dir if data_dir else config.data.path)


@torch.inference_mode()
def evaluate_tokenizer(directory: str | Path, out_dir: str | Path, split: str = "test", count: int = 0,
                       data_dir: str | None = None, batch_size: int = 256, progress: bool = True,
                       extractor=None) -> dict[str, Any]:
    """MSE, PSNR (per image, on [0, 255] pixels), codebook usage and perplexity, a reconstruction grid, and
    with a feature extractor the rFID of reconstructions against the originals."""
    from tqdm import tqdm

    model, config = load_tokenizer(directory)
    dataset = load_dataset(_data_config(config, split, data_dir), training=False)
    total = len(dataset) if count <= 0 else min(count, len(dataset))
    squared_error, psnr_sum = 0.0, 0.0
    counts = torch.zeros(config.model.codebook_size, dtype=torch.long)
    first_originals = first_reconstructions = None
    originals, reconstructions = [], []  # uint8 NHWC, kept only for rFID
    for start in tqdm(range(0, total, batch_size), desc="tokenizer eval", disable=not progress):
        batch = dataset.batch(torch.arange(start, min(start + batch_size, total)))
        ids = model.encode(batch["images"])
        reconstruction = to_uint8(model.decode(ids))
        original = to_uint8(batch["images"])
        error = (reconstruction.float() - original.float()).pow(2).flatten(1).mean(1)  # (B,)
        squared_error += float(error.sum())
        psnr_sum += float((10 * torch.log10(255.0 ** 2 / error.clamp_min(1e-10))).sum())
        counts += torch.bincount(ids.flatten(), minlength=config.model.codebook_size)
        if first_originals is None:
            first_originals, first_reconstructions = original[:32], reconstruction[:32]
        if extractor is not None:
            originals.append(original.permute(0, 2, 3, 1).numpy())
            reconstructions.append(reconstruction.permute(0, 2, 3, 1).numpy())
    probabilities = counts.double() / counts.sum()
    entropy = -(probabilities[probabilities > 0] * probabilities[probabilities > 0].log()).sum()
    out_dir = Path(out_dir)
    pairs = torch.stack([first_originals, first_reconstructions], 1).flatten(0, 1)  # original, reconstruction
    grid = save_grid(pairs, out_dir / "reconstructions.png", columns=16, scale=2)
    result = {
        "tokenizer": str(directory), "tokenizer_sha256": ckpt.checkpoint_checksum(directory), "split": split,
        "images": total, "mse": squared_error / total / 255.0 ** 2 * 4,  # on the [-1, 1] scale
        "psnr_db": psnr_sum / total, "codebook_usage": float((counts > 0).double().mean()),
        "perplexity": float(entropy.exp()), "codebook_size": config.model.codebook_size, "grid": str(grid),
    }
    if extractor is not None:
        from argen.eval.reference import compute_reference, evaluate

        reference = compute_reference(originals, extractor)
        scores = evaluate(reconstructions, reference, extractor)
        result.update(rfid=scores["fid"], extractor=scores["extractor"], extractor_checksum=scores["checksum"])
    ckpt.save_json(out_dir / "metrics.json", result)
    return result


def tokenize(directory: str | Path, out_dir: str | Path, split: str = "train", data_dir: str | None = None,
             flip_copies: bool = False, limit: int = 0, progress: bool = True) -> Path:
    """Write the token cache of a dataset split (the first `limit` images if > 0; optionally with flipped
    copies as extra samples); a tokenizer with a Prologue head also writes `prologue_ids` (n, P).
    A video dataset (argen.data.video) gives (T, h, w) grids: the tokenizer encodes each frame."""
    from argen.data.video import is_video_dataset, load_video_dataset

    model, config = load_tokenizer(directory)
    data = dataclasses.replace(_data_config(config, split, data_dir), limit=limit)
    batch_size = 256
    if is_video_dataset(data.name):  # every frame is encoded: (T, h, w) grids
        if config.model.prologue_tokens > 0:
            raise ValueError(f"{directory} has a Prologue head, which summarises one image; video token caches "
                             f"need a tokenizer without one (model.prologue_tokens=0)")
        dataset = load_video_dataset(data)
        batch_size = max(1, batch_size // data.video.frames)  # about as many frames per encoder pass as images
    else:
        dataset = load_dataset(data, training=False)

    tokenizer = {"path": str(Path(directory).resolve()), "sha256": ckpt.checkpoint_checksum(directory),
                 "codebook_size": config.model.codebook_size, "class_names": list(dataset.class_names)}
    if config.model.prologue_tokens > 0:
        tokenizer["prologue_codebook_size"] = config.model.prologue_codebook_size
    if flip_copies:
        dataset = _WithFlippedCopies(dataset)
    return write_token_cache(model.encode_tokens, dataset, out_dir, tokenizer, batch_size=batch_size,
                             progress=progress)


class _WithFlippedCopies:
    """Every image (or video) twice: as is, then mirrored (a fixed, stored augmentation)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return 2 * len(self.dataset)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = self.dataset.batch(indices % len(self.dataset))
        images = batch["images"]
        flip = (indices >= len(self.dataset)).view(-1, *[1] * (images.ndim - 1))
        batch["images"] = torch.where(flip, images.flip(-1), images)
        return batch


# ------------------------------------------------------------------------------------------------
# AR transformer


def open_token_cache(cache: str, coarse_table: str = "") -> TokenDataset:
    """The token cache, serving coarse labels when a CTF table is given (checked against the cache's tokenizer)."""
    from argen.ctf.table import load_table

    if not cache:
        raise ValueError("cache is not set: pass --cache DIR (a token cache written by `argen tokenize`)")
    return TokenDataset(cache, load_table(coarse_table) if coarse_table else None)


def ar_config_from_cache(config: ARRunConfig, cache: TokenDataset) -> ARRunConfig:
    """Fill what the token cache fixes (grid, visual vocabulary, class count, prologue) when left at defaults.

    A cache with prologue ids gives the layout its prologue segment: [class][prologue][separator][visual].
    """
    from argen.layout import Layout

    layout = dataclasses.replace(config.layout, grid=cache.grid)
    if "prologue_ids" in cache.tensors:
        layout = dataclasses.replace(layout, prologue_length=int(cache.tensors["prologue_ids"].shape[1]),
                                     prologue_vocab=int(cache.manifest["tokenizer"]["prologue_codebook_size"]))
    vocab = Layout(layout, cache.visual_vocab).vocab_size  # coarse labels under CTF
    num_classes = int(cache.tensors["labels"].max()) + 1
    model = dataclasses.replace(config.model, vocab_size=vocab, num_classes=num_classes)
    return dataclasses.replace(config, layout=layout, model=model)


def build_ar(config: ARRunConfig, visual_vocab: int):
    """The Layout and a fresh Transformer for `config`; the two must agree on the vocabulary."""
    from argen.layout import Layout
    from argen.model.transformer import Transformer

    layout = Layout(config.layout, visual_vocab)
    if layout.vocab_size != config.model.vocab_size:
        raise ValueError(f"model.vocab_size={config.model.vocab_size} but the layout needs {layout.vocab_size} "
                         f"(visual vocabulary {visual_vocab}); set model.vocab_size={layout.vocab_size}")
    return layout, Transformer(config.model, n_transition=layout.n_transition)


def train_ar(config: ARRunConfig, progress: bool = True) -> Path:
    """Train the class-conditional AR transformer on a token cache under the config's Layout (on coarse
    labels when `config.coarse_table` is set: CTF's stage 1)."""
    from argen.train.ar_task import ARTask

    cache = open_token_cache(config.cache, config.coarse_table)
    if tuple(config.layout.grid) != cache.grid:
        raise ValueError(f"layout.grid={tuple(config.layout.grid)} but the token cache holds {cache.grid} grids")
    if config.layout.prologue_length > 0:
        prologue = cache.tensors.get("prologue_ids")
        if prologue is None or prologue.shape[1] != config.layout.prologue_length:
            found = "none" if prologue is None else str(prologue.shape[1])
            raise ValueError(f"layout.prologue_length={config.layout.prologue_length} but the token cache holds "
                             f"{found} prologue ids per image; tokenize with a Prologue tokenizer")
        if int(prologue.max()) >= config.layout.prologue_vocab:
            raise ValueError(f"the cache has prologue id {int(prologue.max())} but layout.prologue_vocab="
                             f"{config.layout.prologue_vocab}")
    context = distributed.setup()
    try:
        torch.manual_seed(config.train.seed)
        layout, model = build_ar(config, cache.visual_vocab)
        labels_max = int(cache.tensors["labels"].max())
        if labels_max >= config.model.num_classes:
            raise ValueError(f"the cache has class {labels_max} but model.num_classes={config.model.num_classes}")
        tokenizer_path = cache.manifest["tokenizer"].get("path")
        # Coarse labels cannot be decoded without a refiner: no sample grids under CTF.
        decodable = tokenizer_path and Path(tokenizer_path).is_dir() and cache.coarse_table is None
        task = ARTask(model, layout, config.model.num_classes, config.model.class_dropout_prob,
                      tokenizer=tokenizer_path if decodable else None)
        metadata = {"tokenizer": tokenizer_path, "tokenizer_sha256": cache.manifest["tokenizer"].get("sha256"),
                    "visual_vocab": cache.visual_vocab,
                    "class_names": cache.manifest["tokenizer"].get("class_names", [])}
        if cache.coarse_table is not None:
            metadata["coarse_table"] = cache.coarse_table.describe()
        trainer = Trainer(task, cache, config.train, config, AR_KIND, context, progress, metadata)
        trainer.fit()
        return trainer.checkpoint_dir
    finally:
        distributed.teardown(context)


# ------------------------------------------------------------------------------------------------
# CTF refiner


def refiner_config_from_cache(config: RefinerRunConfig, cache: TokenDataset, clusters: int) -> RefinerRunConfig:
    """Fill what the cache and the table fix: the input vocabulary (clusters) and the class count."""
    num_classes = int(cache.tensors["labels"].max()) + 1
    model = dataclasses.replace(config.model, vocab_size=clusters, num_classes=num_classes)
    return dataclasses.replace(config, model=model)


def load_refiner(directory: str | Path, device: str | torch.device = "cpu"):
    """A trained CTF refiner (eval mode), its run config and its checkpoint metadata."""
    from argen.model.refiner import Refiner

    meta = ckpt.read_meta(directory, REFINER_KIND)
    config = from_dict(RefinerRunConfig, meta["config"])
    weights = ckpt.load_weights(directory)
    if "fine_to_coarse" not in weights:
        raise ckpt.CheckpointError(f"{directory} has no fine_to_coarse table in its weights")
    model = Refiner(config.model, weights["fine_to_coarse"])
    ckpt.load_state_into(model, weights, str(directory))
    return model.to(device).eval(), config, meta


def train_refiner(config: RefinerRunConfig, progress: bool = True) -> Path:
    """Train the CTF refiner on a token cache: true coarse maps (from the table) in, fine ids out."""
    from argen.ctf.table import load_table
    from argen.model.refiner import Refiner
    from argen.train.refiner_task import RefinerTask

    if not config.coarse_table:
        raise ValueError("coarse_table is not set: pass --table FILE (written by `argen ctf cluster`)")
    cache = open_token_cache(config.cache)
    table = load_table(config.coarse_table)
    tokenizer = cache.manifest["tokenizer"]
    table.check_tokenizer(tokenizer.get("sha256"), cache.codebook_size, f"the token cache {config.cache}")
    if config.model.vocab_size != table.coarse_vocab:
        raise ValueError(f"model.vocab_size={config.model.vocab_size} but the table has {table.coarse_vocab} "
                         f"clusters; set model.vocab_size={table.coarse_vocab}")
    labels_max = int(cache.tensors["labels"].max())
    if labels_max >= config.model.num_classes:
        raise ValueError(f"the cache has class {labels_max} but model.num_classes={config.model.num_classes}")
    if config.train.init_from:
        # The table is part of the weights: starting from another table's refiner would silently bring it along.
        start = ckpt.load_weights(config.train.init_from).get("fine_to_coarse")
        if start is None or not torch.equal(start.long(), table.fine_to_coarse):
            raise ValueError(f"train.init_from={config.train.init_from} is not a refiner trained with the table "
                             f"{config.coarse_table}")
    context = distributed.setup()
    try:
        torch.manual_seed(config.train.seed)
        model = Refiner(config.model, table.fine_to_coarse)
        tokenizer_path = tokenizer.get("path")
        task = RefinerTask(model, cache.grid, config.model.class_dropout_prob, config.refiner,
                           tokenizer=tokenizer_path if tokenizer_path and Path(tokenizer_path).is_dir() else None,
                           preview=cache.batch(torch.arange(min(8, len(cache)))))
        metadata = {"tokenizer": tokenizer_path, "tokenizer_sha256": tokenizer.get("sha256"), "grid": list(cache.grid),
                    "coarse_table": table.describe(), "class_names": tokenizer.get("class_names", [])}
        trainer = Trainer(task, cache, config.train, config, REFINER_KIND, context, progress, metadata)
        trainer.fit()
        return trainer.checkpoint_dir
    finally:
        distributed.teardown(context)
