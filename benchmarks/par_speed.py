"""The PAR speed table of docs/speed.md, measured in one run: one GPT-B-sized model with random weights, 16x16 tokens.

    .venv/bin/python benchmarks/par_speed.py [REPEATS]            # about 6 minutes on 2 cores
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python benchmarks/par_speed.py   # as an AVX2 CPU

Each row is `argen bench sample --preset GPT-B --random-weights --grid 16 --parallel K --batch B [--cfg 2]
--dtype D`; the speed-up is the 1x wall time per batch over the PAR one, within the same dtype, batch and
guidance.
"""

import sys

from argen.bench import run_sample_benchmark
from argen.machine import describe

# "auto" is the default path: its precision may differ between 1x and PAR (more rows per step).
SETTINGS = [(1, 1.0, "auto"), (1, 1.0, "fp32"), (16, 2.0, "auto"), (16, 2.0, "fp32")]
PARALLEL = (1, 4, 16)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"{describe()}, median of {repeats} runs\n")
    print("| batch | guidance | dtype | decoding | steps | ms/step | s/batch | images/s | speed-up (step ratio) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, guidance, dtype in SETTINGS:
        sequential = None
        for parallel in PARALLEL:
            r = run_sample_benchmark(
                preset_name="GPT-B",
                random_weights=True,
                batch=batch,
                guidance=guidance,
                parallel=parallel,
                grid=16,
                dtype=dtype,
                repeats=repeats,
            )
            seconds = r["ms_per_step_median"] * r["steps"] / 1e3
            sequential = sequential or (seconds, r["steps"])
            name = "1x raster" if parallel == 1 else f"PAR-{parallel}x"
            print(
                f"| {batch} | {guidance:g} | {dtype} ({r['dtype_path']}) | {name} | {r['steps']} | "
                f"{r['ms_per_step_median']:.1f} | {seconds:.2f} | {r['images_per_s']:.2f} | "
                f"{sequential[0] / seconds:.2f}x ({sequential[1] / r['steps']:.2f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
