"""Prologue's released AR models (github.com/Zyriix/prologue: `model.safetensors` as Accelerate saves it) as argen
checkpoints of the one Transformer.

The official AR block is not LlamaGen's in form, but it is one of the Transformer's options once its condition is
folded away. With `conditional_injection: llamagen` the class enters only as the BOS embedding, and the condition
MLP (`cond_proj`: Linear, RMS-normalised with a gain, GELU) always reads the null class, so its output c is a
constant vector. Every condition-driven part is then a constant too:

- each norm `normalize(x) * sqrt(d) * (1 + affine(c))` is an RMSNorm without epsilon of gain `1 + affine(c)`;
- each residual gate `gate(c)` scales its branch: folded into the rows of the branch's output projection;
- the query and key norms (`1 + w`) are QK-norm gains.

The rest maps onto options: GEGLU (`fc1` = [gate | value], `gelu_tanh(value) * gate`) is `ffn="geglu"` with
`w1` = value, `w3` = gate; separate `to_q`/`to_kv` are one `wqkv`; RoPE rotates the first `rope_dims` of each
head by the sequence index (axes [24, 20, 20] of 64, the last two at position 0); the vocabulary is visual ids,
then prologue ids, then EOS: argen's prologue layout with its separator, the BOS table has the null class last.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from argen.config import ARRunConfig, GPTConfig, LayoutConfig, to_dict
from argen.io.checkpoint import (
    AR_KIND,
    CheckpointError,
    file_checksum,
    load_state_into,
    read_state_dict,
    save_checkpoint,
)
from argen.io.load import build_ar

WEIGHTS_FILE = "model.safetensors"  # Accelerate's name for the first prepared model
PROLOGUE_LENGTH, PROLOGUE_CODES, GRID, ROPE_DIMS = 16, 1024, (16, 16), 24  # every released AR


def read_prologue_ar(source: str | Path) -> dict[str, torch.Tensor]:
    """The official AR's state dict: `source` is its folder (model.safetensors) or that file; safetensors only."""
    path = Path(source)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: Prologue's released models are safetensors (model.safetensors); argen reads "
                              "no other format from them")  # fmt: skip
    return read_state_dict(path, "the Prologue AR")


def _take(state: dict[str, torch.Tensor], key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"not a Prologue AR state dict: {key} is missing")
    value = state[key].double()
    if shape is not None and tuple(value.shape) != shape:
        raise CheckpointError(f"{key} has shape {tuple(value.shape)}, expected {shape}")
    return value


def fold_prologue_ar(
    state: dict[str, torch.Tensor],
    prologue_length: int = PROLOGUE_LENGTH,
    prologue_codes: int = PROLOGUE_CODES,
    grid: tuple[int, ...] = GRID,
    rope_dims: int = ROPE_DIMS,
) -> tuple[ARRunConfig, dict[str, torch.Tensor]]:
    """The argen run config and state dict of an official Prologue AR state dict (module docstring)."""
    prefix = "ar_model."
    bos = _take(state, "bos_emb.weight")
    classes_and_null, dim = bos.shape
    embeddings = _take(state, "semantic_emb.weight")
    vocab = embeddings.shape[0]
    head_dim = _take(state, f"{prefix}layers.0.attn1.q_norm.weight").shape[0]
    layers = 1 + max(int(key.split(".")[2]) for key in state if key.startswith(f"{prefix}layers."))
    hidden = _take(state, f"{prefix}layers.0.ffn.fc2.weight").shape[1]
    grid_vocab = vocab - prologue_codes - 1  # visual ids, then prologue ids, then EOS
    if grid_vocab < 1:
        raise CheckpointError(f"the vocabulary has {vocab} ids: too few for {prologue_codes} prologue codes and EOS")
    unsupported = [key for key in state if key.startswith((f"{prefix}abs_pos", f"{prefix}input_layer.weight"))]
    if unsupported:
        raise CheckpointError(f"this Prologue AR has {unsupported[0]}: absolute positions or an input layer, which "
                              "the released models do not have and argen does not convert")  # fmt: skip

    # The condition the MLP always sees under conditional_injection=llamagen: the null class (the last row).
    weight = _take(state, f"{prefix}cond_proj.0.weight")
    cond_dim = weight.shape[0]
    h = weight[:, classes_and_null - 1] + _take(state, f"{prefix}cond_proj.0.bias", (cond_dim,))
    gain = 1 + _take(state, f"{prefix}cond_proj.1.weight", (cond_dim,))
    c = F.gelu(h / h.norm().clamp_min(1e-12) * math.sqrt(cond_dim) * gain, approximate="tanh")

    def conditioned(name: str, bias: bool = True) -> torch.Tensor:
        """affine(c) of a condition-driven Linear (cond_dim -> dim)."""
        value = _take(state, f"{name}.weight", (dim, cond_dim)) @ c
        return value + _take(state, f"{name}.bias", (dim,)) if bias else value

    weights = {
        "cls_embedding.embedding_table.weight": bos,
        "tok_embeddings.weight": embeddings,
        "norm.weight": 1 + conditioned(f"{prefix}out_norm.affine"),
        "output.weight": _take(state, f"{prefix}out.weight", (vocab, dim)),
    }
    for i in range(layers):
        block, ours = f"{prefix}layers.{i}.", f"layers.{i}."
        gate_attention = conditioned(f"{block}gate1", bias=f"{block}gate1.bias" in state)
        gate_ffn = conditioned(f"{block}gate_mlp", bias=f"{block}gate_mlp.bias" in state)
        fc1 = _take(state, f"{block}ffn.fc1.weight", (2 * hidden, dim))
        query = _take(state, f"{block}attn1.to_q.weight", (dim, dim))
        key_value = _take(state, f"{block}attn1.to_kv.weight", (2 * dim, dim))  # keys, then values
        projection = _take(state, f"{block}attn1.proj.weight", (dim, dim))
        down = _take(state, f"{block}ffn.fc2.weight", (dim, hidden))
        weights |= {
            f"{ours}attention_norm.weight": 1 + conditioned(f"{block}adaln_1.affine"),
            f"{ours}ffn_norm.weight": 1 + conditioned(f"{block}adaln_mlp.affine"),
            f"{ours}attention.wqkv.weight": torch.cat([query, key_value]),
            f"{ours}attention.q_norm.weight": 1 + _take(state, f"{block}attn1.q_norm.weight", (head_dim,)),
            f"{ours}attention.k_norm.weight": 1 + _take(state, f"{block}attn1.k_norm.weight", (head_dim,)),
            f"{ours}attention.wo.weight": projection * gate_attention[:, None],
            f"{ours}feed_forward.w1.weight": fc1[hidden:],  # the value half, through the GELU
            f"{ours}feed_forward.w3.weight": fc1[:hidden],  # the gate half
            f"{ours}feed_forward.w2.weight": down * gate_ffn[:, None],
        }
    model = GPTConfig(
        dim=dim, n_layer=layers, n_head=dim // head_dim, vocab_size=vocab, num_classes=classes_and_null - 1,
        class_dropout_prob=0.1, token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0, norm_eps=0.0,
        ffn="geglu", ffn_hidden=hidden, qk_norm=True, rope_positions="sequence", rope_dims=rope_dims,
    )  # fmt: skip
    layout = LayoutConfig(grid=tuple(grid), prologue_length=prologue_length, prologue_vocab=prologue_codes)
    return ARRunConfig(model=model, layout=layout), {key: value.float() for key, value in weights.items()}


def convert_prologue_ar(
    source: str | Path,
    destination: str | Path,
    prologue_length: int = PROLOGUE_LENGTH,
    prologue_codes: int = PROLOGUE_CODES,
    grid: tuple[int, ...] = GRID,
    rope_dims: int = ROPE_DIMS,
) -> Path:
    """Write an argen AR checkpoint from an official Prologue AR (its folder or model.safetensors), loaded strictly
    into the Transformer before anything is written."""
    path = Path(source) / WEIGHTS_FILE if Path(source).is_dir() else Path(source)
    config, weights = fold_prologue_ar(read_prologue_ar(path), prologue_length, prologue_codes, grid, rope_dims)
    grid_vocab = config.model.vocab_size - prologue_codes - 1
    _, model = build_ar(config, grid_vocab)
    load_state_into(model, weights, str(path))
    return save_checkpoint(
        destination,
        AR_KIND,
        to_dict(config),
        model.state_dict(),
        extra={
            "grid_vocab": grid_vocab,
            "class_names": [],
            "tokenizer": None,
            "source": str(path),
            "source_sha256": file_checksum(path),
        },  # fmt: skip
    )
