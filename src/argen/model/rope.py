"""Rotary position embeddings built from explicit coordinates (LlamaGen's 2D RoPE, generalised).

A table row holds (cos, sin) for each of the head's D/2 rotated pairs. The pairs are split between
the coordinate axes and each axis rotates its pairs by `coordinate * frequency`:

- 2 axes (row, col): D/4 pairs each, row angles first: bit-identical to LlamaGen's
  `precompute_freqs_cis_2d` (frequencies `1 / base**(2k / (D/2))`).
- 3 axes (t, row, col): each axis gets `(D/2) // 3` pairs and the remainder goes to t
  (head_dim 64: t 12, row 10, col 10 pairs).
- 1 axis: all D/2 pairs (ordinary 1D RoPE, frequencies `1 / base**(2k / D)`).

In general an axis with m pairs uses the frequencies `1 / base**(2j / (2m))`, j = 0..m-1, and axis 0
receives the `(D/2) % n_axes` leftover pairs.

Null rows (LlamaGen's class token, PAR's transition tokens) are all zero in "zero" mode, which is what
LlamaGen and PAR do: the query and key of such a slot become exactly zero, so its information flows
through its value only. "identity" mode (cos 1, sin 0) leaves them unrotated instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NULL_ROW_MODES = ("zero", "identity")


def axis_pair_counts(head_dim: int, n_axes: int) -> list[int]:
    """Rotated pairs per axis: an equal share each, the remainder to axis 0."""
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE needs a positive even head_dim, got {head_dim}")
    if n_axes < 1:
        raise ValueError(f"RoPE needs at least one coordinate axis, got {n_axes}")
    pairs = head_dim // 2
    share = pairs // n_axes
    if share == 0:
        raise ValueError(f"head_dim {head_dim} has only {pairs} pairs, too few for {n_axes} axes")
    return [share + pairs % n_axes] + [share] * (n_axes - 1)


def axis_frequencies(pair_count: int, base: float) -> torch.Tensor:
    """(pair_count,) float32 frequencies of one axis, computed exactly as LlamaGen does."""
    exponents = torch.arange(0, 2 * pair_count, 2).float() / (2 * pair_count)
    return 1.0 / (base**exponents)


def rope_table(
    coords: torch.Tensor,
    null: torch.Tensor,
    head_dim: int,
    base: float = 10000.0,
    null_rows: str = "zero",
    pair_counts: list[int] | None = None,
) -> torch.Tensor:
    """The (S, head_dim/2, 2) table of (cos, sin) for slots at `coords` (S, n_axes).

    `null` (S,) bool marks slots without a position (their rows are zero or identity, see module doc).
    `pair_counts` gives each axis its number of pairs (default: `axis_pair_counts`; Prologue's ViT: 10, 10, 12).
    """
    if coords.dim() != 2:
        raise ValueError(f"coords must be (S, n_axes), got shape {tuple(coords.shape)}")
    if null.shape != coords.shape[:1] or null.dtype != torch.bool:
        raise ValueError(
            f"null must be a bool tensor of shape ({coords.shape[0]},), got {null.dtype} {tuple(null.shape)}"
        )
    if null_rows not in NULL_ROW_MODES:
        raise ValueError(f"null_rows must be one of {NULL_ROW_MODES}, got {null_rows!r}")
    counts = axis_pair_counts(head_dim, coords.shape[1]) if pair_counts is None else list(pair_counts)
    if len(counts) != coords.shape[1] or sum(counts) != head_dim // 2:
        raise ValueError(f"pair_counts {counts} must give each of the {coords.shape[1]} axes its pairs, "
                         f"{head_dim // 2} in all")  # fmt: skip
    coords = coords.float().cpu()
    angles = torch.cat(
        [torch.outer(coords[:, axis], axis_frequencies(count, base)) for axis, count in enumerate(counts)], dim=-1
    )  # (S, D/2)
    table = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # (S, D/2, 2)
    null_row = torch.zeros(2) if null_rows == "zero" else torch.tensor([1.0, 0.0])
    return torch.where(null[:, None, None], null_row, table)


class Rotation(NamedTuple):
    """A RoPE table expanded for `apply_rotation`: cos (S, 1, D) with each pair's value twice, sin (S, 1, D) as
    (-sin, sin) per pair. Built once per forward (`rotation`) and shared by every layer."""

    cos: torch.Tensor
    sin: torch.Tensor


def rotation(rope: torch.Tensor) -> Rotation:
    """The (S, D/2, 2) float32 table `rope_table` gives, expanded for `apply_rotation`."""
    cos, sin = rope[..., 0], rope[..., 1]  # (S, D/2)
    return Rotation(cos.repeat_interleave(2, dim=-1)[:, None], torch.stack([-sin, sin], dim=-1).flatten(-2)[:, None])


def apply_rotation(x: torch.Tensor, rotation: Rotation) -> torch.Tensor:
    """Rotate adjacent pairs (2j, 2j+1) of x (B, S, H, D), in float32: (a, b) -> (a cos - b sin, b cos + a sin),
    as one product with x and one with its pair-swapped copy (bit-identical to the pairwise formula)."""
    x32 = x.float()
    swapped = x32.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (b, a) per pair
    return (x32 * rotation.cos + swapped * rotation.sin).type_as(x)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2j, 2j+1) of x (B, S, H, D) by rope (S, D/2, 2), in float32."""
    return apply_rotation(x, rotation(rope))
