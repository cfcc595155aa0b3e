"""LlamaGen's class-conditional GPT as a pure module: ids (or embeddings), positions and mask in, logits out.

Numerics and parameter names follow LlamaGen (`autoregressive/models/gpt.py`) exactly, so LlamaGen and
PAR checkpoints load with strict=True: pre-norm Llama blocks (RMSNorm in float32, fused qkv, SwiGLU),
rotary positions given as a table, SDPA attention, an untied output head, float32 logits. The one
addition is PAR's transition embeddings (`spe_tok_embeddings.special_embeddings`), present only when
the layout uses transition slots.

What each slot holds is said by `kinds` (see `SLOT_CLASS`, `SLOT_TOKEN`, `SLOT_TRANSITION`); where it
sits by its RoPE row; what it may see by the boolean mask. The model knows nothing about orders,
groups or sampling: the Layout and the Sampler own those.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from argen.config import GPTConfig
from argen.model.kv_cache import KVCache
from argen.model.linear import Linear
from argen.model.rope import Rotation, apply_rotation, rotation

SLOT_CLASS, SLOT_TOKEN, SLOT_TRANSITION = 0, 1, 2


def find_multiple(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= value."""
    return value if value % multiple == 0 else value + multiple - value % multiple


def ffn_hidden_dim(config: GPTConfig) -> int:
    """config.ffn_hidden, or LlamaGen's SwiGLU width: 2/3 of 4*dim, optionally scaled, rounded up to multiple_of."""
    if config.ffn_hidden:
        return config.ffn_hidden
    hidden = int(2 * (4 * config.dim) / 3)
    if config.ffn_dim_multiplier is not None:
        hidden = int(config.ffn_dim_multiplier * hidden)
    return find_multiple(hidden, config.multiple_of)


def attention_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype attention runs in for activations `x`: autocast's where it is on, else theirs."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool mask (True = may attend) as SDPA's additive one (0 / -inf). SDPA would convert a bool mask in every
    layer; converted once per forward, every layer shares it."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


class RMSNorm(nn.Module):
    """x / rms(x) computed in float32, cast back, then scaled (LlamaGen's order of operations)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm is that formula in one operator (bit-identical on the CPU and CUDA kernels).
        return F.rms_norm(x.float(), self.weight.shape, eps=self.eps).type_as(x) * self.weight


class DropPath(nn.Module):
    """Stochastic depth per sample (timm semantics): drop the branch, rescale the survivors."""

    def __init__(self, probability: float):
        super().__init__()
        self.probability = probability

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.probability == 0.0 or not self.training:
            return x
        keep = 1.0 - self.probability
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)  # (B, 1, 1)
        return x * mask / keep


class ClassEmbedding(nn.Module):
    """Class-label table; the extra last row (when guidance is trained) is the null class."""

    def __init__(self, num_classes: int, dim: int, with_null: bool):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(with_null), dim)


class TransitionEmbedding(nn.Module):
    """PAR's learned transition embeddings, padding an input group up to the next output group."""

    def __init__(self, count: int, dim: int):
        super().__init__()
        self.special_embeddings = nn.Embedding(count, dim)


class Attention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head or config.n_head
        self.head_dim = config.dim // config.n_head
        self.dim = config.dim
        self.attn_dropout_p = config.attn_dropout_p
        kv_dim = self.n_kv_head * self.head_dim
        self.wqkv = Linear(config.dim, config.dim + 2 * kv_dim)
        self.wo = Linear(config.dim, config.dim, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.resid_dropout_p)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, config.norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def forward(
        self,
        x: torch.Tensor,
        rope: Rotation,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
        cache_slots: torch.Tensor | None,
        kv_length: int | None,
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        kv_dim = self.n_kv_head * self.head_dim
        query_key, value = self.wqkv(x).split([self.dim + kv_dim, kv_dim], dim=-1)
        query_key = query_key.reshape(batch, length, self.n_head + self.n_kv_head, self.head_dim)
        if self.q_norm is not None:
            query_key = torch.cat(
                [self.q_norm(query_key[:, :, : self.n_head]), self.k_norm(query_key[:, :, self.n_head :])], dim=2
            )
        # Queries and keys share the rotation table: rotate all their heads in one call.
        query_key = apply_rotation(query_key, rope)
        query, key = query_key.split([self.n_head, self.n_kv_head], dim=2)  # (B, S, H, D), (B, S, H_kv, D)
        value = value.reshape(batch, length, self.n_kv_head, self.head_dim)
        query, key, value = (t.transpose(1, 2) for t in (query, key, value))  # (B, H, S, D)
        if cache is not None:
            cache.write(layer, cache_slots, key, value)
            key = cache.keys[layer][:, :, :kv_length]  # (B, H_kv, kv_length, D)
            value = cache.values[layer][:, :, :kv_length]
        if self.n_kv_head != self.n_head:
            key = key.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            value = value.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        output = F.scaled_dot_product_attention(
            query,
            key.to(query.dtype),
            value.to(query.dtype),
            attn_mask=mask,
            dropout_p=self.attn_dropout_p if self.training else 0.0,
        )  # (B, H, S, D)
        output = output.transpose(1, 2).reshape(batch, length, self.dim)
        return self.resid_dropout(self.wo(output))


class FeedForward(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = ffn_hidden_dim(config)
        self.w1 = Linear(config.dim, hidden, bias=config.bias)
        self.w3 = Linear(config.dim, hidden, bias=config.bias)
        self.w2 = Linear(hidden, config.dim, bias=config.bias)
        self.ffn_dropout = nn.Dropout(config.ffn_dropout_p)
        self.gelu = config.ffn == "geglu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.gelu(self.w1(x), approximate="tanh") if self.gelu else F.silu(self.w1(x))
        return self.ffn_dropout(self.w2(gate * self.w3(x)))


class TransformerBlock(nn.Module):
    def __init__(self, config: GPTConfig, drop_path: float):
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = FeedForward(config)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        x: torch.Tensor,
        rope: Rotation,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
        cache_slots: torch.Tensor | None,
        kv_length: int | None,
    ) -> torch.Tensor:
        h = x + self.drop_path(self.attention(self.attention_norm(x), rope, mask, cache, layer, cache_slots, kv_length))
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))


class ClassConditionedModel(nn.Module):
    """What the GPT and CTF's refiner share: a `config` (GPTConfig), a class table `cls_embedding`
    (optionally with the null row) and LlamaGen's initialisation."""

    config: GPTConfig
    cls_embedding: ClassEmbedding

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    @property
    def has_null_class(self) -> bool:
        """True when the class table has the null row that classifier-free guidance needs."""
        return self.cls_embedding.embedding_table.num_embeddings > self.config.num_classes

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def head_dim(self) -> int:
        return self.config.dim // self.config.n_head


class Transformer(ClassConditionedModel):
    """LlamaGen GPT (c2i). `n_transition` > 0 adds PAR's transition embeddings."""

    def __init__(self, config: GPTConfig, n_transition: int = 0):
        super().__init__()
        if n_transition < 0:
            raise ValueError(f"n_transition must be >= 0, got {n_transition}")
        self.config = config
        self.n_transition = n_transition
        self.cls_embedding = ClassEmbedding(config.num_classes, config.dim, config.class_dropout_prob > 0)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        if n_transition > 0:
            self.spe_tok_embeddings = TransitionEmbedding(n_transition, config.dim)
        self.tok_dropout = nn.Dropout(config.token_dropout_p)
        # Linear ramp 0..drop_path_rate over depth (host floats: also works under a meta device).
        rates = [config.drop_path_rate * i / max(config.n_layer - 1, 1) for i in range(config.n_layer)]
        self.layers = nn.ModuleList(TransformerBlock(config, rate) for rate in rates)
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = Linear(config.dim, config.vocab_size)
        self.apply(self._init_weights)
        nn.init.zeros_(self.output.weight)  # uniform logits at step 0, as in LlamaGen

    def embed(self, ids: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """(B, S) ids -> (B, S, dim), each slot looked up in the table its kind names (kinds (S,))."""
        if ids.dim() != 2 or kinds.shape != ids.shape[1:]:
            raise ValueError(f"ids must be (B, S) and kinds (S,), got {tuple(ids.shape)} and {tuple(kinds.shape)}")
        # Every table is read with clamped ids and the right one chosen per slot: no data-dependent
        # shapes, no host sync, the same graph for every step.
        class_table = self.cls_embedding.embedding_table
        embedded = torch.where(
            (kinds == SLOT_CLASS)[None, :, None],
            class_table(ids.clamp(0, class_table.num_embeddings - 1)),
            self.tok_embeddings(ids.clamp(0, self.config.vocab_size - 1)),
        )  # (B, S, dim)
        if self.n_transition > 0:
            transitions = self.spe_tok_embeddings.special_embeddings(ids.clamp(0, self.n_transition - 1))
            embedded = torch.where((kinds == SLOT_TRANSITION)[None, :, None], transitions, embedded)
        return embedded

    def forward(
        self,
        ids: torch.Tensor,
        kinds: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        cache_slots: torch.Tensor | None = None,
        kv_length: int | None = None,
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, S, vocab_size) in float32 for the S slots given.

        ids (B, S) long and kinds (S,) long (see `embed`); rope (S, head_dim/2, 2); mask (S, S_kv) bool,
        True = may attend (None = every slot sees every slot). With a `cache`, the slots' keys/values are
        written at `cache_slots` (S,) and attention reads cache positions [0, kv_length) under
        `mask[:, :kv_length]`. `embeddings` (B, S, dim) replaces the table lookup (straight-through inputs).
        """
        batch, length = ids.shape
        if rope.shape[:1] != (length,) or rope.shape[1:] != (self.head_dim // 2, 2):
            raise ValueError(f"rope must be ({length}, {self.head_dim // 2}, 2), got {tuple(rope.shape)}")
        if cache is not None:
            if cache_slots is None or kv_length is None or mask is None:
                raise ValueError("a cached forward needs cache_slots, kv_length and mask")
            if cache_slots.shape != (length,) or not 0 < kv_length <= cache.length:
                raise ValueError(
                    f"cache_slots must be ({length},) and 0 < kv_length <= {cache.length}; got "
                    f"{tuple(cache_slots.shape)} and {kv_length}"
                )
            if cache.batch != batch:
                raise ValueError(f"the cache holds batch {cache.batch}, the input has batch {batch}")
        if mask is not None and (mask.dtype != torch.bool or mask.shape[0] != length):
            raise ValueError(f"mask must be bool with {length} rows, got {mask.dtype} {tuple(mask.shape)}")
        if embeddings is None:
            embeddings = self.embed(ids, kinds)
        elif embeddings.shape != (batch, length, self.config.dim):
            raise ValueError(
                f"embeddings must be ({batch}, {length}, {self.config.dim}), got {tuple(embeddings.shape)}"
            )
        h = self.tok_dropout(embeddings)
        rotated = rotation(rope)
        if mask is not None:
            mask = additive_mask(mask if cache is None else mask[:, :kv_length], attention_dtype(h))
        for index, layer in enumerate(self.layers):
            h = layer(h, rotated, mask, cache, index, cache_slots, kv_length)
        return self.output(self.norm(h)).float()
