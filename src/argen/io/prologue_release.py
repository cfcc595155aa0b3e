"""Prologue's released models (github.com/Zyriix/prologue: `model*.safetensors` as Accelerate saves them) as argen
checkpoints: the AR as the one Transformer, the tokenizer as the ViT tokenizer (argen.tokenizer.vit).

The official blocks are not LlamaGen's in form, but they are the Transformer's options once their condition is
folded away. The AR's class enters only as the BOS embedding (`conditional_injection: llamagen`) and the released
tokenizers run on the null label (`ae_no_label=True`), so each network's condition MLP (`cond_proj`: Linear,
RMS-normalised with a gain, GELU) always reads the null class: its output c is a constant vector, and every
condition-driven part is a constant too:

- each norm `normalize(x) * sqrt(d) * (1 + affine(c))` is an RMSNorm without epsilon of gain `1 + affine(c)`;
- each residual gate `gate(c)` scales its branch: folded into the rows (and bias) of the branch's output projection;
- the query and key norms (`1 + w`) are QK-norm gains.

The rest maps onto options: GEGLU (`fc1` = [gate | value], `gelu_tanh(value) * gate`) is `ffn="geglu"` with
`w1` = value, `w3` = gate; separate `to_q`/`to_kv` are one `wqkv`; the tokenizer's projections and FFN keep their
biases (`bias=True`). The AR's RoPE rotates the first `rope_dims` of each head by the sequence index (axes
[24, 20, 20] of 64, the last two at position 0); its vocabulary is visual ids, then prologue ids, then EOS (argen's
prologue layout with its separator), its BOS table has the null class last.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from argen.config import ARRunConfig, DataConfig, GPTConfig, LayoutConfig, TokenizerRunConfig, VQConfig, to_dict
from argen.io.checkpoint import (
    AR_KIND,
    TOKENIZER_KIND,
    CheckpointError,
    checkpoint_checksum,
    file_checksum,
    load_state_into,
    read_state_dict,
    save_checkpoint,
)
from argen.io.load import build_ar, build_tokenizer, tokenizer_config
from argen.layout import Layout
from argen.model.transformer import Transformer
from argen.tokenizer.vit import ViTTokenizer

WEIGHTS_FILE = "model.safetensors"  # Accelerate's name for the first prepared model
PROLOGUE_LENGTH, PROLOGUE_CODES, GRID, ROPE_DIMS = 16, 1024, (16, 16), 24  # every released AR


def _ar_weights_file(source: str | Path) -> Path:
    """The official AR's weights: `source` is its folder (model.safetensors) or that file."""
    return Path(source) / WEIGHTS_FILE if Path(source).is_dir() else Path(source)


def read_prologue_ar(source: str | Path) -> dict[str, torch.Tensor]:
    """The official AR's state dict (`source`: its folder or model.safetensors); safetensors only."""
    path = _ar_weights_file(source)
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


class _Folded:
    """One official conditioned `Transformer` under the state-dict prefix `prefix`, its condition fixed to the null
    class (the last of `classes` one-hot rows): its blocks as argen TransformerBlock weights."""

    def __init__(self, state: dict[str, torch.Tensor], prefix: str):
        self.state, self.prefix = state, prefix
        weight = _take(state, f"{prefix}cond_proj.0.weight")
        self.cond_dim = weight.shape[0]
        h = weight[:, -1] + _take(state, f"{prefix}cond_proj.0.bias", (self.cond_dim,))
        gain = 1 + _take(state, f"{prefix}cond_proj.1.weight", (self.cond_dim,))
        self.c = F.gelu(h / h.norm().clamp_min(1e-12) * math.sqrt(self.cond_dim) * gain, approximate="tanh")
        self.layers = 1 + max(
            int(key[len(prefix) :].split(".")[1]) for key in state if key.startswith(f"{prefix}layers.")
        )
        self.head_dim = _take(state, f"{prefix}layers.0.attn1.q_norm.weight").shape[0]
        self.hidden = _take(state, f"{prefix}layers.0.ffn.fc2.weight").shape[1]
        self.dim = _take(state, f"{prefix}layers.0.adaln_1.affine.weight").shape[0]

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        return _take(self.state, f"{self.prefix}{name}", shape)

    def conditioned(self, name: str) -> torch.Tensor:
        """affine(c) of a condition-driven Linear (cond_dim -> dim), with its bias when it has one."""
        value = self.take(f"{name}.weight", (self.dim, self.cond_dim)) @ self.c
        return value + self.take(f"{name}.bias", (self.dim,)) if f"{self.prefix}{name}.bias" in self.state else value

    def blocks(self, ours: str) -> dict[str, torch.Tensor]:
        """The blocks as `{ours}layers.{i}.` weights: norms and gates folded, the official biases kept."""
        dim, hidden, weights = self.dim, self.hidden, {}
        for i in range(self.layers):
            block, out = f"layers.{i}.", f"{ours}layers.{i}."
            gate_attention, gate_ffn = self.conditioned(f"{block}gate1"), self.conditioned(f"{block}gate_mlp")
            fc1 = self.take(f"{block}ffn.fc1.weight", (2 * hidden, dim))
            projection = self.take(f"{block}attn1.proj.weight", (dim, dim))
            weights |= {
                f"{out}attention_norm.weight": 1 + self.conditioned(f"{block}adaln_1.affine"),
                f"{out}ffn_norm.weight": 1 + self.conditioned(f"{block}adaln_mlp.affine"),
                f"{out}attention.wqkv.weight": torch.cat([
                    self.take(f"{block}attn1.to_q.weight", (dim, dim)),
                    self.take(f"{block}attn1.to_kv.weight", (2 * dim, dim)),  # keys, then values
                ]),
                f"{out}attention.q_norm.weight": 1 + self.take(f"{block}attn1.q_norm.weight", (self.head_dim,)),
                f"{out}attention.k_norm.weight": 1 + self.take(f"{block}attn1.k_norm.weight", (self.head_dim,)),
                f"{out}attention.wo.weight": projection * gate_attention[:, None],
                f"{out}feed_forward.w1.weight": fc1[hidden:],  # the value half, through the GELU
                f"{out}feed_forward.w3.weight": fc1[:hidden],  # the gate half
                f"{out}feed_forward.w2.weight": self.take(f"{block}ffn.fc2.weight", (dim, hidden)) * gate_ffn[:, None],
            }  # fmt: skip
            if f"{self.prefix}{block}ffn.fc1.bias" in self.state:  # the tokenizer's blocks have biases
                fc1_bias = self.take(f"{block}ffn.fc1.bias", (2 * hidden,))
                weights |= {
                    f"{out}attention.wo.bias": self.take(f"{block}attn1.proj.bias", (dim,)) * gate_attention,
                    f"{out}feed_forward.w1.bias": fc1_bias[hidden:],
                    f"{out}feed_forward.w3.bias": fc1_bias[:hidden],
                    f"{out}feed_forward.w2.bias": self.take(f"{block}ffn.fc2.bias", (dim,)) * gate_ffn,
                }
        return weights


def fold_prologue_ar(
    state: dict[str, torch.Tensor],
    prologue_length: int = PROLOGUE_LENGTH,
    prologue_codes: int = PROLOGUE_CODES,
    grid: tuple[int, ...] = GRID,
    rope_dims: int = ROPE_DIMS,
) -> tuple[ARRunConfig, dict[str, torch.Tensor]]:
    """The argen run config and state dict of an official Prologue AR state dict (module docstring)."""
    bos = _take(state, "bos_emb.weight")
    embeddings = _take(state, "semantic_emb.weight")
    vocab, dim = embeddings.shape
    grid_vocab = vocab - prologue_codes - 1  # visual ids, then prologue ids, then EOS
    if grid_vocab < 1:
        raise CheckpointError(f"the vocabulary has {vocab} ids: too few for {prologue_codes} prologue codes and EOS")
    unsupported = [key for key in state if key.startswith(("ar_model.abs_pos", "ar_model.input_layer.weight"))]
    if unsupported:
        raise CheckpointError(f"this Prologue AR has {unsupported[0]}: absolute positions or an input layer, which "
                              "the released models do not have and argen does not convert")  # fmt: skip
    # Under conditional_injection=llamagen the condition MLP always reads the null class (the last row).
    folded = _Folded(state, "ar_model.")
    weights = {
        "cls_embedding.embedding_table.weight": bos,
        "tok_embeddings.weight": embeddings,
        "norm.weight": 1 + folded.conditioned("out_norm.affine"),
        "output.weight": folded.take("out.weight", (vocab, dim)),
        **folded.blocks(""),
    }
    model = GPTConfig(
        dim=dim, n_layer=folded.layers, n_head=dim // folded.head_dim, vocab_size=vocab,
        num_classes=bos.shape[0] - 1, class_dropout_prob=0.1, token_dropout_p=0.0, resid_dropout_p=0.0,
        ffn_dropout_p=0.0, norm_eps=0.0, ffn="geglu", ffn_hidden=folded.hidden, qk_norm=True,
        rope_positions="sequence", rope_dims=rope_dims,
    )  # fmt: skip
    layout = LayoutConfig(grid=tuple(grid), prologue_length=prologue_length, prologue_vocab=prologue_codes)
    return ARRunConfig(model=model, layout=layout), {key: value.float() for key, value in weights.items()}


def load_prologue_ar(
    source: str | Path,
    prologue_length: int = PROLOGUE_LENGTH,
    prologue_codes: int = PROLOGUE_CODES,
    grid: tuple[int, ...] = GRID,
    rope_dims: int = ROPE_DIMS,
) -> tuple[ARRunConfig, Layout, Transformer]:
    """An official Prologue AR (its folder or model.safetensors) as argen's run config, Layout and Transformer (eval
    mode), its folded weights loaded strictly."""
    config, weights = fold_prologue_ar(read_prologue_ar(source), prologue_length, prologue_codes, grid, rope_dims)
    layout, model = build_ar(config, config.model.vocab_size - prologue_codes - 1)
    load_state_into(model, weights, str(_ar_weights_file(source)))
    return config, layout, model.eval()


def convert_prologue_ar(
    source: str | Path,
    destination: str | Path,
    prologue_length: int = PROLOGUE_LENGTH,
    prologue_codes: int = PROLOGUE_CODES,
    grid: tuple[int, ...] = GRID,
    rope_dims: int = ROPE_DIMS,
    tokenizer: str | Path | None = None,
) -> Path:
    """Write an argen AR checkpoint from an official Prologue AR (its folder or model.safetensors), loaded strictly
    into the Transformer before anything is written. `tokenizer` (a converted Prologue tokenizer folder) is
    recorded as the tokenizer it decodes with, as a trained AR records its own: `argen.load`, `argen sample` and
    `argen serve` then find it, and refuse it if its weights change."""
    path = _ar_weights_file(source)
    config, layout, model = load_prologue_ar(path, prologue_length, prologue_codes, grid, rope_dims)
    grid_vocab = layout.grid_vocab
    decoder = {"tokenizer": None}
    if tokenizer is not None:
        codebook = tokenizer_config(tokenizer).model.codebook_size
        if codebook != grid_vocab:
            raise CheckpointError(f"the tokenizer {tokenizer} has {codebook} codes, the AR {grid_vocab} visual ids")
        decoder = {"tokenizer": os.path.relpath(Path(tokenizer).resolve(), Path(destination).resolve()),
                   "tokenizer_sha256": checkpoint_checksum(tokenizer)}  # fmt: skip
    return save_checkpoint(
        destination,
        AR_KIND,
        to_dict(config),
        model.state_dict(),
        extra={
            "grid_vocab": grid_vocab,
            "class_names": [],
            **decoder,
            "source": str(path),
            "source_sha256": file_checksum(path),
        },  # fmt: skip
    )


def read_prologue_tokenizer(source: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The official tokenizer's encoder and decoder state dicts from its folder, whichever of Accelerate's
    `model*.safetensors` holds each (the encoder's keys start with `enc.`, the decoder's with `dec.`)."""
    folder = Path(source)
    files = sorted(folder.glob("model*.safetensors")) if folder.is_dir() else []
    parts = {path: read_state_dict(path, "the Prologue tokenizer") for path in files}
    found = {}
    for prefix in ("enc.", "dec."):
        holding = [state for state in parts.values() if any(key.startswith(prefix) for key in state)]
        if len(holding) != 1:
            raise CheckpointError(f"{folder}: {len(holding)} model*.safetensors files hold `{prefix}*` keys, expected "
                                  "one (the released tokenizer folder holds the encoder and the decoder)")  # fmt: skip
        found[prefix] = holding[0]
    return found["enc."], found["dec."]


def fold_prologue_tokenizer(
    encoder_state: dict[str, torch.Tensor],
    decoder_state: dict[str, torch.Tensor],
    image_size: int = 256,
    patch_size: int = 16,
    rope_dims: tuple[int, ...] = (20, 20, 24),
) -> tuple[TokenizerRunConfig, dict[str, torch.Tensor]]:
    """The argen run config and state dict (ViTTokenizer) of the official Encoder and Decoder, both conditioned on
    the null class as the released tokenizers are (`ae_no_label=True`). A Prologue-Post tokenizer (`semantic_enc.*`:
    a separate prologue encoder over the encoder's outputs) keeps its queries there."""
    encoder, decoder = _Folded(encoder_state, "enc."), _Folded(decoder_state, "dec.")
    post = any(key.startswith("semantic_enc.") for key in encoder_state)
    queries_from = _Folded(encoder_state, "semantic_enc.") if post else encoder
    patch_dim = _take(encoder_state, "enc.input_layer.weight").shape[1]
    queries = queries_from.take("learnable_query")[0]
    codebook = _take(encoder_state, "quantizer.embedding.weight")
    prologue_codebook = _take(encoder_state, "semantic_quantizer.embedding.weight")
    code_dim, query_dim = codebook.shape[1], queries_from.dim
    weights = {
        "patch_embedding.weight": encoder.take("input_layer.weight", (encoder.dim, patch_dim)),
        "patch_embedding.bias": encoder.take("input_layer.bias", (encoder.dim,)),
        "queries": queries,
        **encoder.blocks("encoder."),
        "quant_projection.weight": _take(encoder_state, "quantizer.proj_in.weight", (code_dim, encoder.dim)),
        "quant_projection.bias": _take(encoder_state, "quantizer.proj_in.bias", (code_dim,)),
        "quantize.embedding.weight": codebook,
        "prologue.codebook": prologue_codebook,
        "prologue.projection.weight": _take(
            encoder_state, "semantic_quantizer.proj_in.weight", (prologue_codebook.shape[1], query_dim)
        ),
        "prologue.projection.bias": _take(
            encoder_state, "semantic_quantizer.proj_in.bias", (prologue_codebook.shape[1],)
        ),
        "code_embedding.weight": decoder.take("input_layer.weight", (decoder.dim, code_dim)),
        "code_embedding.bias": decoder.take("input_layer.bias", (decoder.dim,)),
        **decoder.blocks("decoder."),
        "norm.weight": 1 + decoder.conditioned("out_norm.affine"),
        "to_patches.weight": decoder.take("out.weight", (patch_dim, decoder.dim)),
        "to_patches.bias": decoder.take("out.bias", (patch_dim,)),
    }  # fmt: skip
    if post:
        weights |= {
            "prologue_input.weight": queries_from.take("input_layer.weight", (query_dim, encoder.dim)),
            "prologue_input.bias": queries_from.take("input_layer.bias", (query_dim,)),
            **queries_from.blocks("prologue_encoder."),
        }
    channels = patch_dim // patch_size**2
    model = VQConfig(
        architecture="vit", image_size=image_size, in_channels=channels, patch_size=patch_size,
        codebook_size=codebook.shape[0], codebook_dim=code_dim, vit_dim=encoder.dim, vit_layers=encoder.layers,
        vit_heads=encoder.dim // encoder.head_dim, vit_decoder_dim=decoder.dim, vit_decoder_layers=decoder.layers,
        vit_decoder_heads=decoder.dim // decoder.head_dim, vit_rope_dims=tuple(rope_dims),
        prologue_tokens=len(queries), prologue_codebook_size=prologue_codebook.shape[0],
        prologue_codebook_dim=prologue_codebook.shape[1], vit_prologue_dim=query_dim if post else 0,
        vit_prologue_layers=queries_from.layers, vit_prologue_heads=query_dim // queries_from.head_dim,
    )  # fmt: skip
    data = DataConfig(name="imagefolder", image_size=image_size, channels=channels)
    return TokenizerRunConfig(model=model, data=data), {key: value.float() for key, value in weights.items()}


def load_prologue_tokenizer(
    source: str | Path,
    image_size: int = 256,
    patch_size: int = 16,
    rope_dims: tuple[int, ...] = (20, 20, 24),
) -> tuple[TokenizerRunConfig, ViTTokenizer]:
    """An official Prologue tokenizer folder as argen's run config and ViTTokenizer (eval mode), its folded weights
    loaded strictly (the code-usage records, which are not weights, start empty)."""
    config, weights = fold_prologue_tokenizer(*read_prologue_tokenizer(source), image_size, patch_size, rope_dims)
    model = build_tokenizer(config.model)
    usage = {key: value for key, value in model.state_dict().items() if key.endswith("codebook_used")}
    load_state_into(model, {**usage, **weights}, str(source))
    return config, model.eval()


def convert_prologue_tokenizer(
    source: str | Path,
    destination: str | Path,
    image_size: int = 256,
    patch_size: int = 16,
    rope_dims: tuple[int, ...] = (20, 20, 24),
) -> Path:
    """Write an argen tokenizer checkpoint (a ViTTokenizer) from an official Prologue tokenizer folder, loaded
    strictly before anything is written."""
    config, model = load_prologue_tokenizer(source, image_size, patch_size, rope_dims)
    return save_checkpoint(destination, TOKENIZER_KIND, to_dict(config), model.state_dict(),
                           extra={"source": str(source)})  # fmt: skip
