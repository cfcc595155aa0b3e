"""The bandwidth table of docs/speed.md, measured in one run: GPT-B-sized, random weights, 16x16 tokens.

    .venv/bin/python benchmarks/decode_table.py [REPEATS]            # about 5 minutes on 2 cores
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python benchmarks/decode_table.py   # as an AVX2 CPU

Each row is `argen bench sample --preset GPT-B --random-weights --grid 16 --batch B [--cfg 2] --dtype D`; the
bound is (weights + KV cache read per step) / the machine's read bandwidth, measured once and cached.
"""

import sys

from argen.bench import run_sample_benchmark
from argen.machine import describe, read_bandwidth_gbs

ROWS = [
    (batch, guidance, dtype)
    for batch, guidance in ((1, 1.0), (1, 2.0), (16, 1.0))
    for dtype in ("fp32", "bf16", "int8", "auto")
]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print(f"{describe()}, read bandwidth {read_bandwidth_gbs():.1f} GB/s\n")
    print(
        "| batch | guidance | rows | dtype (taken) | ms/step (min / median) | bound ms/step | bandwidth fraction "
        "| images/s | other load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, guidance, dtype in ROWS:
        r = run_sample_benchmark(
            preset_name="GPT-B",
            random_weights=True,
            batch=batch,
            guidance=guidance,
            grid=16,
            dtype=dtype,
            repeats=repeats,
        )
        print(
            f"| {batch} | {guidance:g} | {r['rows']} | {dtype} ({r['dtype_path']}) | {r['ms_per_step_min']:.1f} / "
            f"{r['ms_per_step_median']:.1f} | {r['bound_ms_per_step']:.1f} | {r['bandwidth_fraction']:.0%} "
            f"({r['bandwidth_fraction_best']:.0%} best) | {r['images_per_s']:.3f} | {r['other_load_max_cores']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
