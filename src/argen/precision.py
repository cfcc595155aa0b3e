"""Decode precisions: what `SamplingOptions.dtype` names, and which one "auto" takes on this machine.

- "fp32": fp32 weights and activations (on a CPU, oneDNN-packed weights: `argen.model.linear`).
- "bf16": bf16 weights and activations (autocast when the weights are fp32), bf16 KV cache.
- "int8": int8 weights per output channel in every linear layer (the output head too), bf16 matmul inputs,
  everything else (norms, attention, KV cache, logits) fp32. CPU only.
- "auto": the fastest of the three for the step's rows (batch x guidance x tokens per step) on this CPU's
  instruction set, from a table measured on GPT-B shapes (docs/speed.md), not from the CPU's name:
  int8 reads a quarter of fp32's bytes but its kernel is not flat in the rows; bf16 is fast only where
  oneDNN has bf16 instructions (AVX-512 bf16, AMX) to pack for, and is far slower than fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

import torch
from torch import nn

from argen.config import DECODE_PRECISIONS as PRECISIONS
from argen.model.linear import int8_weights, native_bf16

CACHE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}
# The most rows per step at which int8 weights beat the alternative (docs/speed.md, "Choosing a precision"),
# keyed by whether oneDNN packs bf16 on this CPU.
INT8_MAX_ROWS = {True: 2, False: 8}


def resolve(name: str, rows: int, device: torch.device, compile: bool = False) -> str:
    """The concrete precision ("fp32", "bf16" or "int8") that `name` stands for at `rows` rows per step."""
    if name not in PRECISIONS:
        raise ValueError(f"dtype must be one of {list(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name
    if device.type != "cpu":
        return "fp32"  # only CPUs were measured
    bf16 = native_bf16()
    if rows <= INT8_MAX_ROWS[bf16] and not compile:  # a compiled step takes the plain product (no int8)
        return "int8"
    return "bf16" if bf16 else "fp32"


@contextlib.contextmanager
def inference_precision(model: nn.Module, name: str) -> Iterator[None]:
    """Run `model`'s forwards inside this context in the concrete precision `name` (see `resolve`)."""
    weights = next(model.parameters()).dtype
    device = next(model.parameters()).device
    if name == "int8":
        if device.type != "cpu":
            raise ValueError(f"dtype int8 runs on a CPU only; the model is on {device}")
        with int8_weights():
            yield
        return
    wanted = CACHE_DTYPES[name]
    if weights != wanted and not (weights == torch.float32 and wanted == torch.bfloat16):
        raise ValueError(f"dtype {name} cannot run a model whose weights are {weights}")
    with torch.autocast(device.type, dtype=wanted) if weights != wanted else contextlib.nullcontext():
        yield


@functools.cache
def training_precision(device_type: str) -> str:
    """What `train.precision=auto` trains in on this machine: bf16 autocast where it is measurably faster than
    fp32, else fp32. CUDA: bf16 where the GPU supports it. CPU: a quick timing (about 0.2 s) of a training-sized
    product with its backward pass in both, since bf16 is many times slower than fp32 on CPUs without bf16
    instructions (AVX2) and faster on those with them (AVX-512 bf16, AMX)."""
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2048, 512, generator=generator)
    weight = torch.randn(512, 512, generator=generator, requires_grad=True)

    def seconds(dtype: torch.dtype) -> float:
        times = []
        for _ in range(5):  # the first round warms up; the fastest of the rest resists other processes' load
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                (inputs @ weight).float().square().mean().backward()
            times.append(time.perf_counter() - started)
        return min(times[1:])

    return "bf16" if seconds(torch.bfloat16) * 1.1 < seconds(torch.float32) else "fp32"
