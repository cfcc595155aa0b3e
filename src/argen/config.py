"""Configuration: one dataclass per component, named presets, YAML files and dotted overrides.

A run's config is a tree of dataclasses. It is built from a preset (or defaults), then a YAML file,
then `key=value` overrides (`model.dim=256`, `train.lr=3e-4`); unknown keys are rejected with the
valid ones listed. The merged tree is saved as JSON with every checkpoint and rebuilt from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml


# Choices the command line offers before any model loads (`argen --help` imports no torch); the modules that use
# them import them from here.
DECODE_PRECISIONS = ("auto", "fp32", "bf16", "int8")  # argen.precision
CLUSTER_METHODS = ("kmeans", "spherical", "balanced", "random")  # argen.ctf.cluster
LIVE_DISPLAY_BUDGET = 0.1  # argen.live: the share of sampling time that partial renders may take


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message says what is valid."""


GPT_FFNS = ("swiglu", "geglu")  # the GPT's gated feed-forward: silu (LlamaGen) or tanh-approximated gelu (Prologue)
ROPE_POSITIONS = ("grid", "sequence")  # see GPTConfig.rope_positions
RECONSTRUCTION_KINDS = ("l1", "l2")  # the tokenizer's reconstruction loss: mean absolute or squared error
LFQ_MAX_BITS = 18  # lookup-free quantisation's largest codebook: 2 ** 18 = 262,144 codes, MAGVIT-v2's video codebook


# --------------------------------------------------------------------------------------------
# Components


@dataclass
class VQConfig:
    """LlamaGen's VQ autoencoder (tokenizer/tokenizer_image/vq_model.py), configurable."""

    image_size: int = 32
    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2)  # len(ch_mult) - 1 downsamplings
    num_res_blocks: int = 2  # the decoder uses num_res_blocks + 1, as in LlamaGen
    z_channels: int = 64
    codebook_size: int = 256
    codebook_dim: int = 8
    # "vq": a looked-up codebook (LlamaGen); "lfq": lookup-free (MAGVIT-v2), each of codebook_dim latent channels a
    # bit, codebook_size = 2 ** codebook_dim, entropy_weight its entropy penalty (argen.tokenizer.lfq)
    quantizer: str = "vq"
    codebook_l2_norm: bool = True
    commit_beta: float = 0.25
    entropy_weight: float = 0.0
    dropout: float = 0.0
    # Prologue head (argen.tokenizer.prologue): P learned queries read the encoder's feature map through a
    # small transformer and are quantised by cosine against their own codebook. 0 tokens = no head.
    prologue_tokens: int = 0
    prologue_codebook_size: int = 1024
    prologue_codebook_dim: int = 8  # the small l2-normalised space the prologue codes live in
    prologue_tau: float = 0.1  # temperature of the straight-through softmax(cos / tau)
    prologue_width: int = 128
    prologue_layers: int = 2
    prologue_heads: int = 4
    # 0: an image tokenizer (a video is encoded frame by frame). f = 1, 2, 4, ...: a causal 3D video tokenizer
    # (argen.tokenizer.causal_video) whose first log2(f) downsamplings also halve time after the first frame:
    # T = 1 + f * k frames -> 1 + k latent frames.
    temporal_downsample: int = 0
    # A trained image tokenizer whose 2D kernels start the 3D one (each in the current-frame tap, zeros in the
    # past taps), so at init every frame is encoded as the image tokenizer encodes it; read when training starts.
    inflate_from: str = ""
    # "conv": LlamaGen's convolutional VQ; "vit": Prologue's ViT tokenizer (argen.tokenizer.vit): patches of
    # patch_size, an encoder over [patches; prologue_tokens learned queries], codes of codebook_dim (and
    # prologue_codebook_dim) cosine-quantised, a decoder over the visual codes. ch, ch_mult, num_res_blocks,
    # z_channels and the prologue_width/layers/heads of the conv head do not apply to it.
    architecture: str = "conv"
    patch_size: int = 16
    vit_dim: int = 768
    vit_layers: int = 12
    vit_heads: int = 12
    vit_decoder_dim: int = 768
    vit_decoder_layers: int = 12
    vit_decoder_heads: int = 12
    vit_rope_dims: tuple[int, ...] = (20, 20, 24)  # per head: rows, columns, sequence index (Prologue's axes)
    # 0: the prologue queries sit in the encoder beside the patches (Prologue); > 0: a separate prologue encoder of
    # this width reads the encoder's outputs with the queries (Prologue-Post: 10 layers, 8 heads, 512, FFN 11/4)
    vit_prologue_dim: int = 0
    vit_prologue_layers: int = 10
    vit_prologue_heads: int = 8

    def __post_init__(self) -> None:
        """Refuse, naming the first field, a config that cannot build a VQ model (its Prologue head and, with
        temporal_downsample > 0, its causal 3D form included)."""
        if self.architecture not in ("conv", "vit"):
            raise ConfigError(f"model.architecture must be conv or vit, got {self.architecture!r}")
        if self.architecture == "vit":
            self._check_vit()
            return
        if self.in_channels not in (1, 3):
            raise ConfigError(f"model.in_channels must be 1 or 3, got {self.in_channels}")
        if not self.ch_mult or any(int(m) < 1 for m in self.ch_mult):
            raise ConfigError(f"model.ch_mult must be a non-empty list of positive integers, got {self.ch_mult}")
        for name in ("ch", "num_res_blocks", "z_channels", "codebook_size", "codebook_dim", "image_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        widths = sorted({self.ch * m for m in self.ch_mult})
        if any(width % self.norm_groups for width in widths):
            raise ConfigError(
                f"GroupNorm uses {self.norm_groups} groups for model.ch={self.ch}, but the widths {widths} "
                f"(ch * ch_mult) are not all multiples of {self.norm_groups}; use ch < 32 or a multiple of 32"
            )
        if self.image_size % self.downsample:
            raise ConfigError(
                f"model.image_size={self.image_size} must be divisible by the downsampling factor "
                f"{self.downsample} (2 ** (len(ch_mult) - 1))"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.quantizer not in ("vq", "lfq"):
            raise ConfigError(
                f"model.quantizer must be vq (a looked-up codebook) or lfq (lookup-free), got {self.quantizer!r}"
            )
        bits = self.codebook_dim
        if self.quantizer == "lfq" and (bits > LFQ_MAX_BITS or self.codebook_size != 2**bits):
            raise ConfigError(
                f"model.quantizer=lfq makes each of model.codebook_dim channels a bit: codebook_dim must be "
                f"at most {LFQ_MAX_BITS} and codebook_size 2 ** codebook_dim, got {self.codebook_dim} and "
                f"{self.codebook_size} (e.g. codebook_dim=10 codebook_size=1024)"
            )
        self._check_prologue()
        self._check_temporal()

    def _check_vit(self) -> None:
        if self.image_size % self.patch_size or self.patch_size < 1:
            raise ConfigError(
                f"model.image_size={self.image_size} must be a multiple of model.patch_size={self.patch_size}"
            )
        for prefix in ("vit", "vit_decoder", "vit_prologue")[: 3 if self.vit_prologue_dim else 2]:
            dim, heads = getattr(self, f"{prefix}_dim"), getattr(self, f"{prefix}_heads")
            if heads < 1 or dim % heads or sum(self.vit_rope_dims) != dim // heads or len(self.vit_rope_dims) != 3:
                raise ConfigError(
                    f"model.{prefix}_dim={dim} must split into model.{prefix}_heads={heads} heads whose width is "
                    f"the sum of model.vit_rope_dims={tuple(self.vit_rope_dims)} (three axes)"
                )
        if any(d % 2 for d in self.vit_rope_dims) or self.quantizer != "vq" or self.temporal_downsample:
            raise ConfigError(
                "model.architecture=vit takes even vit_rope_dims, quantizer=vq and no temporal_downsample"
            )
        if self.prologue_tokens < 0 or (self.prologue_tokens and self.prologue_codebook_size < 2):
            raise ConfigError("model.prologue_tokens must be >= 0, with model.prologue_codebook_size >= 2")

    def _check_prologue(self) -> None:
        if self.prologue_tokens < 0:
            raise ConfigError(f"model.prologue_tokens must be >= 0 (0 = no prologue), got {self.prologue_tokens}")
        if self.prologue_tokens == 0:
            return
        if self.prologue_codebook_size < 2:
            raise ConfigError(f"model.prologue_codebook_size must be >= 2, got {self.prologue_codebook_size}")
        for name in ("prologue_codebook_dim", "prologue_width", "prologue_layers", "prologue_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.prologue_width % self.prologue_heads:
            raise ConfigError(
                f"model.prologue_width={self.prologue_width} must be divisible by "
                f"model.prologue_heads={self.prologue_heads}"
            )
        if self.prologue_width % 4:
            raise ConfigError(
                f"model.prologue_width={self.prologue_width} must be a multiple of 4 "
                "(2D sin-cos positions: sine and cosine on two axes)"
            )
        if not self.prologue_tau > 0:
            raise ConfigError(f"model.prologue_tau must be > 0, got {self.prologue_tau}")

    def _check_temporal(self) -> None:
        factor = self.temporal_downsample
        if not isinstance(factor, int) or factor < 0:
            raise ConfigError(
                f"model.temporal_downsample must be 0 (an image tokenizer) or a power of 2, got {factor!r}"
            )
        if factor == 0:
            return
        if factor & (factor - 1):
            raise ConfigError(
                f"model.temporal_downsample must be a power of 2 (1, 2, 4, ...) for a causal 3D tokenizer, got {factor}"
            )
        if self.temporal_levels > len(self.ch_mult) - 1:
            raise ConfigError(
                f"model.temporal_downsample={factor} needs {self.temporal_levels} downsamplings, but "
                f"model.ch_mult={tuple(self.ch_mult)} has {len(self.ch_mult) - 1}"
            )
        if self.prologue_tokens:
            raise ConfigError("a causal 3D tokenizer has no Prologue head (model.prologue_tokens must be 0)")

    @property
    def downsample(self) -> int:
        """Pixels per token side: the ViT's patch size, or the conv VQ's 2 ** (len(ch_mult) - 1)."""
        return self.patch_size if self.architecture == "vit" else 2 ** (len(self.ch_mult) - 1)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.downsample

    @property
    def norm_groups(self) -> int:
        """LlamaGen's 32 GroupNorm groups, or `ch` groups when the base width is below 32."""
        return 32 if self.ch >= 32 else self.ch

    @property
    def temporal_levels(self) -> int:
        """How many of the downsamplings also halve time (causal 3D: log2 of temporal_downsample)."""
        return max(self.temporal_downsample, 1).bit_length() - 1


@dataclass
class VQLossConfig:
    """Tokenizer training losses (LlamaGen vq_loss.py, plus dead-code restarts)."""

    reconstruction: str = "l2"  # "l1" or "l2"
    reconstruction_weight: float = 1.0
    perceptual_weight: float = 0.0  # the perceptual term's weight (LlamaGen: 1.0 with LPIPS); 0 = off
    # "lpips": LPIPS-VGG16 from loss.lpips_vgg (torchvision's VGG16 state dict) and loss.lpips_linear (the lin*
    # layers of LlamaGen's vgg.pth), local files read safely; or a classifier checkpoint folder, whose feature maps
    # give the same distance without learned weights (argen.tokenizer.lpips).
    perceptual_network: str = ""
    lpips_vgg: str = ""
    lpips_linear: str = ""
    disc_weight: float = 0.0  # 0 disables the PatchGAN discriminator
    disc_start: int = 0
    disc_layers: int = 2
    disc_channels: int = 32
    restart_dead_codes_every: int = 0  # 0 disables dead-code restarts

    @property
    def disc_min_image_size(self) -> int:
        """The smallest image side the PatchGAN takes: each stride-2 stage halves it, its two 4x4 stride-1 convs
        need 3."""
        return 3 * 2**self.disc_layers

    def __post_init__(self) -> None:
        if self.reconstruction not in RECONSTRUCTION_KINDS:
            raise ConfigError(f"loss.reconstruction must be one of {RECONSTRUCTION_KINDS}, got {self.reconstruction!r}")
        if self.disc_weight < 0 or self.disc_start < 0 or self.restart_dead_codes_every < 0:
            raise ConfigError("loss.disc_weight, loss.disc_start and loss.restart_dead_codes_every must be >= 0")
        if not isinstance(self.perceptual_weight, (int, float)) or self.perceptual_weight < 0:
            raise ConfigError(f"loss.perceptual_weight must be >= 0, got {self.perceptual_weight!r}")
        if self.perceptual_weight > 0 and not self.perceptual_network:
            raise ConfigError(
                "loss.perceptual_weight > 0 needs loss.perceptual_network: lpips (with "
                "loss.lpips_vgg=FILE loss.lpips_linear=FILE) or a classifier checkpoint folder"
            )
        if (self.lpips_vgg or self.lpips_linear) and self.perceptual_network != "lpips":
            raise ConfigError(
                "loss.lpips_vgg and loss.lpips_linear are LPIPS' weights: set loss.perceptual_network=lpips to use them"
            )


@dataclass
class GPTConfig:
    """LlamaGen's class-conditional GPT (autoregressive/models/gpt.py)."""

    dim: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    token_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    drop_path_rate: float = 0.0
    num_classes: int = 10
    class_dropout_prob: float = 0.1  # > 0 also adds the null-class row used by guidance
    vocab_size: int = 256  # input and output vocabulary (fine codes, or coarse labels under CTF)
    # Where other published GPTs differ from LlamaGen (the defaults); Prologue's released ARs take ffn="geglu",
    # ffn_hidden=round(dim * 11 / 4), qk_norm=True, rope_positions="sequence", rope_dims=24, norm_eps=0.
    ffn: str = "swiglu"  # "swiglu": silu(w1 x) * w3 x; "geglu": gelu_tanh(w1 x) * w3 x
    ffn_hidden: int = 0  # the FFN's width; 0 = LlamaGen's rule (2/3 of 4 * dim, rounded up to multiple_of)
    qk_norm: bool = False  # RMS-normalise each head's query and key (gains of their own) before RoPE
    # "grid": RoPE at the Layout's grid coordinates, class and transition slots unrotated (LlamaGen, PAR);
    # "sequence": at each slot's index in the sequence, one axis, the class slot at 0
    rope_positions: str = "grid"
    rope_dims: int = 0  # the head dims that rotate, from the first (0 = all of them)
    bias: bool = False  # biases on the attention's output projection and the FFN (Prologue's ViT tokenizer)

    def __post_init__(self) -> None:
        n_kv_head = self.n_kv_head or self.n_head
        if self.n_head < 1 or self.dim % self.n_head or self.n_head % n_kv_head:
            raise ConfigError(
                f"dim ({self.dim}) must be divisible by n_head ({self.n_head}) and n_head by n_kv_head ({n_kv_head})"
            )
        if self.ffn not in GPT_FFNS:
            raise ConfigError(f"model.ffn must be one of {GPT_FFNS}, got {self.ffn!r}")
        if self.ffn_hidden < 0:
            raise ConfigError(f"model.ffn_hidden must be >= 0 (0 = LlamaGen's width), got {self.ffn_hidden}")
        if self.rope_positions not in ROPE_POSITIONS:
            raise ConfigError(f"model.rope_positions must be one of {ROPE_POSITIONS}, got {self.rope_positions!r}")
        head_dim = self.dim // self.n_head
        if self.rope_dims < 0 or self.rope_dims % 2 or self.rope_dims > head_dim:
            raise ConfigError(
                f"model.rope_dims must be an even number of head dims in [0, {head_dim}] (0 = all), got "
                f"{self.rope_dims}"
            )
        if self.norm_eps < 0:
            raise ConfigError(f"model.norm_eps must be >= 0, got {self.norm_eps}")


@dataclass
class LayoutConfig:
    """How one sample is laid out as a sequence and decoded (see argen.layout)."""

    grid: tuple[int, ...] = (8, 8)  # (H, W) or (T, H, W) token grid
    order: str = "raster"  # "raster" or "region" (PAR)
    parallel: int = 1  # tokens per parallel step (PAR's k); 1 = one token per step
    regions: tuple[int, ...] | None = None  # region split per axis; default: square split of H, W
    sequential_initial: bool = True  # PAR: first token of each region generated one by one
    group_attention: str = "full"  # PAR: "full" or "causal" attention inside an input group
    prologue_length: int = 0  # Prologue: number of prologue tokens (0 = none)
    prologue_vocab: int = 0
    prologue_parallel: int = 1  # Prologue: prologue tokens per step (1 = one by one, as in the paper)

    def __post_init__(self) -> None:
        grid = tuple(self.grid)
        if len(grid) not in (2, 3) or min(grid) < 1:
            raise ConfigError(f"layout.grid must be (H, W) or (T, H, W) of positive sizes, got {self.grid}")
        if self.order not in ("raster", "region"):
            raise ConfigError(f"layout.order must be 'raster' or 'region', got {self.order!r}")
        if self.group_attention not in ("full", "causal"):
            raise ConfigError(f"layout.group_attention must be 'full' or 'causal', got {self.group_attention!r}")
        if self.parallel < 1:
            raise ConfigError(f"layout.parallel must be >= 1, got {self.parallel}")
        count = math.prod(grid)
        if count % self.parallel:
            raise ConfigError(f"layout.parallel={self.parallel} must divide the {count} visual tokens of grid {grid}")
        if self.order == "raster" and self.regions is not None:
            raise ConfigError("layout.regions applies to order='region' only; set order=region or drop regions")
        if self.prologue_length < 0:
            raise ConfigError(f"layout.prologue_length must be >= 0, got {self.prologue_length}")
        if self.prologue_parallel < 1 or self.prologue_length % self.prologue_parallel:
            raise ConfigError(
                f"layout.prologue_parallel={self.prologue_parallel} must be >= 1 and divide "
                f"layout.prologue_length={self.prologue_length}"
            )
        if (self.prologue_length > 0) != (self.prologue_vocab > 0):
            raise ConfigError(
                f"layout.prologue_length ({self.prologue_length}) and layout.prologue_vocab "
                f"({self.prologue_vocab}) must both be > 0 (prologue) or both 0 (none)"
            )
        self.region_counts()

    def region_counts(self) -> tuple[int, ...]:
        """Region count per grid axis (all ones in raster order; PAR's default: a square split of H and W)."""
        grid = tuple(self.grid)
        if self.order == "raster":
            return (1,) * len(grid)
        regions = self.regions
        if regions is None:
            side = math.isqrt(self.parallel)
            if side * side != self.parallel:
                raise ConfigError(
                    f"layout.parallel={self.parallel} is not a perfect square, so there is no "
                    f"default square region split; give layout.regions explicitly"
                )
            regions = (1,) * (len(grid) - 2) + (side, side)
        regions = tuple(int(r) for r in regions)
        if len(regions) != len(grid) or min(regions) < 1:
            raise ConfigError(f"layout.regions {regions} must give a positive count per grid axis {grid}")
        for size, count in zip(grid, regions):
            if size % count:
                raise ConfigError(
                    f"layout.regions {regions} does not divide grid {grid}: {size} is not a multiple of {count}"
                )
        if self.parallel not in (1, math.prod(regions)):
            raise ConfigError(
                f"layout.parallel={self.parallel} must be 1 or the number of regions "
                f"({math.prod(regions)} for regions {regions})"
            )
        return regions


@dataclass
class PrologueTrainConfig:
    """Prologue stage 1 (argen.train.prologue_task), used when model.prologue_tokens > 0.

    The tokenizer and a small unconditional AR prior are trained in alternating updates on each batch.
    """

    ar_weight: float = 3.0  # weight of the prior's cross-entropy in the tokenizer update (the paper's 3.0)
    visual_dropout: float = 0.5  # fraction of samples whose visual inputs are all replaced by the separator
    # Restart prologue codes unused over this many steps onto current prologue latents (0: never). Not in the
    # paper; without it the small CPU models collapse onto one or two prologue codes (docs/results.md).
    restart_dead_codes_every: int = 20
    # Weight of the prologue codes' assignment entropy loss (sure per latent, spread over the batch); not in
    # the paper, 0 disables it. Against the prior's pull towards a few predictable codes (docs/results.md).
    entropy_weight: float = 0.0
    # A trained tokenizer (without a prologue) whose visual path is loaded; the prologue head starts fresh.
    # With freeze_visual (the "Post" variant) the visual path stays frozen and only the prologue path and the
    # prior train; without, everything fine-tunes jointly from it. Empty: joint training from train.init_from
    # or from scratch.
    visual_tokenizer: str = ""
    freeze_visual: bool = True
    # The prior: unconditional (one class, no null class); its vocab_size is set from the layout.
    prior: GPTConfig = field(
        default_factory=lambda: GPTConfig(
            dim=128, n_layer=2, n_head=4, multiple_of=64, num_classes=1, class_dropout_prob=0.0, vocab_size=0
        )
    )


@dataclass
class VideoDataConfig:
    """Video datasets (see argen.data.video): moving sprites, folders of frames or GIFs, video files."""

    frames: int = 17  # T; a folder's longer videos are cut to their first T frames (1 + 4k for a causal 3D tokenizer)
    stride: int = 1  # videofiles: the frame step of a clip (2 = every other frame)
    # videofiles: a UCF-101 split list (e.g. ucfTrainTestlist/trainlist01.txt, relative to data.path or absolute)
    # naming the videos to read as `Class/name.avi [label]` lines; empty: every video under data.path.
    split_file: str = ""
    # videofiles: while training, each clip starts at a random frame of its video (drawn from the batch's seeded
    # RNG, so a resumed run draws the same starts); off, or when evaluating, every clip starts at frame 0
    random_start: bool = False
    objects: int = 1  # moving-*: sprites per video, all of the video's class
    sprite_size: int = 16  # moving-*: sprites are resized to this side before they move on the canvas
    speed: float = 2.0  # moving-*: pixels per frame, in a random direction, bouncing off the borders
    seed: int = 0  # moving-*: start positions and directions (the test split draws its own stream)


@dataclass
class DataConfig:
    """Where images come from and how they are prepared (see argen.data)."""

    # Images: fashion-mnist | idx | imagefolder | webdataset (tar shards of `argen data pack`) | digits | synthetic.
    # Videos (T frames of image_size, see `video`): moving-<image dataset> (e.g. moving-fashion-mnist) |
    # videofolder | videofiles (.avi/.mp4/.webm/.mkv, UCF-101's layout, read per batch). An image tokenizer trains
    # on the frames, a causal 3D one on the clips; `argen tokenize` writes (T, h, w) token grids.
    name: str = "fashion-mnist"
    path: str = ""  # directory for idx / imagefolder / webdataset; fashion-mnist is found automatically
    split: str = "train"  # train | test
    image_size: int = 32
    channels: int = 1
    resize: str = "pad"  # "pad" (centre pad, then resize if still off) or "resize"
    pad_to: int = 0  # centre-pad to this size first (0: off); 28 -> 32 -> 64 keeps Fashion-MNIST's 32x32 framing
    flip: bool = False  # random horizontal flip while training
    # Random crop while training (LlamaGen's tokenizer recipe: 0.8): a square of a fraction in [crop_min, 1] of
    # the shorter side, resized to image_size; 1 = off.
    crop_min: float = 1.0
    num_workers: int = 0  # DataLoader worker processes reading batches ahead (0: the training process reads)
    on_bad_image: str = "skip"  # "skip" (warn and count) or "error"
    # Images of more pixels (read from the header, before decoding) are unreadable: decompression bombs are skipped
    max_image_pixels: int = 2**26
    limit: int = 0  # use only the first N samples (0 = all)
    skip: int = 0  # drop the first N samples before `limit` (a validation split held out from training's first N)
    video: VideoDataConfig = field(default_factory=VideoDataConfig)

    def __post_init__(self) -> None:
        for key in ("limit", "skip"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ConfigError(f"data.{key} must be an integer >= 0, got {getattr(self, key)!r}")
        if not isinstance(self.crop_min, (int, float)) or not 0 < self.crop_min <= 1:
            raise ConfigError(f"data.crop_min must be in (0, 1] (1 = no random crop), got {self.crop_min!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be an integer >= 0, got {self.num_workers!r}")
        if not isinstance(self.max_image_pixels, int) or self.max_image_pixels < 1:
            raise ConfigError(f"data.max_image_pixels must be an integer >= 1, got {self.max_image_pixels!r}")


@dataclass
class TrainConfig:
    """The one training loop's settings (see argen.train.trainer)."""

    steps: int = 1000
    batch_size: int = 64  # global batch, split across ranks and accumulation steps
    grad_accum: int = 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05  # applied to weights with >= 2 dims only
    schedule: str = "constant"  # "constant", "cosine" or "linear" decay to min_lr_ratio * lr (after warmup)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping
    precision: str = "fp32"  # "fp32", "bf16" (autocast) or "auto" (bf16 where this machine runs it faster)
    ema_decay: float = 0.0  # 0 disables EMA
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    sample_every: int = 0  # 0 disables sample grids during training
    init_from: str = ""  # start the model from this checkpoint's weights (fine-tuning); a resume overrides it
    fsdp: bool = False  # under torchrun: shard weights, gradients and optimizer state (FSDP2) instead of DDP
    compile: bool = False  # torch.compile the trained modules (the first steps compile)
    activation_checkpointing: bool = False  # recompute each transformer block's activations in the backward pass
    out_dir: str = "runs/run"

    def __post_init__(self) -> None:
        # Checked when the config is built, before any data is read or any folder is made.
        at_least = {
            "steps": 1,
            "batch_size": 1,
            "grad_accum": 1,
            "log_every": 1,
            "checkpoint_every": 1,
            "warmup_steps": 0,
            "sample_every": 0,
        }
        for name, low in at_least.items():
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise ConfigError(f"train.{name} must be an integer >= {low}, got {getattr(self, name)!r}")
        choices = {"schedule": ("constant", "cosine", "linear"), "precision": ("fp32", "bf16", "auto")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if (
            not self.lr > 0
            or not self.grad_clip >= 0
            or not 0 <= self.min_lr_ratio <= 1
            or not 0 <= self.ema_decay < 1
            or not all(0 <= beta < 1 for beta in self.betas)
        ):
            raise ConfigError(
                f"train.lr must be > 0, train.grad_clip >= 0, train.min_lr_ratio and train.betas in "
                f"[0, 1], train.ema_decay in [0, 1); got lr={self.lr}, grad_clip={self.grad_clip}, "
                f"min_lr_ratio={self.min_lr_ratio}, betas={self.betas}, ema_decay={self.ema_decay}"
            )
        if not self.out_dir:
            raise ConfigError("train.out_dir must name a folder")


# --------------------------------------------------------------------------------------------
# Presets


_VIT_PROLOGUE_B = dict(
    architecture="vit", image_size=256, in_channels=3, patch_size=16, vit_dim=768, vit_layers=12, vit_heads=12,
    vit_decoder_dim=768, vit_decoder_layers=12, vit_decoder_heads=12, codebook_size=16384, codebook_dim=14,
    prologue_tokens=16, prologue_codebook_size=1024, prologue_codebook_dim=14, prologue_tau=0.1,
)  # fmt: skip
VQ_PRESETS: dict[str, dict[str, Any]] = {
    # LlamaGen's VQ-16 (16x downsampling, 71,883,403 parameters).
    "VQ-16": dict(
        image_size=256,
        in_channels=3,
        ch=128,
        ch_mult=(1, 1, 2, 2, 4),
        num_res_blocks=2,
        z_channels=256,
        codebook_size=16384,
        codebook_dim=8,
    ),
    # LlamaGen's VQ-8.
    "VQ-8": dict(
        image_size=256,
        in_channels=3,
        ch=128,
        ch_mult=(1, 2, 2, 4),
        num_res_blocks=2,
        z_channels=256,
        codebook_size=16384,
        codebook_dim=8,
    ),
    # Prologue's ViT tokenizers (github.com/Zyriix/prologue, configs/tokenizer/*.yaml and its eval.sh): 16x16
    # patches of 256 px images, a 12 x 768 encoder with 16 prologue queries, 14-d cosine codes (1024 prologue
    # codes, tau 0.1); B decodes with 12 x 768 over 16384 codes, L with 24 x 1024 over 4096. Prologue-Post
    # (configs/tokenizer/prologue_post.yaml): B's visual path, frozen, and a separate prologue encoder (10 x 512,
    # 8 heads, FFN 11/4) over its outputs with the 16 queries.
    "ViT-Prologue-B": _VIT_PROLOGUE_B,
    "ViT-Prologue-L": _VIT_PROLOGUE_B
    | dict(vit_decoder_dim=1024, vit_decoder_layers=24, vit_decoder_heads=16, codebook_size=4096),
    "ViT-Prologue-Post": _VIT_PROLOGUE_B | dict(vit_prologue_dim=512, vit_prologue_layers=10, vit_prologue_heads=8),
    # CPU presets: 32x32 grey -> 8x8 tokens; 64x64 grey -> 16x16 tokens (downsample 4).
    "VQ-CPU-32": dict(
        image_size=32,
        in_channels=1,
        ch=32,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        z_channels=64,
        codebook_size=1024,
        codebook_dim=8,
    ),
    "VQ-CPU-64": dict(
        image_size=64,
        in_channels=1,
        ch=32,
        ch_mult=(1, 2, 4),
        num_res_blocks=1,
        z_channels=64,
        codebook_size=512,
        codebook_dim=8,
    ),
    # Causal 3D video tokenizers (17 frames -> 5 latent frames). CPU: 32x32 grey clips -> (5, 8, 8) tokens, the
    # widths of VQ-CPU-32 (so it inflates from it). B: 128x128 RGB clips (UCF-101) -> (5, 16, 16) tokens.
    "VQ3D-CPU-32": dict(
        image_size=32,
        in_channels=1,
        ch=32,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        z_channels=64,
        codebook_size=1024,
        codebook_dim=8,
        temporal_downsample=4,
    ),
    "VQ3D-B": dict(
        image_size=128,
        in_channels=3,
        ch=64,
        ch_mult=(1, 2, 2, 4),
        num_res_blocks=2,
        z_channels=256,
        codebook_size=16384,
        codebook_dim=8,
        temporal_downsample=4,
    ),
}

GPT_PRESETS: dict[str, dict[str, Any]] = {
    # LlamaGen's sizes (head_dim 64 except GPT-3B's 100).
    "GPT-B": dict(n_layer=12, n_head=12, dim=768, num_classes=1000, vocab_size=16384),
    "GPT-L": dict(n_layer=24, n_head=16, dim=1024, num_classes=1000, vocab_size=16384),
    "GPT-XL": dict(n_layer=36, n_head=20, dim=1280, num_classes=1000, vocab_size=16384),
    "GPT-XXL": dict(n_layer=48, n_head=24, dim=1536, num_classes=1000, vocab_size=16384),
    "GPT-XXXL": dict(n_layer=48, n_head=40, dim=2560, num_classes=1000, vocab_size=16384),
    "GPT-1B": dict(n_layer=22, n_head=32, dim=2048, num_classes=1000, vocab_size=16384),
    "GPT-3B": dict(n_layer=24, n_head=32, dim=3200, num_classes=1000, vocab_size=16384),
    "GPT-7B": dict(n_layer=32, n_head=32, dim=4096, num_classes=1000, vocab_size=16384),
    # CPU presets for 10-class datasets with small codebooks.
    "GPT-T": dict(n_layer=2, n_head=2, dim=64, multiple_of=32, num_classes=10, vocab_size=256),
    "GPT-S": dict(n_layer=6, n_head=4, dim=256, multiple_of=64, num_classes=10, vocab_size=256),
    "GPT-M": dict(n_layer=8, n_head=8, dim=384, multiple_of=64, num_classes=10, vocab_size=512),
}


# --------------------------------------------------------------------------------------------
# Building, merging and validating


def _resolve_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


class OverrideText(str):
    """A `key=value` override's value as typed, with its YAML reading in `parsed`: a text field takes the text as
    written (a path "on", "007" or "1e3" stays that), any other field the YAML value (3e-4, true, [2, 2])."""

    parsed: Any


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML/JSON value to the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(value, OverrideText):
        text_field = annotation is str or str in args
        value = str(value) if text_field and not (value.parsed is None and type(None) in args) else value.parsed
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    if origin is tuple:
        if isinstance(value, (int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, where) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            return str(value)
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys with the valid ones listed."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' under ' + where if where else ''}: {', '.join(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        sub = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, _resolve_type(cls, name), sub)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def merge(config: Any, data: dict[str, Any]) -> Any:
    """A copy of `config` with the (nested) values of `data` replaced."""
    merged = to_dict(config)
    _deep_update(merged, data)
    return from_dict(type(config), merged)


def _deep_update(target: dict, source: dict) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["model.dim=256", "train.lr=3e-4"]` -> nested dict with YAML-typed values."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=3e-4)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key part")
        parsed = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(parsed, (dict, list)):
            value = parsed  # a mapping merges key by key, a list is a list whatever it was written as
        else:
            value = OverrideText(raw)
            value.parsed = parsed
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part}")
        target[parts[-1]] = value
    return nested


def settings(yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """What a user set explicitly, as one nested mapping: a YAML file, then `key=value` overrides over it."""
    data: dict[str, Any] = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(error).split())}") from error
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    if overrides:
        _deep_update(data, parse_overrides(overrides))
    return data


def build(
    cls: type, base: Any | None = None, yaml_path: str | Path | None = None, overrides: list[str] | None = None
) -> Any:
    """Defaults (or `base`), then a YAML file, then `key=value` overrides: built (and validated) once."""
    return merge(base if base is not None else cls(), settings(yaml_path, overrides))


def build_run(
    cls: type,
    preset_name: str | None = None,
    yaml_path: str | Path | None = None,
    overrides: list[str] | None = None,
    derive: Callable[[Any, dict[str, Any]], Any] | None = None,
) -> Any:
    """A run config, built and validated once: defaults, then the model preset `preset_name` (of the run's model
    class), then what `derive(base, explicit)` fills in (e.g. a token cache's grid, vocabulary and classes, for
    the cache the explicit settings or the base name; a falsy result derives nothing), then the explicit settings:
    the YAML file, then `key=value` overrides. So explicit settings win over derived ones, and a setting that only
    fits the derived values (regions of a video grid) is checked against them."""
    base = cls()
    if preset_name:
        model_cls = type(base.model)
        presets = {GPTConfig: GPT_PRESETS, VQConfig: VQ_PRESETS}.get(model_cls)
        if presets is None:
            raise ConfigError(f"{cls.__name__} has no model presets")
        model = preset(presets, preset_name, model_cls)
        if hasattr(base, "data") and hasattr(model, "image_size"):
            # The tokenizer fixes the image format: keep the data in step with the preset.
            data = dataclasses.replace(base.data, image_size=model.image_size, channels=model.in_channels)
            base = dataclasses.replace(base, model=model, data=data)
        else:
            base = dataclasses.replace(base, model=model)
    explicit = settings(yaml_path, overrides)
    if derive is not None:
        base = derive(base, explicit) or base
    return merge(base, explicit)


def preset(table: dict[str, dict[str, Any]], name: str, cls: type) -> Any:
    """A named preset as a dataclass; unknown names list the known ones."""
    if name not in table:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(table)}")
    return from_dict(cls, dict(table[name]))


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def field_default(factory):
    """Shorthand for a dataclass field holding a nested component config."""
    return field(default_factory=factory)


# --------------------------------------------------------------------------------------------
# Run configs: what one command trains


@dataclass
class TokenizerRunConfig:
    model: VQConfig = field_default(VQConfig)
    loss: VQLossConfig = field_default(VQLossConfig)
    prologue: PrologueTrainConfig = field_default(PrologueTrainConfig)
    data: DataConfig = field_default(DataConfig)
    train: TrainConfig = field_default(lambda: TrainConfig(lr=2e-4, weight_decay=0.0, steps=2000))

    def __post_init__(self) -> None:
        if (self.data.image_size, self.data.channels) != (self.model.image_size, self.model.in_channels):
            raise ConfigError(
                f"data.image_size/channels ({self.data.image_size}, {self.data.channels}) must match "
                f"model.image_size/in_channels ({self.model.image_size}, {self.model.in_channels})"
            )
        if self.model.inflate_from and not self.model.temporal_downsample:
            raise ConfigError("model.inflate_from starts a causal 3D tokenizer; set model.temporal_downsample too")
        if self.model.quantizer == "lfq" and self.loss.restart_dead_codes_every:
            raise ConfigError(
                "model.quantizer=lfq has no code table to restart: set loss.restart_dead_codes_every=0 "
                "(its entropy penalty, model.entropy_weight, keeps codes in use)"
            )
        smallest = self.loss.disc_min_image_size
        if self.loss.disc_weight > 0 and self.model.image_size < smallest:
            raise ConfigError(
                f"loss.disc_layers={self.loss.disc_layers} needs images of at least {smallest} pixels, "
                f"got model.image_size={self.model.image_size}; lower loss.disc_layers"
            )
        self._check_prologue_training()

    def _check_prologue_training(self) -> None:
        prologue = self.prologue
        if self.model.prologue_tokens == 0:
            if prologue.visual_tokenizer:
                raise ConfigError("prologue.visual_tokenizer needs model.prologue_tokens > 0")
            return
        for name in ("ar_weight", "restart_dead_codes_every", "entropy_weight"):
            if getattr(prologue, name) < 0:
                raise ConfigError(f"prologue.{name} must be >= 0, got {getattr(prologue, name)}")
        if not 0.0 <= prologue.visual_dropout <= 1.0:
            raise ConfigError(f"prologue.visual_dropout must be in [0, 1], got {prologue.visual_dropout}")
        if prologue.prior.num_classes != 1 or prologue.prior.class_dropout_prob != 0:
            raise ConfigError(
                "the stage-1 prior is unconditional, so the prologue has to carry the class itself: "
                "set prologue.prior.num_classes=1 and prologue.prior.class_dropout_prob=0"
            )
        if self.train.fsdp:
            raise ConfigError(
                "prologue training runs the prior with detached copies of its weights, which FSDP "
                "shards; use DDP (train.fsdp=false)"
            )
        if prologue.visual_tokenizer and self.train.init_from:
            raise ConfigError(
                "prologue.visual_tokenizer already gives the starting weights; leave train.init_from empty"
            )
        if prologue.visual_tokenizer and prologue.freeze_visual:
            loss = self.loss
            if loss.disc_weight or loss.perceptual_weight or loss.restart_dead_codes_every:
                raise ConfigError(
                    "the Post variant (prologue.visual_tokenizer, freeze_visual) trains only the prologue "
                    "path; set loss.disc_weight=0, loss.perceptual_weight=0 and loss.restart_dead_codes_every=0"
                )


@dataclass
class ARRunConfig:
    model: GPTConfig = field_default(GPTConfig)
    layout: LayoutConfig = field_default(LayoutConfig)
    cache: str = ""  # token cache directory written by `argen tokenize`
    coarse_table: str = ""  # CTF: train on coarse labels, the cache's ids mapped by this table (argen ctf cluster)
    cache_limit: int = 0  # train on the cache's first N samples only (the rest: a held-out validation split)
    train: TrainConfig = field_default(lambda: TrainConfig(lr=3e-4, schedule="cosine", warmup_steps=100))


@dataclass
class ClassifierConfig:
    """The project's metric classifier, a small CNN: per width one conv3x3-BatchNorm-ReLU-maxpool stage, then
    fc(feature_dim), ReLU, logits (argen.eval.features.Classifier)."""

    image_size: int = 32  # inputs of other sizes are resized to this
    in_channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128  # the "pool" features
    num_classes: int = 10
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if not self.widths or self.image_size < 2 ** len(self.widths):
            raise ConfigError(
                f"classifier widths {tuple(self.widths)} need images of at least "
                f"{2 ** len(self.widths)} pixels, got image_size={self.image_size}"
            )


@dataclass
class ClassifierRunConfig:
    model: ClassifierConfig = field_default(ClassifierConfig)
    data: DataConfig = field_default(DataConfig)
    # About 3 epochs of Fashion-MNIST at batch 128.
    train: TrainConfig = field_default(
        lambda: TrainConfig(
            steps=1400,
            batch_size=128,
            lr=2e-3,
            weight_decay=1e-4,
            schedule="cosine",
            warmup_steps=50,
            min_lr_ratio=0.02,
            log_every=50,
            checkpoint_every=1000,
            out_dir="runs/classifier",
        )
    )
    shift: int = 2  # random translation of up to this many pixels (0 disables augmentation)

    def __post_init__(self) -> None:
        if not 0 <= self.shift < self.model.image_size:
            raise ConfigError(f"shift must be in [0, model.image_size={self.model.image_size}), got {self.shift}")


@dataclass
class RefinerConfig:
    """CTF refiner training options (the network's dimensions are a GPTConfig, see argen.model.refiner)."""

    restrict_to_cluster: bool = False  # softmax over the members of each position's cluster only
    coarse_noise: float = 0.0  # fraction of input coarse labels replaced by random ones while training


@dataclass
class RefinerRunConfig:
    model: GPTConfig = field_default(GPTConfig)  # vocab_size = clusters K; class dropout enables refiner guidance
    refiner: RefinerConfig = field_default(RefinerConfig)
    cache: str = ""  # token cache directory written by `argen tokenize`
    coarse_table: str = ""  # fine -> coarse table of the cache's tokenizer (argen ctf cluster)
    cache_limit: int = 0  # train on the cache's first N samples only (the rest: a held-out validation split)
    train: TrainConfig = field_default(lambda: TrainConfig(lr=3e-4, schedule="cosine", warmup_steps=100))
