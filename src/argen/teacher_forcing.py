"""Teacher forcing: every decode step of a Layout in one forward pass, for training and for measuring.

The model reads the Layout's training tensors (what each decode step would feed, the block-causal mask,
the RoPE rows), and the logits of each slot are restricted to the vocabulary of its target's segment
(`Layout.target_vocab_mask`), as the decode loop restricts each step. Restricted because the decoder never
draws another segment's ids: training on the restricted logits spends no capacity on ruling those ids out,
and the teacher-forced likelihood is the one of the distribution that decoding samples from. Without a
prologue the visual segment is the whole vocabulary, so the restriction changes nothing there.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from argen.config import GPTConfig
from argen.layout import IGNORE_INDEX, Layout

# model(ids, kinds, rope, mask) -> logits (B, L, V): a Transformer, or a functional call of one
ModelCall = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TeacherForcing:
    """A Layout's constant training inputs (RoPE rows, mask, per-slot vocabulary), built once for a model's
    config (its heads and RoPE), and the restricted logits of a forward pass over them."""

    def __init__(self, layout: Layout, model: GPTConfig):
        self.layout = layout
        self.rope = layout.rope(model)
        self.mask = layout.mask
        self.allowed = layout.target_vocab_mask  # (L, V)

    def logits(self, model: ModelCall, ids: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """(B, L, V) logits of `model` on the training tensors' ids and kinds, -inf outside each slot's
        target segment."""
        device = ids.device
        logits = model(ids, kinds.to(device), self.rope.to(device), self.mask.to(device))
        return logits.masked_fill(~self.allowed.to(device), float("-inf"))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mean over the predicted tokens, per-slot cross-entropy (B, L) with 0 where the target is IGNORE_INDEX,
    token accuracy) of logits (B, L, V) against targets (B, L)."""
    per_slot = F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(targets.shape)
    valid = targets != IGNORE_INDEX
    with torch.no_grad():
        accuracy = float((logits.argmax(-1) == targets)[valid].float().mean())
    return per_slot.sum() / valid.sum(), per_slot, accuracy
