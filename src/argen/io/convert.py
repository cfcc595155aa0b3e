"""LlamaGen and PAR checkpoints (`.pt`: GPT and VQ) -> argen state dicts and checkpoint directories.

argen's Transformer uses LlamaGen's parameter names, so conversion only unwraps the container and
drops what is not a weight: the RoPE table and causal mask some exports carry, and KV-cache buffers
left by `setup_caches`. PAR checkpoints add `spe_tok_embeddings.special_embeddings.weight` (the
transition embeddings) and convert the same way; LlamaGen's VQ keys equal argen's VQModel's. Files are
read by `argen.io.checkpoint.read_torch_file`: tensors and plain containers only, never pickled code.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from argen.config import (
    GPT_PRESETS,
    VQ_PRESETS,
    ARRunConfig,
    DataConfig,
    GPTConfig,
    LayoutConfig,
    TokenizerRunConfig,
    VQConfig,
    build,
    preset,
    to_dict,
)
from argen.io.checkpoint import file_checksum, load_state_into, read_torch_file, save_checkpoint
from argen.io.load import AR_KIND, TOKENIZER_KIND, build_ar
from argen.model.transformer import ffn_hidden_dim
from argen.tokenizer.vq import VQModel

logger = logging.getLogger(__name__)

# Non-weight entries found in LlamaGen/PAR exports (whole key, or a key's last part after a dot).
DROPPED_KEYS = ("freqs_cis", "causal_mask", "k_cache", "v_cache")
# Wrappers around the real names: DDP (`module.`) and torch.compile (`_orig_mod.`).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_foreign_checkpoint(path: str | Path) -> dict[str, Any]:
    """A LlamaGen/PAR GPT `.pt` (a state dict, or a training checkpoint), read without unpickling code."""
    state = read_torch_file(path)
    if not isinstance(state, dict):
        raise ValueError(
            f"{path} holds a {type(state).__name__}, expected a dict (a state dict, or a "
            f"training checkpoint with the weights under 'model')"
        )
    return state


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def convert_llamagen_gpt(state: dict[str, Any], weights_key: str = "model") -> dict[str, torch.Tensor]:
    """The Transformer state dict inside a LlamaGen/PAR checkpoint.

    `state` is a DDP training checkpoint (weights under `weights_key`, "model" or "ema") or a raw
    (FSDP) state dict. Non-weight keys (DROPPED_KEYS) are dropped and logged; wrapper prefixes
    (WRAPPER_PREFIXES) removed. Load the result with `argen.io.checkpoint.load_state_into`.
    """
    if weights_key in state and isinstance(state[weights_key], dict):
        weights = state[weights_key]
    elif state and all(isinstance(value, torch.Tensor) for value in state.values()):
        weights = state
    else:
        raise ValueError(
            f"not a LlamaGen/PAR GPT checkpoint: no tensor dict under {weights_key!r} and not a raw "
            f"state dict (top-level keys: {', '.join(sorted(map(str, state))[:10])})"
        )
    converted, dropped = {}, []
    for key, value in weights.items():
        name = _strip_wrappers(key)
        if name.split(".")[-1] in DROPPED_KEYS:
            dropped.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, expected a tensor")
        converted[name] = value
    if dropped:
        logger.info("dropped %d non-weight entries: %s", len(dropped), ", ".join(dropped))
    return converted


def infer_llamagen_config(weights: dict[str, torch.Tensor], n_head: int | None = None) -> tuple[GPTConfig, int]:
    """(GPTConfig, n_transition) that fits converted LlamaGen/PAR weights.

    Widths, depth, vocabulary, classes (the last class row is taken as the null class) and the
    transition count come from the shapes; the head count from LlamaGen's size table, or `n_head`.
    """
    try:
        vocab_size, dim = weights["tok_embeddings.weight"].shape
        class_rows = weights["cls_embedding.embedding_table.weight"].shape[0]
        qkv_rows = weights["layers.0.attention.wqkv.weight"].shape[0]
        hidden = weights["layers.0.feed_forward.w1.weight"].shape[0]
    except KeyError as error:
        raise ValueError(f"not a LlamaGen c2i GPT state dict: missing {error}") from error
    n_layer = 1 + max(int(match.group(1)) for key in weights if (match := re.match(r"layers\.(\d+)\.", key)))
    if n_head is None:
        sizes = [
            preset
            for preset in GPT_PRESETS.values()  # LlamaGen's sizes: the 16384-code presets
            if (preset["n_layer"], preset["dim"], preset["vocab_size"]) == (n_layer, dim, 16384)
        ]
        if not sizes:
            raise ValueError(f"no LlamaGen size has {n_layer} layers of width {dim}; pass n_head explicitly")
        n_head = sizes[0]["n_head"]
    head_dim = dim // n_head
    kv_heads = (qkv_rows - dim) // (2 * head_dim)
    config = GPTConfig(
        dim=dim,
        n_layer=n_layer,
        n_head=n_head,
        n_kv_head=None if kv_heads == n_head else kv_heads,
        num_classes=class_rows - 1,
        class_dropout_prob=0.1,
        vocab_size=vocab_size,
    )
    # LlamaGen rounds the FFN width up to multiple_of (256); smaller models may use a finer rounding.
    for multiple_of in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        config.multiple_of = multiple_of
        if ffn_hidden_dim(config) == hidden:
            break
    else:
        raise ValueError(
            f"FFN width {hidden} does not follow LlamaGen's rule for dim {dim}; "
            f"build the GPTConfig by hand (ffn_dim_multiplier)"
        )
    transitions = weights.get("spe_tok_embeddings.special_embeddings.weight")
    return config, 0 if transitions is None else transitions.shape[0]


# LlamaGen's c2i releases are 256 px (16x16 tokens) or 384 px; every PAR release is 384 px (24x24).
DEFAULT_GRIDS = {"llamagen": (16, 16), "par": (24, 24)}


def convert_checkpoint(
    kind: str,
    source: str | Path,
    destination: str | Path,
    preset_name: str,
    parallel: int = 4,
    overrides: list[str] | None = None,
) -> Path:
    """Write an argen checkpoint directory from a LlamaGen GPT, PAR GPT or LlamaGen VQ `.pt`.

    kind: "llamagen" (raster layout), "par" (region layout with `parallel` = k) or "llamagen-vq".
    preset_name: a GPT preset (GPT-B ... GPT-3B) or a VQ preset (VQ-16, VQ-8). `overrides` are dotted
    `key=value` settings of the run config, e.g. `layout.grid=[24,24]` for a 384 px LlamaGen model
    (the grid is not stored in the weights). Weights are loaded strictly before anything is written.
    """
    source, destination = Path(source), Path(destination)
    if kind == "llamagen-vq":
        vq = preset(VQ_PRESETS, preset_name, VQConfig)
        data = DataConfig(name="imagefolder", image_size=vq.image_size, channels=vq.in_channels)
        config = build(TokenizerRunConfig, TokenizerRunConfig(model=vq, data=data), overrides=overrides)
        model = VQModel(config.model)
        weights = read_llamagen_vq(source)
        load_state_into(model, weights, str(source))
        return save_checkpoint(
            destination,
            TOKENIZER_KIND,
            to_dict(config),
            model.state_dict(),
            extra={"source": str(source), "source_sha256": file_checksum(source)},
        )
    if kind not in DEFAULT_GRIDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected llamagen, par or llamagen-vq")
    layout = LayoutConfig(grid=DEFAULT_GRIDS[kind])
    if kind == "par":
        layout = LayoutConfig(grid=DEFAULT_GRIDS[kind], order="region", parallel=parallel)
    config = build(
        ARRunConfig, ARRunConfig(model=preset(GPT_PRESETS, preset_name, GPTConfig), layout=layout), overrides=overrides
    )
    grid_vocab = config.model.vocab_size  # LlamaGen/PAR GPTs predict visual codes only
    _, model = build_ar(config, grid_vocab)
    load_state_into(model, convert_llamagen_gpt(read_foreign_checkpoint(source)), str(source))
    return save_checkpoint(
        destination,
        AR_KIND,
        to_dict(config),
        model.state_dict(),
        extra={
            "grid_vocab": grid_vocab,
            "class_names": [],
            "tokenizer": None,
            "source": str(source),
            "source_sha256": file_checksum(source),
        },
    )


# ------------------------------------------------------------------------------------------------
# LlamaGen's VQ tokenizer

_LLAMAGEN_KEY = re.compile(r"^(encoder|decoder|quantize|quant_conv|post_quant_conv)\.")


def convert_llamagen_vq(state: dict) -> dict[str, torch.Tensor]:
    """A LlamaGen VQ checkpoint ({"model": state_dict, ...} or a raw state dict) -> our state dict.

    The keys are the same; this unwraps the "model" entry, strips a DDP "module." prefix, and refuses
    any key that is not part of LlamaGen's VQModel (all of them are listed) instead of dropping it.
    """
    if not isinstance(state, dict):
        raise ValueError(f"a LlamaGen VQ checkpoint must be a dict, got {type(state).__name__}")
    weights = state["model"] if "model" in state else state
    if not isinstance(weights, dict) or not weights:
        raise ValueError("the checkpoint's 'model' entry must be a non-empty state dict")
    converted: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in weights.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if not isinstance(value, torch.Tensor) or not _LLAMAGEN_KEY.match(name):
            unexpected.append(key)
            continue
        converted[name] = value
    if unexpected:
        top = "" if "model" in state else f" (top-level keys: {', '.join(sorted(map(str, state))[:12])})"
        raise ValueError(
            f"not a LlamaGen VQ state dict: unexpected key(s) {', '.join(map(str, unexpected))}{top}; "
            "expected only encoder.*, decoder.*, quantize.*, quant_conv.*, post_quant_conv.*"
        )
    return converted


def vq_config_from_state(state: dict[str, torch.Tensor], image_size: int = 256) -> VQConfig:
    """The VQConfig whose model has the shapes of `state` (a converted LlamaGen/argen VQ state dict).

    l2 normalisation, beta and entropy weight are not stored in weights: LlamaGen's defaults are used.
    """
    try:
        conv_in = state["encoder.conv_in.weight"]
        levels = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.conv_blocks\.(\d+)\.", k)))
        blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.conv_blocks\.0\.res\.(\d+)\.", k)))
        ch = conv_in.shape[0]
        mult = tuple(state[f"encoder.conv_blocks.{i}.res.0.conv1.weight"].shape[0] // ch for i in range(levels))
        codebook_size, codebook_dim = state["quantize.embedding.weight"].shape
        z_channels = state["encoder.conv_out.weight"].shape[0]
    except (KeyError, ValueError) as error:
        raise ValueError(f"cannot read a VQ configuration from this state dict (missing {error})") from error
    return VQConfig(
        image_size=image_size,
        in_channels=conv_in.shape[1],
        ch=ch,
        ch_mult=mult,
        num_res_blocks=blocks,
        z_channels=z_channels,
        codebook_size=codebook_size,
        codebook_dim=codebook_dim,
    )


def read_llamagen_vq(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a LlamaGen VQ `.pt` safely (tensors and argparse.Namespace only) and convert it."""
    return convert_llamagen_vq(read_torch_file(path))


def load_llamagen_vq(path: str | Path, config: VQConfig | None = None, image_size: int = 256) -> VQModel:
    """A VQModel holding a LlamaGen VQ checkpoint (strict); the config is read from the shapes if not given."""
    state = read_llamagen_vq(path)
    model = VQModel(config or vq_config_from_state(state, image_size))
    load_state_into(model, state, str(path))
    return model
