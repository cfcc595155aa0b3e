"""The linear layer of every argen transformer (bias-free unless asked: LlamaGen's has none, Prologue's ViT
tokenizer has them), with cached inference copies of its weight.

In inference on a CPU (no autograd) a `Linear` multiplies by a copy of its weight derived once and cached
until the weight changes:

- fp32 and bf16: the weight packed by oneDNN (`mkldnn._reorder_linear_weight`). The plain fp32 product
  (MKL) is not flat in the number of rows (2 rows cost 2x one, 4 rows 4x on the GPT-B shapes) and reads
  the weights at half the machine's bandwidth; the plain bf16 product repacks (or, under autocast,
  recasts) the weight at every call. Packed, a step of 1 to 16 rows costs about one row's time.
- int8 (inside `int8_weights()`): the weight quantised per output channel (symmetric, scale =
  max |w| / 127), multiplied by PyTorch's weight-only kernel (`aten._weight_int8pack_mm`) with bf16
  activations (its fp32-activation kernel is ~10x slower); a quarter of the fp32 bytes per step.

The fp32 weight stays the parameter: training, optimizers and checkpoints never see the copies.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# oneDNN packs a weight for the batch size it is given; packed for 16 rows, a product of 1 to 64 rows is
# faster than the unpacked one in fp32 and bf16 (docs/speed.md), and 1 to 16 rows cost about the same.
PACKED_ROWS_HINT = 16
INT8_MAX = 127

_INT8_WEIGHTS = contextvars.ContextVar("argen_int8_weights", default=False)


@contextlib.contextmanager
def int8_weights() -> Iterator[None]:
    """Inside this context, every `Linear` in inference on a CPU multiplies by its int8 weight."""
    token = _INT8_WEIGHTS.set(True)
    try:
        yield
    finally:
        _INT8_WEIGHTS.reset(token)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> (out, in) int8 values and (out,) float32 scales, weight ~= values * scales."""
    weight = weight.detach().float()
    scales = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / INT8_MAX
    values = torch.round(weight / scales[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return values, scales


@functools.cache
def native_bf16() -> bool:
    """True when oneDNN has bf16 instructions to pack for on this CPU (AVX-512 bf16 or AMX)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class Linear(nn.Linear):
    """A linear layer, bias-free by default; in inference on a CPU it multiplies by a cached packed or int8 copy
    of its weight (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        # ((data_ptr, version, path), derived weight tensors)
        self._derived: tuple[tuple[int, int, str], tuple[torch.Tensor, ...]] | None = None
        self.last_path = "plain"  # the product the last forward took: "plain", "fp32", "bf16" (packed) or "int8"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        path = self._inference_path(x)
        self.last_path = path or "plain"
        if path is None:
            return F.linear(x, self.weight, self.bias)
        if path == "int8":
            values, scales = self._derived_weight(path)
            rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
            output = torch._weight_int8pack_mm(rows, values, scales)
            if self.bias is not None:
                output = output + self.bias.to(output.dtype)
            return output.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        (packed,) = self._derived_weight(path)
        bias = None if self.bias is None else self.bias.detach().to(packed.dtype)
        return torch.ops.mkldnn._linear_pointwise(x.to(packed.dtype), packed, bias, "none", [], "")

    def _inference_path(self, x: torch.Tensor) -> str | None:
        """ "int8", "bf16" or "fp32" (the cached copy to multiply by), or None for the plain product."""
        if (
            torch.is_grad_enabled()
            or x.device.type != "cpu"
            or torch.compiler.is_compiling()
            or type(self.weight) not in (nn.Parameter, torch.Tensor)  # e.g. FSDP's DTensor shards
            or not torch.backends.mkldnn.is_available()
        ):
            return None
        if _INT8_WEIGHTS.get():
            return "int8"
        autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if autocast or x.dtype == self.weight.dtype == torch.bfloat16:
            return "bf16" if native_bf16() else None
        return "fp32" if x.dtype == self.weight.dtype == torch.float32 else None

    def _derived_weight(self, path: str) -> tuple[torch.Tensor, ...]:
        # The key changes with every in-place update (optimizer steps, load_state_dict) and every new tensor.
        key = (self.weight.data_ptr(), self.weight._version, path)
        if self._derived is None or self._derived[0] != key:
            weight = self.weight.detach()
            if path == "int8":
                values, scales = quantize_int8(weight)
                derived = (values, scales.to(torch.bfloat16))
            else:
                dtype = torch.bfloat16 if path == "bf16" else torch.float32
                derived = (torch.ops.mkldnn._reorder_linear_weight(weight.to(dtype), PACKED_ROWS_HINT),)
            self._derived = (key, derived)
        return self._derived[1]

    def __getstate__(self) -> dict:
        # A cache, not state: copies (EMA, deepcopy, pickling) derive theirs on their first use.
        return {**super().__getstate__(), "_derived": None}
