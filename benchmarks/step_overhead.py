"""What a decode step costs beside its weight products, measured in one run (docs/speed.md, "Per-step overhead").

    .venv/bin/python benchmarks/step_overhead.py [REPEATS]        # about 3 minutes on 2 cores

GPT-B with random weights, 16x16 tokens, batch 1, no guidance, each row the median of REPEATS decodes (default 3)
after a warm-up. A row is decoded twice: as it is, then with every `Linear` answering from a preallocated output
without multiplying; the second time is the step's overhead (norms, RoPE, attention, KV writes, casts, sampling,
Python), the difference the weight products. `operators/step` counts the ATen operators one step dispatches
(a count, so the CPU does not matter).
"""

import statistics
import sys
import time
from collections import Counter
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from argen.config import GPT_PRESETS, GPTConfig, LayoutConfig, preset
from argen.layout import Layout
from argen.machine import describe
from argen.model import Transformer
from argen.model.linear import Linear
from argen.precision import resolve
from argen.sample import SamplingOptions, decode_rows, generate

SETTINGS = [(1, "fp32"), (1, "auto"), (4, "auto"), (16, "auto")]  # (PAR tokens per step, dtype)


class _Counting(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.operators = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.operators[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def products_skipped():
    """Every Linear returns a zero output kept from its first call instead of multiplying."""
    outputs: dict[tuple, torch.Tensor] = {}
    original = Linear.forward

    def skipped(self, x):
        key = (id(self), tuple(x.shape), x.dtype)
        if key not in outputs:
            outputs[key] = torch.zeros(*x.shape[:-1], self.out_features, dtype=x.dtype)
        return outputs[key]

    Linear.forward = skipped
    try:
        yield
    finally:
        Linear.forward = original


def decode_seconds(model, layout, options, repeats: int) -> float:
    labels = torch.tensor([3])
    generate(model, layout, labels, generator=torch.Generator().manual_seed(0), options=options)
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        generate(model, layout, labels, generator=torch.Generator().manual_seed(seed), options=options)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    config = preset(GPT_PRESETS, "GPT-B", GPTConfig)
    print(f"{describe()}, median of {repeats} decodes\n")
    print("| decoding | dtype | steps | ms/step | products ms/step | overhead ms/step | operators/step |")
    print("|---|---|---|---|---|---|---|")
    for parallel, dtype in SETTINGS:
        layout = Layout(
            LayoutConfig(grid=(16, 16), order="region" if parallel > 1 else "raster", parallel=parallel),
            config.vocab_size,
        )
        torch.manual_seed(0)
        model = Transformer(config, n_transition=layout.n_transition).eval()
        precision = resolve(dtype, decode_rows(layout, 1), torch.device("cpu"))
        if precision == "bf16":
            model = model.to(torch.bfloat16)
        options = SamplingOptions(dtype=dtype)
        whole = decode_seconds(model, layout, options, repeats) / layout.num_steps
        with products_skipped():
            rest = decode_seconds(model, layout, options, repeats) / layout.num_steps
        with _Counting() as counting:
            generate(model, layout, torch.tensor([3]), generator=torch.Generator().manual_seed(0), options=options)
        operators = sum(counting.operators.values()) / layout.num_steps
        name = "1x raster" if parallel == 1 else f"PAR-{parallel}x"
        print(
            f"| {name} | {dtype} ({precision}) | {layout.num_steps} | {1e3 * whole:.1f} | "
            f"{1e3 * (whole - rest):.1f} | {1e3 * rest:.1f} | {operators:.0f} |",
            flush=True,
        )
        if "--operators" in sys.argv:
            print(dict(counting.operators.most_common(25)))


if __name__ == "__main__":
    main()
