"""Prologue's ViT tokenizer (`model.architecture=vit`): its released tokenizers in argen, in the one tokenizer
interface (`encode`, `encode_tokens`, `decode`, `forward`).

    images --16x16 patches (p1 p2 c)--> Linear --> [patch tokens ; P learned queries] --encoder blocks-->
        patch outputs --Linear to codebook_dim--> l2 VQ (argen's VectorQuantizer): the visual ids (h, w)
        query outputs --argen's CosineQuantizer--> the prologue ids (P)
    visual codes (l2-normalised) --Linear--> decoder blocks --RMSNorm, Linear--> patches --> images

The blocks are the Transformer's (`argen.model.transformer.TransformerBlock`) with the options this tokenizer
takes: GEGLU of width round(8/3 dim), QK-norm, RMSNorm without epsilon, biases on the output projections and the
FFN, full attention. RoPE splits each head's pairs over three axes (`vit_rope_dims`, the official [20, 20, 24] of
64): patches rotate by (row, column, 0) at base 2000, queries by (0, 0, index) at base 10000. With
`vit_prologue_dim` (Prologue-Post) the queries sit instead in a separate prologue encoder (FFN 11/4) that reads
the encoder's outputs, so the visual path can stay a plain ViT (frozen in Post's stage 1). The official
blocks are conditioned on a label that the released tokenizers always set to the null class, so their norms and
gates are constants: `argen convert prologue-tokenizer` folds them in (argen.io.prologue_release).
"""

from __future__ import annotations

import torch
from torch import nn

from argen.config import GPTConfig, VQConfig
from argen.model.rope import Rotation, rope_table, rotation
from argen.model.transformer import RMSNorm, TransformerBlock
from argen.tokenizer.code_usage import QuantizerOutput, check_code_ids
from argen.tokenizer.prologue import CosineQuantizer
from argen.tokenizer.vq import VectorQuantizer

PATCH_BASE, QUERY_BASE = 2000.0, 10000.0  # the official RoPE bases of patch and query positions


def block_config(dim: int, heads: int, ffn_ratio: float = 8 / 3) -> GPTConfig:
    """The Transformer block options of the ViT tokenizer's encoder, decoder or (Post) prologue encoder."""
    return GPTConfig(
        dim=dim, n_head=heads, ffn="geglu", ffn_hidden=round(dim * ffn_ratio), qk_norm=True, norm_eps=0.0,
        bias=True, token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0,
    )  # fmt: skip


class ViTStack(nn.Module):
    """`layers` Transformer blocks with full attention over a fixed RoPE table."""

    def __init__(self, dim: int, heads: int, layers: int, ffn_ratio: float = 8 / 3):
        super().__init__()
        config = block_config(dim, heads, ffn_ratio)
        self.layers = nn.ModuleList(TransformerBlock(config, 0.0) for _ in range(layers))

    def forward(self, x: torch.Tensor, rope: Rotation) -> torch.Tensor:
        for block in self.layers:
            x = block(x, rope, None, None, 0, None, None)
        return x


class ViTTokenizer(nn.Module):
    """Prologue's ViT tokenizer (module docstring); `config.prologue_tokens` 0 makes a plain ViT VQ."""

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        patch_dim = config.patch_size**2 * config.in_channels
        self.patch_embedding = nn.Linear(patch_dim, config.vit_dim)
        self.post = bool(config.vit_prologue_dim and config.prologue_tokens)  # Prologue-Post: a separate encoder
        query_dim = config.vit_prologue_dim if self.post else config.vit_dim
        self.queries = nn.Parameter(torch.randn(config.prologue_tokens, query_dim) * 0.02)
        self.encoder = ViTStack(config.vit_dim, config.vit_heads, config.vit_layers)
        if self.post:
            self.prologue_input = nn.Linear(config.vit_dim, query_dim)
            self.prologue_encoder = ViTStack(query_dim, config.vit_prologue_heads, config.vit_prologue_layers, 11 / 4)
        self.quant_projection = nn.Linear(config.vit_dim, config.codebook_dim)
        self.quantize = VectorQuantizer(config.codebook_size, config.codebook_dim, config.commit_beta,
                                        config.entropy_weight, l2_norm=True)  # fmt: skip
        self.prologue = (
            CosineQuantizer(query_dim, config.prologue_codebook_size, config.prologue_codebook_dim, config.prologue_tau)
            if config.prologue_tokens
            else None
        )
        self.code_embedding = nn.Linear(config.codebook_dim, config.vit_decoder_dim)
        self.decoder = ViTStack(config.vit_decoder_dim, config.vit_decoder_heads, config.vit_decoder_layers)
        self.norm = RMSNorm(config.vit_decoder_dim, 0.0)
        self.to_patches = nn.Linear(config.vit_decoder_dim, patch_dim)
        self._ropes: dict[tuple[int, str], Rotation] = {}  # RoPE rotations by query count and device (_rope)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.config.image_size // self.config.patch_size
        return side, side

    def _rope(self, queries: int, device: torch.device) -> Rotation:
        """RoPE rows of the patches (row, column, 0) at base 2000, then of `queries` queries (0, 0, i) at 10000, for
        every stack's heads (their width is sum(vit_rope_dims)); built once per query count and device."""
        key = (queries, str(device))
        if key not in self._ropes:
            head_dim, pairs = sum(self.config.vit_rope_dims), [size // 2 for size in self.config.vit_rope_dims]
            height, width = self.grid
            rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
            patches = torch.stack([rows.flatten(), columns.flatten(), torch.zeros(height * width)], dim=1).float()
            index = torch.arange(queries).float()
            query_coords = torch.stack([torch.zeros(queries), torch.zeros(queries), index], dim=1)
            table = [rope_table(patches, torch.zeros(len(patches), dtype=torch.bool), head_dim, PATCH_BASE,
                                pair_counts=pairs)]  # fmt: skip
            if queries:
                table.append(rope_table(query_coords, torch.zeros(queries, dtype=torch.bool), head_dim, QUERY_BASE,
                                        pair_counts=pairs))  # fmt: skip
            self._ropes[key] = rotation(torch.cat(table).to(device))
        return self._ropes[key]

    def _patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, h*w, p*p*C), each patch in (row, column, channel) order."""
        p, (h, w) = self.config.patch_size, self.grid
        patches = images.reshape(images.shape[0], images.shape[1], h, p, w, p)
        return patches.permute(0, 2, 4, 3, 5, 1).reshape(images.shape[0], h * w, p * p * images.shape[1])

    def _unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        p, (h, w), channels = self.config.patch_size, self.grid, self.config.in_channels
        images = patches.reshape(patches.shape[0], h, w, p, p, channels)
        return images.permute(0, 5, 1, 3, 2, 4).reshape(patches.shape[0], channels, h * p, w * p)

    def _encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, C, H, W) in [-1, 1] -> (visual latents (B, codebook_dim, h, w), query outputs or None)."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.config.in_channels, *[self.config.image_size] * 2):
            raise ValueError(f"images must be (B, {self.config.in_channels}, {self.config.image_size}, "
                             f"{self.config.image_size}), got {tuple(images.shape)}")  # fmt: skip
        tokens = self.patch_embedding(self._patchify(images.float()))
        queries = self.queries[None].expand(len(images), -1, -1)
        if self.post:  # the encoder reads the patches alone; the prologue encoder reads its outputs and the queries
            patches = self.encoder(tokens, self._rope(0, images.device))
            rope = self._rope(len(self.queries), images.device)
            hidden = self.prologue_encoder(torch.cat([self.prologue_input(patches), queries], 1), rope)
            query_outputs = hidden[:, tokens.shape[1] :]
        else:
            hidden = self.encoder(torch.cat([tokens, queries], dim=1), self._rope(len(self.queries), images.device))
            patches, query_outputs = hidden[:, : tokens.shape[1]], hidden[:, tokens.shape[1] :]
        latents = self.quant_projection(patches).transpose(1, 2).reshape(len(images), -1, *self.grid)
        return latents, (query_outputs if self.prologue is not None else None)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, codebook_dim, h, w) -> images (B, C, H, W)."""
        tokens = self.code_embedding(codes.flatten(2).transpose(1, 2))
        return self._unpatchify(self.to_patches(self.norm(self.decoder(tokens, self._rope(0, codes.device)))))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """images (B, C, H, W) in [-1, 1] -> (reconstruction, QuantizerOutput [with .prologue])."""
        latents, query_outputs = self._encode(images)
        quantized, output = self.quantize(latents)
        if query_outputs is not None:
            output = output._replace(prologue=self.prologue(query_outputs))
        return self._decode(quantized), output

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_tokens(images)["ids"]

    def encode_tokens(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, C, H, W) -> {"ids": (B, h, w)} plus "prologue_ids": (B, P) with prologue queries."""
        latents, query_outputs = self._encode(images)
        tokens = {"ids": self.quantize(latents)[1].ids}
        if query_outputs is not None:
            tokens["prologue_ids"] = self.prologue(query_outputs).ids
        return tokens

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> images (B, C, H, W) in about [-1, 1]."""
        if ids.ndim != 3 or tuple(ids.shape[1:]) != self.grid or ids.is_floating_point():
            raise ValueError(f"ids must be an integer tensor (B, {self.grid[0]}, {self.grid[1]}), got "
                             f"{ids.dtype} {tuple(ids.shape)}")  # fmt: skip
        check_code_ids(ids, self.config.codebook_size)
        return self._decode(self.quantize.codebook()[ids.long()].permute(0, 3, 1, 2))

    def codebook_vectors(self) -> torch.Tensor:
        return self.quantize.codebook().detach()

    @property
    def prologue_quantizer(self) -> CosineQuantizer | None:
        """The quantiser of the prologue queries (as VQModel.prologue_quantizer), or None."""
        return self.prologue
