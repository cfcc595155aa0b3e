"""The causal 3D VQ video tokenizer: the image tokenizer's network (argen.tokenizer.vq) built of causal 3D layers.

Videos are (B, T, C, H, W) outside, (B, C, T, H, W) inside. Every layer is causal in time, so latent frame j sees
only input frames <= f * j:

- convolutions are 3x3x3 (1x1x1 for the width changes) and pad time on the past side only, with zeros;
- GroupNorm and attention work frame by frame (statistics over a whole clip would let the future in);
- the first log2(f) downsamplings also halve time after the first frame (a stride-2 causal convolution: 1 + 2m
  frames -> 1 + m), MAGVIT-v2's layout: T = 1 + f * k frames -> 1 + k latent frames, frame 0 encoded alone as an
  image; the decoder mirrors them (frame 0 kept, every later frame doubled, then a causal convolution).

The quantiser is the image tokenizer's (VQ or lookup-free), applied to every latent frame. `inflate_from_image` starts
the network from a trained image tokenizer: each 2D kernel in the current-frame tap of its 3D kernel and zeros in
the past taps, so latent frame j is at first exactly the image tokenizer's encoding of frame f * j.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from argen.config import ConfigError, VQConfig
from argen.tokenizer.code_usage import QuantizerOutput, check_code_ids
from argen.tokenizer.vq import AttnBlock, Decoder, Encoder, ImageLayers, build_quantizer


def _frame_by_frame(forward, x: torch.Tensor) -> torch.Tensor:
    """A 2D layer applied to every frame of x (B, C, T, H, W) on its own."""
    batch, frames = x.shape[0], x.shape[2]
    return forward(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (batch, frames)).transpose(1, 2)


class CausalConv3d(nn.Conv3d):
    """A kernel x kernel x kernel convolution padded with zeros on the past side of time (output frame t sees
    input frames <= t) and centred in space, or right and bottom only (`downsampling`, LlamaGen's padding)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, time_stride: int = 1, downsampling: bool = False
    ):
        super().__init__(in_channels, out_channels, kernel, stride=(time_stride, 2, 2) if downsampling else time_stride)
        self.padding_sizes = (0, 1, 0, 1) if downsampling else (kernel // 2,) * 4
        self.padding_sizes += (kernel - 1, 0)  # F.pad's order: width, height, then time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.padding_sizes))


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame's (C, H, W) on its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _frame_by_frame(super().forward, x)


class FrameAttention(AttnBlock):
    """The image tokenizer's spatial self-attention, within each frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _frame_by_frame(super().forward, x)


class CausalDownsample(nn.Module):
    """Space halved (stride 2, right/bottom padding); with `temporal`, time too after the first frame."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, time_stride=2 if temporal else 1, downsampling=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CausalUpsample(nn.Module):
    """Space doubled (nearest); with `temporal`, frame 0 kept and every later frame doubled (1 + m -> 1 + 2m), so
    output frame t depends on latent frames <= ceil(t / 2); then a causal 3x3x3 convolution."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal:
            x = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(2, dim=2)], dim=2)
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class CausalVideoLayers(ImageLayers):
    """The image tokenizer's layers made causal 3D; the first `temporal_levels` resamplings also resample time."""

    def __init__(self, temporal_levels: int):
        self.temporal_levels = temporal_levels

    def conv(self, in_channels: int, out_channels: int, kernel: int) -> nn.Module:
        return CausalConv3d(in_channels, out_channels, kernel)

    def norm(self, groups: int, channels: int) -> nn.Module:
        return FrameGroupNorm(groups, channels, eps=1e-6)

    def attention(self, channels: int, groups: int) -> nn.Module:
        return FrameAttention(channels, groups)

    def downsample(self, channels: int, level: int) -> nn.Module:
        return CausalDownsample(channels, temporal=level < self.temporal_levels)

    def upsample(self, channels: int, level: int) -> nn.Module:
        return CausalUpsample(channels, temporal=level <= self.temporal_levels)  # mirrors encoder level - 1


class CausalVideoVQModel(nn.Module):
    """`encode(videos (B, T, C, H, W)) -> ids (B, 1 + (T-1)/f, h, w)`, `decode(ids) -> videos`, `forward` for
    training (the tokenizer task's losses apply to videos as to images). Keys: the image VQModel's, 3D kernels."""

    def __init__(self, config: VQConfig):
        super().__init__()
        if config.temporal_downsample < 1:
            raise ConfigError(
                "model.temporal_downsample must be a power of 2 (1, 2, 4, ...) for a causal 3D tokenizer, got "
                f"{config.temporal_downsample}"
            )
        self.config = config
        layers = CausalVideoLayers(config.temporal_levels)
        self.encoder = Encoder(config, layers)
        self.decoder = Decoder(config, layers)
        self.quantize = build_quantizer(config)
        self.quant_conv = CausalConv3d(config.z_channels, config.codebook_dim, 1)
        self.post_quant_conv = CausalConv3d(config.codebook_dim, config.z_channels, 1)

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip of `frames` frames (1 + f * k -> 1 + k)."""
        factor = self.config.temporal_downsample
        if frames < 1 or (frames - 1) % factor:
            raise ValueError(
                f"a causal 3D tokenizer with temporal_downsample={factor} encodes 1 + {factor}k frames "
                f"(1, {1 + factor}, {1 + 2 * factor}, ...), got {frames}"
            )
        return 1 + (frames - 1) // factor

    def _check_videos(self, videos: torch.Tensor) -> None:
        factor = self.config.downsample
        if videos.ndim != 5 or videos.shape[2] != self.config.in_channels:
            raise ValueError(f"videos must be (B, T, {self.config.in_channels}, H, W), got {tuple(videos.shape)}")
        if videos.shape[3] % factor or videos.shape[4] % factor:
            raise ValueError(f"frame height and width must be multiples of {factor}, got {tuple(videos.shape[3:])}")
        if not videos.is_floating_point():
            raise ValueError(f"videos must be floating point in [-1, 1], got {videos.dtype}")
        self.latent_frames(videos.shape[1])

    def _quantise(self, videos: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """videos (B, T, C, H, W) -> (straight-through codes (B, D, t, h, w), output with ids (B, t, h, w))."""
        self._check_videos(videos)
        latents = self.quant_conv(self.encoder(videos.transpose(1, 2)))  # (B, D, t, h, w)
        batch, frames = latents.shape[0], latents.shape[2]
        quantized, output = self.quantize(latents.transpose(1, 2).flatten(0, 1))  # every latent frame as an image
        quantized = quantized.unflatten(0, (batch, frames)).transpose(1, 2)
        return quantized, output._replace(ids=output.ids.unflatten(0, (batch, frames)))

    def forward(self, videos: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """videos (B, T, C, H, W) in [-1, 1] -> (reconstruction (B, T, C, H, W), QuantizerOutput)."""
        quantized, output = self._quantise(videos)
        return self.decoder(self.post_quant_conv(quantized)).transpose(1, 2), output

    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """videos (B, T, C, H, W) in [-1, 1] -> ids (B, 1 + (T-1)/f, h, w) long."""
        return self._quantise(videos)[1].ids

    def encode_tokens(self, videos: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"ids": (B, t, h, w)}: the token cache's `encode`."""
        return {"ids": self.encode(videos)}

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, t, h, w) -> videos (B, 1 + f(t-1), C, H, W) in about [-1, 1]."""
        if ids.ndim != 4 or ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"ids must be an integer tensor (B, t, h, w), got {ids.dtype} {tuple(ids.shape)}")
        check_code_ids(ids, self.config.codebook_size)
        vectors = self.quantize.codebook()[ids.long()].permute(0, 4, 1, 2, 3)  # (B, D, t, h, w)
        return self.decoder(self.post_quant_conv(vectors)).transpose(1, 2)

    def codebook_vectors(self) -> torch.Tensor:
        """(K, D) detached: the (l2-normalised) vectors the decoder looks up for each id."""
        return self.quantize.codebook().detach()


def inflate_from_image(model: CausalVideoVQModel, image_state: dict[str, torch.Tensor]) -> None:
    """Load an image tokenizer's weights (`VQModel.state_dict()`, same config but temporal_downsample) into a causal
    3D tokenizer: each 2D kernel (O, I, k, k) in the current-frame tap [:, :, -1] of its 3D kernel, zeros in the
    past taps; every other tensor (norms, attention, codebook) copied."""
    own = model.state_dict()
    if set(own) != set(image_state):
        differ = sorted(set(own) ^ set(image_state))
        raise ValueError(
            f"the image tokenizer's weights do not match the 3D tokenizer's keys ({len(differ)} differ, "
            f"e.g. {differ[0]}); it needs the same model settings and no Prologue head"
        )
    inflated = {}
    for key, value in image_state.items():
        target = own[key]
        if target.ndim == value.ndim + 1 and target.shape[:2] + target.shape[3:] == value.shape:
            inflated[key] = torch.zeros_like(target)
            inflated[key][:, :, -1] = value
        elif target.shape == value.shape:
            inflated[key] = value
        else:
            raise ValueError(
                f"{key}: the image tokenizer's {tuple(value.shape)} cannot start the 3D "
                f"tokenizer's {tuple(target.shape)}; use the same model settings"
            )
    model.load_state_dict(inflated)
