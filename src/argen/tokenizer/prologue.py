"""The Prologue head of the tokenizer: P learned queries that read the encoder, quantised against their own codebook.

The Prologue paper's tokenizer is a ViT whose encoder takes 16 learned query vectors beside the patch
embeddings; the query outputs become the prologue latents. argen's tokenizer is LlamaGen's conv VQ, which
has no token sequence to append queries to, so the head puts a small bidirectional transformer on top of
the encoder instead:

    encoder feature map (B, z_channels, h, w) --1x1 projection + fixed 2D sin-cos positions--> h*w tokens
    [h*w feature tokens ; P learned queries] --pre-norm transformer layers--> the P query outputs
    --linear to prologue_codebook_dim, l2-normalised--> cosine logits against the l2-normalised codebook

Every query attends to every feature token and every other query (the paper's "concat" context). The
encoder is shared: the head's gradient reaches the encoder's weights, so in joint training the encoder
learns from both the reconstruction and the prior's cross-entropy.

Quantisation follows the paper's SemanticQuantizer: ids are the argmax of the cosine similarity; the
straight-through one-hot is the hard one-hot in the forward pass and has the gradient of
softmax(cos / tau). There is no commitment or codebook loss: the queries, the head and the codebook learn
only through the AR prior's cross-entropy (argen.train.prologue_task). The decoder never reads prologue ids.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from argen.config import ConfigError, VQConfig
from argen.tokenizer.code_usage import CodeUsage, assignment_entropy_loss, batch_code_stats


def sincos_positions_2d(height: int, width: int, dim: int, device: torch.device) -> torch.Tensor:
    """(height*width, dim) fixed 2D sin-cos position embeddings (MAE's): half the channels per axis.

    Fixed rather than learned so the head accepts any feature-map size the encoder produces.
    """
    quarter = dim // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    parts = []
    for axis in (rows.flatten(), cols.flatten()):
        angles = axis[:, None] * frequencies[None, :]  # (h*w, dim/4)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1)


class PrologueOutput(NamedTuple):
    """What the prologue head reports for a batch."""

    ids: torch.Tensor  # (B, P) long
    one_hot: torch.Tensor  # (B, P, K): forward value = hard one-hot; gradient = that of softmax(cos / tau)
    perplexity: torch.Tensor  # scalar, exp(entropy of this batch's prologue-id histogram), detached
    usage: torch.Tensor  # scalar, fraction of the prologue codebook used in this batch, detached
    latents: torch.Tensor  # (B*P, D) the l2-normalised vectors that were quantised, detached (dead-code restarts)
    entropy_loss: torch.Tensor  # scalar, assignment_entropy_loss of softmax(cos / tau) over the B*P latents


class CosineQuantizer(CodeUsage):
    """Project to a small space, l2-normalise, pick the most cosine-similar code; straight-through soft one-hot.

    Dead codes can be restarted onto current latents (CodeUsage): at initialisation all P x B latents point
    almost the same way, so without restarts one or two codes take every image and the prologue carries
    nothing for the prior to learn from.
    """

    normalise_restarts = True

    def __init__(self, width: int, codebook_size: int, codebook_dim: int, tau: float):
        super().__init__(codebook_size, codebook_dim)
        self.tau = tau
        self.projection = nn.Linear(width, codebook_dim)
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim) / math.sqrt(codebook_dim))

    def forward(self, latents: torch.Tensor) -> PrologueOutput:
        """latents (B, P, width) -> PrologueOutput."""
        vectors = F.normalize(self.projection(latents).float(), dim=-1)  # (B, P, D)
        cosine = vectors @ F.normalize(self.codebook.float(), dim=-1).t()  # (B, P, K)
        probabilities = (cosine / self.tau).softmax(-1)
        ids = cosine.argmax(-1)  # (B, P)
        hard = F.one_hot(ids, self.codebook.shape[0]).to(probabilities.dtype)
        one_hot = probabilities + (hard - probabilities).detach()
        perplexity, usage = batch_code_stats(ids, self.codebook.shape[0])
        return PrologueOutput(
            ids,
            one_hot,
            perplexity,
            usage,
            vectors.detach().flatten(0, 1),
            assignment_entropy_loss((cosine / self.tau).flatten(0, 1)),
        )

    def restart_target(self) -> torch.Tensor:
        return self.codebook


class PrologueHead(nn.Module):
    """Encoder features (B, z_channels, h, w) -> PrologueOutput for `prologue_tokens` queries (module docstring)."""

    def __init__(self, config: VQConfig):
        super().__init__()
        if config.prologue_tokens == 0:
            raise ConfigError("a prologue head needs model.prologue_tokens > 0")
        width = config.prologue_width
        self.feature_projection = nn.Linear(config.z_channels, width)
        self.queries = nn.Parameter(torch.randn(config.prologue_tokens, width) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                config.prologue_heads,
                dim_feedforward=4 * width,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.prologue_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.quantize = CosineQuantizer(
            width, config.prologue_codebook_size, config.prologue_codebook_dim, config.prologue_tau
        )

    def forward(self, features: torch.Tensor) -> PrologueOutput:
        batch, _, height, width = features.shape
        tokens = self.feature_projection(features.flatten(2).transpose(1, 2))  # (B, h*w, width)
        tokens = tokens + sincos_positions_2d(height, width, tokens.shape[-1], tokens.device).to(tokens.dtype)
        queries = self.queries[None].expand(batch, -1, -1).to(tokens.dtype)  # (B, P, width)
        h = torch.cat([tokens, queries], dim=1)  # (B, h*w + P, width)
        for layer in self.layers:
            h = layer(h)
        return self.quantize(self.norm(h[:, -self.queries.shape[0] :]))
