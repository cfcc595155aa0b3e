"""LlamaGen's VQ autoencoder (tokenizer/tokenizer_image/vq_model.py), configurable and key-compatible.

Module names, state-dict keys and shapes equal LlamaGen's `VQModel`, so its released checkpoints load
with `strict=True` after `argen.io.convert.convert_llamagen_vq`. Two deliberate differences that do not touch the keys:

- GroupNorm uses 32 groups, as LlamaGen, unless `ch < 32` is configured; then every norm uses `ch`
  groups (all widths are multiples of `ch`), so small CPU models stay valid.
- The quantiser's forward is pure. LlamaGen appends the chosen ids to the `quantize.codebook_used`
  buffer inside forward; here the training task calls `record_usage`, and the buffer starts at -1
  ("empty") instead of 0 so an unfilled record does not claim that code 0 was used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from argen.config import ConfigError, VQConfig
from argen.tokenizer.code_usage import (
    CodeUsage,
    QuantizerOutput,
    assignment_entropy_loss,
    batch_code_stats,
    check_code_ids,
)
from argen.tokenizer.lfq import LookupFreeQuantizer
from argen.tokenizer.prologue import CosineQuantizer, PrologueHead

ENTROPY_TEMPERATURE = 0.01  # LlamaGen's compute_entropy_loss temperature


class ResnetBlock(nn.Module):
    """norm-swish-conv twice plus a skip (1x1 `nin_shortcut` when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float, layers: ImageLayers):
        super().__init__()
        self.norm1 = layers.norm(groups, in_channels)
        self.conv1 = layers.conv(in_channels, out_channels, 3)
        self.norm2 = layers.norm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = layers.conv(out_channels, out_channels, 3)
        self.nin_shortcut = layers.conv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions (1x1 conv projections, scale C^-1/2)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)

        def tokens(projection: nn.Conv2d) -> torch.Tensor:
            return projection(normed).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C)

        attended = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))  # (B, 1, HW, C)
        attended = attended.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """3x3 stride-2 conv after zero-padding right and bottom by one (LlamaGen's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ImageLayers:
    """The layers the encoder and decoder are built of: LlamaGen's 2D ones. argen.tokenizer.causal_video builds
    the same network, under the same keys, of causal 3D layers."""

    def conv(self, in_channels: int, out_channels: int, kernel: int) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)

    def norm(self, groups: int, channels: int) -> nn.Module:
        return nn.GroupNorm(groups, channels, eps=1e-6)

    def attention(self, channels: int, groups: int) -> nn.Module:
        return AttnBlock(channels, groups)

    def downsample(self, channels: int, level: int) -> nn.Module:
        """The resampler after encoder level `level` (0 = full resolution)."""
        return Downsample(channels)

    def upsample(self, channels: int, level: int) -> nn.Module:
        """The resampler ending decoder level `level` (it outputs level - 1's resolution)."""
        return Upsample(channels)


class Level(nn.Module):
    """One resolution: `res` blocks, each followed by `attn[i]` when the level has attention, then a resampler."""

    def __init__(
        self,
        widths: list[tuple[int, int]],
        groups: int,
        dropout: float,
        attention: bool,
        resample: str | None,
        layers: ImageLayers,
        level: int,
    ):
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(i, o, groups, dropout, layers) for i, o in widths)
        self.attn = nn.ModuleList(layers.attention(o, groups) for _, o in widths) if attention else nn.ModuleList()
        out = widths[-1][1]
        if resample == "down":
            self.downsample = layers.downsample(out, level)
        elif resample == "up":
            self.upsample = layers.upsample(out, level)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.res):
            h = block(h)
            if len(self.attn):
                h = self.attn[index](h)
        if hasattr(self, "downsample"):
            h = self.downsample(h)
        if hasattr(self, "upsample"):
            h = self.upsample(h)
        return h


IMAGE_LAYERS = ImageLayers()


def _middle(channels: int, groups: int, dropout: float, layers: ImageLayers) -> nn.ModuleList:
    return nn.ModuleList(
        [
            ResnetBlock(channels, channels, groups, dropout, layers),
            layers.attention(channels, groups),
            ResnetBlock(channels, channels, groups, dropout, layers),
        ]
    )


class Encoder(nn.Module):
    """Images (B, C, H, W) -> features (B, z_channels, H/f, W/f); attention only at the lowest resolution."""

    def __init__(self, config: VQConfig, layers: ImageLayers = IMAGE_LAYERS):
        super().__init__()
        groups, ch, mult = config.norm_groups, config.ch, tuple(config.ch_mult)
        last = len(mult) - 1
        self.conv_in = layers.conv(config.in_channels, ch, 3)
        self.conv_blocks = nn.ModuleList()
        width = ch
        for level, factor in enumerate(mult):
            out = ch * factor
            widths = [(width if block == 0 else out, out) for block in range(config.num_res_blocks)]
            self.conv_blocks.append(
                Level(
                    widths,
                    groups,
                    config.dropout,
                    attention=level == last,
                    resample=None if level == last else "down",
                    layers=layers,
                    level=level,
                )
            )
            width = out
        self.mid = _middle(width, groups, config.dropout, layers)
        self.norm_out = layers.norm(groups, width)
        self.conv_out = layers.conv(width, config.z_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Features (B, z_channels, h, w) -> images; levels run lowest resolution first, num_res_blocks + 1 each."""

    def __init__(self, config: VQConfig, layers: ImageLayers = IMAGE_LAYERS):
        super().__init__()
        groups, ch, mult = config.norm_groups, config.ch, tuple(config.ch_mult)
        last = len(mult) - 1
        width = ch * mult[-1]
        self.conv_in = layers.conv(config.z_channels, width, 3)
        self.mid = _middle(width, groups, config.dropout, layers)
        self.conv_blocks = nn.ModuleList()
        for level in reversed(range(len(mult))):
            out = ch * mult[level]
            widths = [(width if block == 0 else out, out) for block in range(config.num_res_blocks + 1)]
            self.conv_blocks.append(
                Level(
                    widths,
                    groups,
                    config.dropout,
                    attention=level == last,
                    resample=None if level == 0 else "up",
                    layers=layers,
                    level=level,
                )
            )
            width = out
        self.norm_out = layers.norm(groups, width)
        self.conv_out = layers.conv(width, config.in_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(CodeUsage):
    """Nearest-code quantisation with optional l2-normalised codes and latents (LlamaGen's VectorQuantizer)."""

    def __init__(self, codebook_size: int, codebook_dim: int, commit_beta: float, entropy_weight: float, l2_norm: bool):
        super().__init__(codebook_size, codebook_dim)
        self.commit_beta, self.entropy_weight, self.l2_norm = commit_beta, entropy_weight, l2_norm
        self.embedding = nn.Embedding(codebook_size, codebook_dim)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
            if l2_norm:
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))

    @property
    def normalise_restarts(self) -> bool:
        return self.l2_norm

    def restart_target(self) -> torch.Tensor:
        return self.embedding.weight

    def codebook(self) -> torch.Tensor:
        """The vectors latents are matched against and the decoder reads: (K, D)."""
        weight = self.embedding.weight
        return F.normalize(weight, dim=-1) if self.l2_norm else weight

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """z (B, D, h, w) -> (straight-through quantised z (B, D, h, w), QuantizerOutput)."""
        b, d, h, w = z.shape
        latents = z.permute(0, 2, 3, 1).reshape(-1, d)  # (N, D)
        if self.l2_norm:
            latents = F.normalize(latents, dim=-1)
        codebook = self.codebook()
        # Squared distances |z|^2 + |e|^2 - 2 z.e, in float32 even under autocast (argmin ties matter).
        distances = (
            latents.float().pow(2).sum(1, keepdim=True)
            + codebook.float().pow(2).sum(1)
            - 2 * latents.float() @ codebook.float().t()
        )  # (N, K)
        ids = distances.argmin(1)  # (N,)
        quantized = codebook[ids].to(latents.dtype)  # (N, D)
        codebook_loss = (quantized - latents.detach()).pow(2).mean()
        commit_loss = self.commit_beta * (quantized.detach() - latents).pow(2).mean()
        if self.entropy_weight > 0:
            entropy_loss = self.entropy_weight * assignment_entropy_loss(-distances / ENTROPY_TEMPERATURE)
        else:
            entropy_loss = distances.new_zeros(())
        straight_through = latents + (quantized - latents).detach()  # gradients flow to the encoder
        perplexity, usage = batch_code_stats(ids, self.codebook_size)
        output = QuantizerOutput(
            ids.view(b, h, w), commit_loss, codebook_loss, entropy_loss, perplexity, usage, latents.detach()
        )
        return straight_through.view(b, h, w, d).permute(0, 3, 1, 2), output


def build_quantizer(config: VQConfig) -> VectorQuantizer | LookupFreeQuantizer:
    """The visual quantiser `model.quantizer` names: "vq" (a looked-up codebook, LlamaGen's) or "lfq" (lookup-free,
    MAGVIT-v2's: codebook_dim bits, 2^codebook_dim codes)."""
    if config.quantizer == "lfq":
        return LookupFreeQuantizer(config.codebook_dim, config.commit_beta, config.entropy_weight)
    return VectorQuantizer(
        config.codebook_size, config.codebook_dim, config.commit_beta, config.entropy_weight, config.codebook_l2_norm
    )


class VQModel(nn.Module):
    """LlamaGen's VQ tokenizer: `encode(images) -> ids`, `decode(ids) -> images`, `forward` for training.

    With `prologue_tokens > 0` it also has a Prologue head (`prologue.*` keys, argen.tokenizer.prologue)
    reading the encoder's features; without one its keys are exactly LlamaGen's. The decoder reads
    visual ids only.
    """

    def __init__(self, config: VQConfig):
        super().__init__()
        if config.temporal_downsample:
            raise ConfigError(
                "model.temporal_downsample > 0 describes a causal 3D video tokenizer "
                "(argen.tokenizer.causal_video), not an image VQModel"
            )
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = build_quantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_dim, config.z_channels, 1)
        self.prologue = PrologueHead(config) if config.prologue_tokens > 0 else None

    def _check_images(self, images: torch.Tensor) -> None:
        factor = self.config.downsample
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(
                f"images must be (B, {self.config.in_channels}, H, W) (or (B, T, C, H, W) for encode), "
                f"got {tuple(images.shape)}"
            )
        if images.shape[2] % factor or images.shape[3] % factor:
            raise ValueError(f"image height and width must be multiples of {factor}, got {tuple(images.shape[2:])}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [-1, 1], got {images.dtype}")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """images (B, C, H, W) in [-1, 1] -> (reconstruction (B, C, H, W), QuantizerOutput [with .prologue])."""
        self._check_images(images)
        features = self.encoder(images)  # (B, z_channels, h, w)
        quantized, output = self.quantize(self.quant_conv(features))
        if self.prologue is not None:
            output = output._replace(prologue=self.prologue(features))
        return self.decoder(self.post_quant_conv(quantized)), output

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) in [-1, 1] -> ids (B, h, w) long; (B, T, C, H, W) -> (B, T, h, w)."""
        return self.encode_tokens(images)["ids"]

    def encode_tokens(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, C, H, W) -> {"ids": (B, h, w)} plus "prologue_ids": (B, P) with a prologue head, from
        one encoder pass (the token cache's `encode`); frames (B, T, C, H, W) -> (B, T, ...) each."""
        if images.ndim == 5:
            tokens = self.encode_tokens(images.flatten(0, 1))
            return {key: value.unflatten(0, images.shape[:2]) for key, value in tokens.items()}
        self._check_images(images)

        def encode_piece(piece: torch.Tensor) -> dict[str, torch.Tensor]:
            features = self.encoder(piece)
            tokens = {"ids": self.quantize(self.quant_conv(features))[1].ids}
            if self.prologue is not None:
                tokens["prologue_ids"] = self.prologue(features).ids
            return tokens

        pieces = [encode_piece(piece) for piece in _inference_pieces(images)]
        return {key: torch.cat([piece[key] for piece in pieces]) for key in pieces[0]}

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> images (B, C, H, W) in about [-1, 1]; (B, T, h, w) -> (B, T, C, H, W)."""
        if ids.ndim == 4:
            return self.decode(ids.flatten(0, 1)).unflatten(0, ids.shape[:2])
        if ids.ndim != 3 or ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(
                f"ids must be an integer tensor (B, h, w) or (B, T, h, w), got {ids.dtype} {tuple(ids.shape)}"
            )
        check_code_ids(ids, self.config.codebook_size)
        codebook = self.quantize.codebook()
        return torch.cat(
            [
                self.decoder(self.post_quant_conv(codebook[piece.long()].permute(0, 3, 1, 2)))
                for piece in _inference_pieces(ids)
            ]
        )

    def codebook_vectors(self) -> torch.Tensor:
        """(K, D) detached: the (l2-normalised) vectors the decoder looks up for each id."""
        return self.quantize.codebook().detach()

    @property
    def prologue_quantizer(self) -> CosineQuantizer | None:
        """The quantiser of the prologue tokens (its usage record and dead-code restarts), or None."""
        return self.prologue.quantize if self.prologue is not None else None


# ------------------------------------------------------------------------------------------------
# LlamaGen checkpoints


# On a CPU the activations of a large batch (hundreds of MB for 256 images of 64x64) are freshly mapped by every
# allocation, and those page faults cost more than the convolutions: inference runs in pieces of this many
# (encoding 256 64x64 images on one Zen 4 core beside other jobs: 5.8 s, 2.2 s of it system time, whole; 3.0 s
# in pieces of 16).
CPU_PIECE = 16


def _inference_pieces(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The batch whole, or in CPU_PIECE pieces when a CPU runs it without autograd (training keeps its batch)."""
    if batch.device.type != "cpu" or torch.is_grad_enabled() or len(batch) <= CPU_PIECE:
        return (batch,)
    return batch.split(CPU_PIECE)
