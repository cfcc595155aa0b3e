"""Lookup-free quantisation (LFQ, MAGVIT-v2, arXiv 2310.05737): each latent channel is a bit.

A latent z (D channels) becomes the code c = sign(z) in {-1, +1}^D with no table to look it up in; its id is the
number whose bit i is 1 where c_i = +1 (channel i is bit i), so the codebook has 2^D entries and
`codebook()` enumerates them in id order. Gradients pass straight through (z + sg(c - z)); the commitment loss
beta * |z - sg(c)|^2 pulls latents to their codes.

MAGVIT-v2's entropy penalty keeps the bits informative and the codes spread: with the soft assignment
q(c | z) = softmax over codes of 2 * T * <z, c> (T = 100, its inverse temperature; it factorises into independent
bits, P(c_i = +1) = sigmoid(4 T z_i)), the loss is E[H(q(c | z))] - H(E[q(c | z)]): each latent sure of its code,
the batch using many codes. The batch term is exact over all 2^D codes up to EXACT_ENTROPY_BITS bits, and above
that the sum of the bits' entropies (an upper bound, as large-codebook LFQ implementations take it).
"""

from __future__ import annotations

import torch

from argen.config import LFQ_MAX_BITS
from argen.tokenizer.code_usage import CodeUsage, QuantizerOutput, batch_code_stats

INVERSE_TEMPERATURE = 100.0
EXACT_ENTROPY_BITS = 14


def bits_to_ids(codes: torch.Tensor) -> torch.Tensor:
    """(..., D) codes in {-1, +1} -> (...) long ids (channel i is bit i)."""
    weights = 2 ** torch.arange(codes.shape[-1], device=codes.device)
    return ((codes > 0).long() * weights).sum(-1)


def ids_to_bits(ids: torch.Tensor, bits: int) -> torch.Tensor:
    """(...) ids -> (..., D) float codes in {-1, +1}."""
    mask = 2 ** torch.arange(bits, device=ids.device)
    return ((ids.long()[..., None] & mask) > 0).float() * 2 - 1


def _entropy(probabilities: torch.Tensor) -> torch.Tensor:
    return -(probabilities * probabilities.clamp_min(1e-10).log()).sum(-1)


def entropy_terms(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-latent entropy, entropy of the batch-average assignment) of latents (N, D), in nats."""
    bit_one = torch.sigmoid(4 * INVERSE_TEMPERATURE * latents.float())  # (N, D): P(bit = +1)
    per_bit = torch.stack([bit_one, 1 - bit_one], -1)  # (N, D, 2)
    per_sample = _entropy(per_bit).sum(-1).mean()  # the factorised distribution's entropy is the bits' sum
    bits = latents.shape[-1]
    if bits <= EXACT_ENTROPY_BITS:
        codes = ids_to_bits(torch.arange(2**bits, device=latents.device), bits)  # (K, D)
        logits = 2 * INVERSE_TEMPERATURE * latents.float() @ codes.t()  # (N, K)
        batch = _entropy(torch.softmax(logits, -1).mean(0))
    else:
        batch = _entropy(per_bit.mean(0)).sum()
    return per_sample, batch


class LookupFreeQuantizer(CodeUsage):
    """LFQ over `bits` channels: 2^bits codes, no parameters (only the usage record every quantiser keeps)."""

    def __init__(self, bits: int, commit_beta: float, entropy_weight: float):
        if not 1 <= bits <= LFQ_MAX_BITS:
            raise ValueError(f"LFQ takes 1 to {LFQ_MAX_BITS} bits (channels), got {bits}")
        super().__init__(2**bits, bits)
        self.bits, self.commit_beta, self.entropy_weight = bits, commit_beta, entropy_weight

    def restart_target(self) -> torch.Tensor:
        raise ValueError(
            "lookup-free quantisation has no code table to restart: set "
            "loss.restart_dead_codes_every=0 (its entropy penalty keeps codes in use)"
        )

    def codebook(self) -> torch.Tensor:
        """Every code in id order: (2^bits, bits) in {-1, +1}."""
        return ids_to_bits(torch.arange(self.codebook_size, device=self.codebook_used.device), self.bits)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """(...) ids -> (..., bits) codes, without enumerating the codebook."""
        return ids_to_bits(ids, self.bits)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """z (B, D, h, w) -> (straight-through codes (B, D, h, w), QuantizerOutput)."""
        b, d, h, w = z.shape
        if d != self.bits:
            raise ValueError(f"LFQ over {self.bits} bits got latents of {d} channels")
        latents = z.permute(0, 2, 3, 1).reshape(-1, d)
        codes = torch.where(latents > 0, 1.0, -1.0).to(latents.dtype)
        ids = bits_to_ids(codes)
        commit_loss = self.commit_beta * (latents - codes.detach()).pow(2).mean()
        if self.entropy_weight > 0:
            per_sample, batch = entropy_terms(latents)
            entropy_loss = self.entropy_weight * (per_sample - batch)
        else:
            entropy_loss = latents.new_zeros(())
        straight_through = latents + (codes - latents).detach()
        perplexity, usage = batch_code_stats(ids, self.codebook_size)
        output = QuantizerOutput(
            ids.view(b, h, w), commit_loss, latents.new_zeros(()), entropy_loss, perplexity, usage, latents.detach()
        )
        return straight_through.view(b, h, w, d).permute(0, 3, 1, 2), output
