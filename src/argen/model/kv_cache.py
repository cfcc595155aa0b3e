"""Static key/value cache: per-layer buffers allocated once and written in place at explicit slots.

The cache is a plain object handed to the model's forward, never a module buffer, so it never
appears in a state dict and one model can serve several caches (e.g. different batch sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class KVCache:
    """Keys and values of every layer, each (B, H_kv, L, head_dim)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def allocate(
        cls, model: nn.Module, batch: int, length: int, dtype: torch.dtype, device: torch.device | str
    ) -> "KVCache":
        """Zero-filled buffers for `model` (zeros, not empty: masked slots must never hold NaN bits)."""
        if batch < 1 or length < 1:
            raise ValueError(f"KV cache needs batch >= 1 and length >= 1, got batch={batch}, length={length}")
        config = model.config
        n_kv_head = config.n_kv_head or config.n_head
        head_dim = config.dim // config.n_head
        shape = (batch, n_kv_head, length, head_dim)  # (B, H_kv, L, D)
        keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        return cls(keys, values)

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self.keys[0].dtype

    @property
    def device(self) -> torch.device:
        return self.keys[0].device

    def fits(self, batch: int, length: int, dtype: torch.dtype, device: torch.device | str) -> bool:
        """True when this cache can be reused for (batch, length, dtype, device) as is."""
        return (self.batch, self.length, self.dtype) == (batch, length, dtype) and self.device == torch.device(device)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def write(self, layer: int, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store keys/values (B, H_kv, S, D) of `layer` at cache positions `slots` (S,)."""
        self.keys[layer].index_copy_(2, slots, keys.to(self.dtype))
        self.values[layer].index_copy_(2, slots, values.to(self.dtype))
