"""The loading layer: argen's trained components from their checkpoint directories, and token caches.

Everything above it (the pipeline, the converters, the tasks, evaluation, the CLI) loads through these
functions; none of them imports the training recipes. Loading is strict: kinds, configs and shapes are
checked, and a mismatch names what differs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from argen.config import (
    ARRunConfig,
    ConfigError,
    RefinerRunConfig,
    TokenizerRunConfig,
    VQConfig,
    VQLossConfig,
    from_dict,
)
from argen.ctf.table import CoarseTable, load_table
from argen.data.token_cache import TokenDataset
from argen.eval.features import ClassifierFeatureMaps, load_classifier
from argen.io import checkpoint as ckpt
from argen.io.checkpoint import AR_KIND, REFINER_KIND, TOKENIZER_KIND
from argen.layout import Layout
from argen.model.refiner import Refiner
from argen.model.transformer import Transformer
from argen.tokenizer.causal_video import CausalVideoVQModel
from argen.tokenizer.lpips import FeatureDistance, load_lpips
from argen.tokenizer.vit import ViTTokenizer
from argen.tokenizer.vq import VQModel

EMA_WEIGHTS_FILE = "ema.safetensors"
# What a checkpoint's config.json must state itself: the fields that fix the network's shapes, and the AR's grid.
# Any other field missing takes its default (configs written before it existed); these would build another network.
_GPT_SHAPE = ("dim", "n_layer", "n_head", "vocab_size", "num_classes")
STATED = {
    TOKENIZER_KIND: {"model": ("image_size", "ch", "ch_mult", "z_channels", "codebook_size", "codebook_dim")},
    AR_KIND: {"model": _GPT_SHAPE, "layout": ("grid", "order", "parallel")},
    REFINER_KIND: {"model": _GPT_SHAPE},
}


def run_config(cls: type, meta: dict, directory: str | Path) -> Any:
    """The run config of a checkpoint's config.json, refused with a one-line error when a section or a shape field is
    missing or a value does not fit its field."""
    config, where = meta["config"], Path(directory) / ckpt.CONFIG_FILE
    for section, keys in STATED[meta["kind"]].items():
        given = config.get(section)
        if not isinstance(given, dict):
            raise ckpt.CheckpointError(f"{where}: config.{section} is missing or not an object")
        missing = [key for key in keys if key not in given]
        if missing:
            raise ckpt.CheckpointError(
                f"{where}: config.{section} does not state {', '.join(missing)} (they fix the "
                "network's shapes and are never filled in)"
            )
    try:
        return from_dict(cls, config)
    except (ConfigError, TypeError) as error:
        raise ckpt.CheckpointError(f"{where}: {error}") from error


def tokenizer_config(directory: str | Path) -> TokenizerRunConfig:
    """The run config a tokenizer checkpoint was trained with (its data settings included)."""
    return run_config(TokenizerRunConfig, ckpt.read_meta(directory, TOKENIZER_KIND), directory)


def build_tokenizer(config: VQConfig) -> VQModel | CausalVideoVQModel | ViTTokenizer:
    """A fresh tokenizer: an image VQModel, a causal 3D video tokenizer when model.temporal_downsample > 0, or
    Prologue's ViT tokenizer with model.architecture=vit."""
    if config.architecture == "vit":
        return ViTTokenizer(config)
    return CausalVideoVQModel(config) if config.temporal_downsample else VQModel(config)


def load_tokenizer(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[VQModel | CausalVideoVQModel, TokenizerRunConfig]:
    """A trained tokenizer (eval mode) and its run config, from a checkpoint directory."""
    config = tokenizer_config(directory)
    model = build_tokenizer(config.model)
    ckpt.load_state_into(model, ckpt.load_weights(directory), str(directory))
    return model.to(device).eval(), config


def load_perceptual(loss: VQLossConfig) -> torch.nn.Module | None:
    """The perceptual distance `loss` asks for (None when its weight is 0): LPIPS-VGG16 from the two weight files,
    or a classifier checkpoint's feature maps (argen.tokenizer.lpips)."""
    if loss.perceptual_weight == 0:
        return None
    if loss.perceptual_network == "lpips":
        if not (loss.lpips_vgg and loss.lpips_linear):
            raise ConfigError(
                "loss.perceptual_network=lpips reads two local files: set loss.lpips_vgg=FILE "
                "(torchvision's VGG16 weights, e.g. vgg16-397923af.pth) and loss.lpips_linear=FILE "
                "(LlamaGen's vgg.pth); argen downloads nothing"
            )
        return load_lpips(loss.lpips_vgg, loss.lpips_linear)
    return FeatureDistance(ClassifierFeatureMaps(load_classifier(loss.perceptual_network)))


def grid_vocab(cache: TokenDataset, table: CoarseTable | None = None) -> int:
    """The vocabulary of the AR's grid tokens: the tokenizer's codes, or under CTF the table's clusters."""
    return cache.codebook_size if table is None else table.coarse_vocab


def build_ar(config: ARRunConfig, grid_vocab: int) -> tuple[Layout, Transformer]:
    """The Layout and a fresh Transformer for `config`; the two must agree on the vocabulary."""
    layout = Layout(config.layout, grid_vocab)
    if layout.vocab_size != config.model.vocab_size:
        raise ValueError(
            f"model.vocab_size={config.model.vocab_size} but the layout needs {layout.vocab_size} "
            f"(grid vocabulary {grid_vocab}); set model.vocab_size={layout.vocab_size}"
        )
    return layout, Transformer(config.model, n_transition=layout.n_transition)


def load_ar(directory: str | Path, ema: bool = False) -> tuple[Layout, Transformer, ARRunConfig, dict]:
    """A trained AR transformer (eval mode) with its Layout, run config and checkpoint metadata."""
    directory = Path(directory)
    meta = ckpt.read_meta(directory, AR_KIND)
    config = run_config(ARRunConfig, meta, directory)
    # "visual_vocab": the key's name in checkpoints written before 2026-12
    layout, model = build_ar(config, int(meta.get("grid_vocab", meta.get("visual_vocab", config.model.vocab_size))))
    if ema and not (directory / EMA_WEIGHTS_FILE).is_file():
        raise ckpt.CheckpointError(f"{directory} has no EMA weights (train with train.ema_decay > 0)")
    weights = ckpt.load_weights(directory, EMA_WEIGHTS_FILE if ema else ckpt.WEIGHTS_FILE)
    ckpt.load_state_into(model, weights, str(directory))
    return layout, model.eval(), config, meta


def load_refiner(directory: str | Path, device: str | torch.device = "cpu") -> tuple[Refiner, RefinerRunConfig, dict]:
    """A trained CTF refiner (eval mode), its run config and its checkpoint metadata."""
    meta = ckpt.read_meta(directory, REFINER_KIND)
    config = run_config(RefinerRunConfig, meta, directory)
    weights = ckpt.load_weights(directory)
    if "fine_to_coarse" not in weights:
        raise ckpt.CheckpointError(f"{directory} has no fine_to_coarse table in its weights")
    recorded = meta.get("coarse_table", {}).get("checksum")
    if recorded and CoarseTable(weights["fine_to_coarse"]).checksum != recorded:
        raise ckpt.CheckpointError(
            f"{directory}: its fine_to_coarse table is not the one it was trained with "
            f"(checksum {recorded[:12]}... in config.json); the file was altered"
        )
    model = Refiner(config.model, weights["fine_to_coarse"])
    ckpt.load_state_into(model, weights, str(directory))
    return model.to(device).eval(), config, meta


def open_token_cache(cache: str | Path, limit: int = 0) -> TokenDataset:
    """The token cache (its first `limit` samples when > 0)."""
    if not cache:
        raise ValueError("cache is not set: give a token cache folder (written by `argen tokenize`)")
    return TokenDataset(cache, limit)


def open_coarse_table(path: str | Path, cache: TokenDataset) -> CoarseTable:
    """CTF's fine -> coarse table, refused unless it clusters the codebook of the tokenizer that wrote `cache`."""
    table = load_table(path)
    table.check_tokenizer(
        cache.manifest["tokenizer"].get("sha256"), cache.codebook_size, f"the token cache {cache.directory}"
    )
    return table


def ar_config_from_cache(config: ARRunConfig, cache: TokenDataset, table: CoarseTable | None = None) -> ARRunConfig:
    """Fill what the token cache fixes (grid, vocabulary, class count, prologue) when left at defaults; under CTF
    (`table`) the grid's vocabulary is the table's clusters.

    A cache with prologue ids gives the layout its prologue segment: [class][prologue][separator][visual].
    """
    layout = dataclasses.replace(config.layout, grid=cache.grid)
    if cache.prologue_length:
        layout = dataclasses.replace(
            layout,
            prologue_length=cache.prologue_length,
            prologue_vocab=int(cache.manifest["tokenizer"]["prologue_codebook_size"]),
        )
    vocab = Layout(layout, grid_vocab(cache, table)).vocab_size
    model = dataclasses.replace(config.model, vocab_size=vocab, num_classes=cache.num_classes)
    return dataclasses.replace(config, layout=layout, model=model)


def refiner_config_from_cache(config: RefinerRunConfig, cache: TokenDataset, clusters: int) -> RefinerRunConfig:
    """Fill what the cache and the table fix: the input vocabulary (clusters) and the class count."""
    model = dataclasses.replace(config.model, vocab_size=clusters, num_classes=cache.num_classes)
    return dataclasses.replace(config, model=model)
