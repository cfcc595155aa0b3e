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
        out[:, :, top : top + h, left : left + w] = images
        return out
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(images[:, :, top : top + side, left : left + side])).float()
    resized = F.interpolate(square, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8).numpy()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (LlamaGen's mean = std = 0.5 normalisation)."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] (N, C, H, W) -> uint8 (N, C, H, W), as LlamaGen's clamp(127.5 x + 128)."""
    return (images.detach().float() * 127.5 + 128.0).clamp(0, 255).to(torch.uint8)


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Flip each image (N, C, H, W), or each video (N, T, C, H, W) as a whole, horizontally with probability 1/2
    (global RNG, which the trainer seeds per step)."""
    flip = torch.rand(images.shape[0]) < 0.5
    return torch.where(flip.view(-1, *[1] * (images.ndim - 1)).to(images.device), images.flip(-1), images)


def random_crop_box(height: int, width: int, crop_min: float) -> tuple[int, int, int]:
    """LlamaGen's (ADM's) random crop as (top, left, side): a square whose side is a fraction in [crop_min, 1] of
    the shorter side, anywhere in the image (global RNG, seeded per batch by the trainer)."""
    fraction = crop_min + (1.0 - crop_min) * float(torch.rand(()))
    side = max(1, min(height, width, round(fraction * min(height, width))))
    return int(torch.randint(height - side + 1, ())), int(torch.randint(width - side + 1, ())), side


def random_crop(images: torch.Tensor, crop_min: float) -> torch.Tensor:
    """uint8 (N, C, S, S): each image a random crop (`random_crop_box`) resized back to S (antialiased bicubic)."""
    size = images.shape[-1]
    crops = []
    for image in images:
        top, left, side = random_crop_box(size, size, crop_min)
        crop = image[None, :, top : top + side, left : left + side].float()
        crops.append(F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True, align_corners=False))
    return torch.cat(crops).round().clamp(0, 255).to(torch.uint8)


def ten_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, 10, C, size, size): LlamaGen's TenCrop, the four corners and the centre, then the same
    five of the mirrored images."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"ten_crop needs images of at least {size}x{size}, got {height}x{width}")
    corners = [
        (0, 0),
        (0, width - size),
        (height - size, 0),
        (height - size, width - size),
        ((height - size) // 2, (width - size) // 2),
    ]
    crops = [
        source[..., top : top + size, left : left + size]
        for source in (images, images.flip(-1))
        for top, left in corners
    ]
    return torch.stack(crops, 1)
