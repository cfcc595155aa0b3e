"""What every quantiser shares: its output (`QuantizerOutput`), codebook usage records and dead-code restarts (the
visual quantisers, VQ and LFQ, and the prologue's).

A quantiser keeps a rolling record of the latest chosen ids (LlamaGen's `codebook_used` buffer: float,
-1 = empty slot, saved with every checkpoint so a resumed run restarts the same codes). Codes absent from
the recent record are "dead" and can be moved onto current latents, which is what keeps a codebook in use
when the latents drift away from most codes (or, for the prologue, start out all alike).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Length of LlamaGen's `quantize.codebook_used` buffer: a rolling record of the latest chosen ids.
USAGE_RECORD_LENGTH = 65536


class QuantizerOutput(NamedTuple):
    """What quantisation reports besides the straight-through vectors.

    `commit_loss` already includes beta; the vector-quantisation term of the loss is
    codebook_loss + commit_loss + entropy_loss. `latents` are the (normalised) encoder vectors that
    were quantised, detached, for dead-code restarts. `prologue` is the prologue head's output when the
    tokenizer has one (VQModel.forward fills it in).
    """

    ids: torch.Tensor  # (B, h, w) long
    commit_loss: torch.Tensor  # scalar
    codebook_loss: torch.Tensor  # scalar
    entropy_loss: torch.Tensor  # scalar (entropy_weight already applied)
    perplexity: torch.Tensor  # scalar, exp(entropy of this batch's code histogram), detached
    usage: torch.Tensor  # scalar, fraction of the codebook used in this batch, detached
    latents: torch.Tensor  # (B*h*w, D) detached
    prologue: Any = None  # the prologue head's PrologueOutput (argen.tokenizer.prologue), when there is one


class CodeUsage(nn.Module):
    """Base for quantisers: `codebook_used` record, `recent_usage` and `restart_dead_codes`.

    Subclasses call `super().__init__(codebook_size, codebook_dim)` and implement `restart_target()`, the
    (K, D) parameter a restart writes into; `normalise_restarts` l2-normalises the replacement rows.
    """

    normalise_restarts = False

    def __init__(self, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size, self.codebook_dim = codebook_size, codebook_dim
        self.register_buffer("codebook_used", torch.full((USAGE_RECORD_LENGTH,), -1.0))

    def restart_target(self) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def record_usage(self, ids: torch.Tensor) -> None:
        """Append ids to the rolling `codebook_used` record (the oldest entries drop out)."""
        flat = ids.detach().flatten()[-USAGE_RECORD_LENGTH:].to(self.codebook_used.dtype)
        count = flat.numel()
        if count == 0:
            return
        record = self.codebook_used
        record.copy_(torch.cat([record[count:], flat]))

    @torch.no_grad()
    def recent_usage(self, window: int = USAGE_RECORD_LENGTH) -> torch.Tensor:
        """(K,) bool: which codes occur among the latest `window` recorded ids."""
        entries = self.codebook_used[-max(1, min(window, USAGE_RECORD_LENGTH)) :]
        entries = entries[(entries >= 0) & (entries < self.codebook_size)].long()
        return torch.bincount(entries, minlength=self.codebook_size) > 0

    @torch.no_grad()
    def restart_dead_codes(self, latents: torch.Tensor, window: int = USAGE_RECORD_LENGTH) -> int:
        """Replace codes unused among the latest `window` recorded ids by random rows of `latents` (N, D).

        Draws from the global torch RNG, so it is deterministic under the trainer's seeding. The record
        is left as is: a restarted code is judged again only by the ids chosen after the restart.
        Returns the number of codes replaced.
        """
        if latents.ndim != 2 or latents.shape[1] != self.codebook_dim or len(latents) == 0:
            raise ValueError(f"latents must be (N > 0, {self.codebook_dim}), got {tuple(latents.shape)}")
        dead = (~self.recent_usage(window)).nonzero().flatten()  # (dead,)
        if len(dead) == 0:
            return 0
        if len(latents) >= len(dead):
            picks = torch.randperm(len(latents), device=latents.device)[: len(dead)]
        else:
            picks = torch.randint(len(latents), (len(dead),), device=latents.device)
        target = self.restart_target()
        replacements = latents[picks].to(target)
        if self.normalise_restarts:
            replacements = F.normalize(replacements, dim=-1)
        target[dead.to(target.device)] = replacements
        return len(dead)


def check_code_ids(ids: torch.Tensor, codebook_size: int) -> None:
    """Refuse ids outside [0, codebook_size) before a codebook lookup, naming the values found."""
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= codebook_size):
        raise ValueError(f"ids must lie in [0, {codebook_size}), got values in [{int(ids.min())}, {int(ids.max())}]")


@torch.no_grad()
def batch_code_stats(ids: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, usage) of one batch's chosen ids: exp(entropy of their histogram) and the fraction of codes
    chosen at least once, both detached scalars."""
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).float()
    probabilities = counts / counts.sum()
    perplexity = torch.exp(-(probabilities * torch.log(probabilities.clamp_min(1e-10))).sum())
    return perplexity, (counts > 0).float().mean()


def assignment_entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy minus the entropy of the batch mean of softmax(logits) over codes (N, K): low when
    every latent is sure of its code and the batch spreads over many codes (LlamaGen's entropy loss)."""
    probabilities = logits.softmax(-1)
    sample_entropy = -(probabilities * logits.log_softmax(-1)).sum(-1).mean()
    mean = probabilities.mean(0)
    return sample_entropy + (mean * torch.log(mean + 1e-5)).sum()


def usage_and_restarts(
    quantizer: CodeUsage, latents: torch.Tensor | None, tokens_this_step: int, every: int, step: int
) -> tuple[float, int | None]:
    """After a training step: the fraction of codes in the recent record and, every `every` steps (0: never),
    the number of dead codes restarted onto `latents` (None when no restart was due).

    Dead = unused over the last `every` steps, as far back as the record reaches. Under torchrun the ranks
    saw different batches: rank 0's codebook wins (DDP broadcasts the record buffer itself).
    """
    # LlamaGen's measure: the fraction of codes among the last 65536 chosen ids.
    usage = float(quantizer.recent_usage().float().mean())
    if not every or (step + 1) % every or latents is None:
        return usage, None
    restarted = quantizer.restart_dead_codes(latents, min(USAGE_RECORD_LENGTH, every * tokens_this_step))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast(quantizer.restart_target().data, src=0)
    return usage, restarted
