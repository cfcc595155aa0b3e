"""CTF's refiner: a bidirectional transformer from a coarse map (+ class) to fine logits, in one pass.

It is built from the AR Transformer's own pieces (class table, Llama blocks, RMSNorm, head) with no
attention mask, so every position sees every other. The input is `[class slot] + N coarse labels`; the
class slot has a null (zero) RoPE row as in LlamaGen, the coarse slots the 2D (or 3D) RoPE rows of
their grid positions. Nothing depends on the order the positions are listed in: permuting the coarse
slots together with their RoPE rows permutes the outputs the same way.

The fine -> coarse table is a buffer of the module, so a checkpoint carries the clustering it was
trained with and `restrict_to_cluster` needs nothing else.
"""

from __future__ import annotations

import torch
from torch import nn

from argen.config import GPTConfig
from argen.model.rope import rope_table, rotation
from argen.model.transformer import ClassConditionedModel, ClassEmbedding, Linear, RMSNorm, TransformerBlock


class Refiner(ClassConditionedModel):
    """Coarse labels (config.vocab_size = K) + class -> logits over the V fine codes at every position."""

    def __init__(self, config: GPTConfig, fine_to_coarse: torch.Tensor):
        super().__init__()
        if fine_to_coarse.dim() != 1 or fine_to_coarse.is_floating_point():
            raise ValueError(
                f"fine_to_coarse must be a 1-D integer tensor, got {fine_to_coarse.dtype} {tuple(fine_to_coarse.shape)}"
            )
        if fine_to_coarse.numel() and int(fine_to_coarse.max()) + 1 != config.vocab_size:
            raise ValueError(
                f"the refiner's input vocabulary (model.vocab_size={config.vocab_size}) must equal "
                f"the table's {int(fine_to_coarse.max()) + 1} clusters"
            )
        self.config = config
        self.cls_embedding = ClassEmbedding(config.num_classes, config.dim, config.class_dropout_prob > 0)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.tok_dropout = nn.Dropout(config.token_dropout_p)
        rates = [config.drop_path_rate * i / max(config.n_layer - 1, 1) for i in range(config.n_layer)]
        self.layers = nn.ModuleList(TransformerBlock(config, rate) for rate in rates)
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = Linear(config.dim, fine_to_coarse.numel())
        self.register_buffer("fine_to_coarse", fine_to_coarse.long().clone())
        self.apply(self._init_weights)
        nn.init.zeros_(self.output.weight)  # uniform fine logits at step 0, like the AR head

    @property
    def fine_vocab(self) -> int:
        return self.fine_to_coarse.numel()

    def rope(self, grid: tuple[int, ...]) -> torch.Tensor:
        """(1 + N, head_dim/2, 2) RoPE rows: the class slot (null), then the grid positions in raster order."""
        axes = [torch.arange(size, dtype=torch.float32) for size in grid]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))  # (N, axes)
        coords = torch.cat([coords.new_zeros(1, len(grid)), coords])
        null = torch.zeros(len(coords), dtype=torch.bool)
        null[0] = True
        return rope_table(coords, null, self.head_dim, self.config.rope_base)

    def forward(self, coarse: torch.Tensor, labels: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """Fine logits (B, N, V) in float32.

        coarse (B, N) long coarse labels of N positions (any order); labels (B,) class ids (the null
        class when trained with class dropout); rope (1 + N, head_dim/2, 2): the class row, then one row
        per listed position (see `rope`).
        """
        if coarse.dim() != 2 or labels.shape != coarse.shape[:1]:
            raise ValueError(
                f"coarse must be (B, N) and labels (B,), got {tuple(coarse.shape)} and {tuple(labels.shape)}"
            )
        length = coarse.shape[1]
        if rope.shape != (length + 1, self.head_dim // 2, 2):
            raise ValueError(
                f"rope must be ({length + 1}, {self.head_dim // 2}, 2): the class row then one row "
                f"per position; got {tuple(rope.shape)}"
            )
        class_table = self.cls_embedding.embedding_table
        h = torch.cat([class_table(labels)[:, None], self.tok_embeddings(coarse)], dim=1)  # (B, 1 + N, dim)
        h = self.tok_dropout(h)
        rotated = rotation(rope.to(h.device))
        for index, layer in enumerate(self.layers):
            h = layer(h, rotated, None, None, index, None, None)  # no mask: full (bidirectional) attention
        return self.output(self.norm(h[:, 1:])).float()

    def restrict_to_cluster(self, logits: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, V) with every code outside the cluster `coarse` (B, N) of its position set to -inf."""
        outside = self.fine_to_coarse[None, None, :] != coarse[..., None]  # (B, N, V)
        return logits.masked_fill(outside, float("-inf"))
