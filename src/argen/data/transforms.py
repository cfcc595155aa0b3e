"""Image transforms: to the tokenizer's resolution and channel count, [-1, 1] scaling, random flips."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, C, H, W) with C in {1, 3} -> `channels` channels (grey is repeated; RGB -> luma)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return np.repeat(images, 3, axis=1)
    if have == 3:
        luma = images.astype(np.float32).transpose(0, 2, 3, 1) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, None]
    raise ValueError(f"images must have 1 or 3 channels, got {have}")


def to_resolution(images: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """uint8 (N, C, H, W) -> (N, C, size, size).

    "pad": centre-pad smaller images with black (Fashion-MNIST 28 -> 32 keeps every pixel), resize if larger;
    "resize": centre-crop to a square, then resize (antialiased bicubic).
    """
    if mode not in ("pad", "resize"):
        raise ValueError(f"resize mode must be 'pad' or 'resize', got {mode!r}")
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    if mode == "pad" and h <= size and w <= size:
        top, left = (size - h) // 2, (size - w) // 2
        out = np.zeros((n, c, size, size), dtype=np.uint8)
        out[:, :, top:top + h, left:left + w] = images
        return out
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(images[:, :, top:top + side, left:left + side])).float()
    resized = F.interpolate(square, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8).numpy()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (LlamaGen's mean = std = 0.5 normalisation)."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] (N, C, H, W) -> uint8 (N, C, H, W), as LlamaGen's clamp(127.5 x + 128)."""
    return (images.detach().float() * 127.5 + 128.0).clamp(0, 255).to(torch.uint8)


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2 (global RNG, which the trainer seeds per step)."""
    flip = torch.rand(images.shape[0]) < 0.5
    return torch.where(flip[:, None, None, None].to(images.device), images.flip(-1), images)
