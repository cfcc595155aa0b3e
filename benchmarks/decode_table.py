"""The decode-speed table of docs/speed.md, measured in one run: GPT-B-sized, random weights, 16x16 tokens.

    .venv/bin/python benchmarks/decode_table.py            # about 5 minutes on 2 cores

Each row is `argen bench sample --preset GPT-B --random-weights --grid 16 --batch B [--cfg 2] --dtype D`;
the bound is (weights + KV cache read per step) / 30 GB/s.
"""

import sys

import torch

from argen.bench import run_sample_benchmark

ROWS = [(1, 1.0, "fp32"), (1, 2.0, "fp32"), (16, 1.0, "fp32"), (1, 1.0, "bf16"), (1, 2.0, "bf16"), (16, 1.0, "bf16")]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| batch | guidance | rows | dtype | ms/step (min / median) | bound ms/step | bandwidth fraction | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for batch, guidance, dtype in ROWS:
        r = run_sample_benchmark(preset_name="GPT-B", random_weights=True, batch=batch, guidance=guidance,
                                 grid=16, dtype=dtype, repeats=repeats)
        print(f"| {batch} | {guidance:g} | {r['rows']} | {dtype} | {r['ms_per_step_min']:.1f} / "
              f"{r['ms_per_step_median']:.1f} | {r['bound_ms_per_step']:.1f} | {r['bandwidth_fraction']:.0%} "
              f"({r['bandwidth_fraction_best']:.0%} best) | {r['images_per_s']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
