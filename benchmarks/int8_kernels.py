"""Two int8 products for decoding, timed and scored (docs/speed.md, "The per-step overhead"): the weight-only kernel
argen uses (`aten._weight_int8pack_mm`, bf16 activations) and PyTorch's dynamic int8 kernel
(`quantized::linear_dynamic`, int8 activations with one scale per call).

    .venv/bin/python benchmarks/int8_kernels.py        # about a minute on 2 cores

Speed: the sum of GPT-B's linear products (12 layers + head, 97.6 M weights, random values) at 1, 4 and 16 rows,
best of 7. Quality: teacher-forced logits of the shipped 1x (`checkpoints/fmnist64/ar-1x`) on 10 of its own
samples, against fp32: mean KL and argmax agreement, the dynamic kernel with one activation scale for all 2,570
rows and with one per block of 16 rows.
"""

import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

import argen
from argen.machine import describe
from argen.model.linear import Linear, quantize_int8

GPT_B = [(2304, 768), (768, 768), (2048, 768), (2048, 768), (768, 2048)] * 12 + [(16384, 768)]
SHIPPED_1X = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64" / "ar-1x"


def weight_only(weight: torch.Tensor):
    values, scales = quantize_int8(weight)
    scales = scales.to(torch.bfloat16)
    return lambda x: torch._weight_int8pack_mm(x.to(torch.bfloat16), values, scales).float()


def dynamic(weight: torch.Tensor, block_rows: int | None = None):
    values, scales = quantize_int8(weight)
    zero = torch.zeros(scales.shape, dtype=torch.long)
    packed = torch.ops.quantized.linear_prepack(
        torch._make_per_channel_quantized_tensor(values, scales.double(), zero, 0), None
    )
    reduce_range = not torch.cpu._is_vnni_supported()  # 7-bit activations where 16-bit pair sums could overflow

    def product(x: torch.Tensor) -> torch.Tensor:
        blocks = x.split(block_rows) if block_rows else (x,)
        return torch.cat([torch.ops.quantized.linear_dynamic(block, packed, reduce_range) for block in blocks])

    return product


def milliseconds(products, rows: int) -> float:
    inputs = {width: torch.randn(rows, width) for _, width in GPT_B}
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for (_, width), product in zip(GPT_B, products):
            product(inputs[width])
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


@contextmanager
def every_linear(make):
    """Inside, every argen Linear multiplies with the product `make(weight)` builds for it."""
    made = {}
    original = Linear.forward

    def forward(self, x):
        if id(self) not in made:
            made[id(self)] = make(self.weight.detach().float())
        rows = x.reshape(-1, self.in_features).float()
        return made[id(self)](rows).reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    Linear.forward = forward
    try:
        yield
    finally:
        Linear.forward = original


def main() -> None:
    print(f"{describe()}\n")
    weights = [torch.randn(out_features, in_features) * 0.02 for out_features, in_features in GPT_B]
    kernels = {"weight-only (argen)": weight_only, "dynamic": dynamic}
    print("| kernel | 1 row | 4 rows | 16 rows |\n|---|---|---|---|")
    for name, make in kernels.items():
        products = [make(weight) for weight in weights]
        print(f"| {name} | " + " | ".join(f"{milliseconds(products, rows):.1f} ms" for rows in (1, 4, 16)) + " |")

    pipeline = argen.load(SHIPPED_1X)
    model, layout = pipeline.model, pipeline.layout
    labels = torch.arange(10)
    visual = pipeline.generate_ids(labels, torch.Generator().manual_seed(0), dtype="fp32").visual
    inputs = layout.training_tensors(visual, labels)
    rope = layout.rope(model.config)

    def logits() -> torch.Tensor:
        with torch.no_grad():
            return model(inputs["ids"], inputs["kinds"], rope, inputs["mask"])

    exact = logits()
    print("\n| product | KL to fp32 (nats) | argmax agreement |\n|---|---|---|")
    variants = {
        "weight-only (argen)": weight_only,
        "dynamic, one scale for all rows": dynamic,
        "dynamic, one scale per 16 rows": lambda weight: dynamic(weight, 16),
    }
    for name, make in variants.items():
        with every_linear(make):
            quantised = logits()
        kl = F.kl_div(quantised.log_softmax(-1), exact.log_softmax(-1), log_target=True, reduction="none").sum(-1)
        agree = (quantised.argmax(-1) == exact.argmax(-1)).float().mean()
        print(f"| {name} | {float(kl.mean()):.1e} | {float(agree):.1%} |")


if __name__ == "__main__":
    main()
