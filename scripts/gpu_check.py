"""One command that proves argen's GPU path on a CUDA machine, or its CPU fallback elsewhere.

    PYTHONPATH=src python3 scripts/gpu_check.py --out gpu_check.json      (scripts/gpu_check.sh wraps it)

Needs only an installed PyTorch (CUDA build on a GPU machine) and the packages argen imports; no network, no pip.
Prints one JSON object (also written to --out) and exits 1 when a correctness check fails:
  (a) CUDA and CPU logits of a small random GPT and VQ agree (tolerances in the JSON), greedy ids are equal;
  (b) compiled decoding (CUDA graphs on a GPU) gives the eager ids, plainly and speculatively; speculative Jacobi
      decoding gives greedy's ids in fewer passes;
  (c) training steps of a GPT on random tokens, bf16 autocast, eager and compiled: the loss falls; tokens/s,
      peak memory and model FLOPs utilisation (against --peak-tflops);
  (d) decode ms/step at batch 1 and 64, with and without guidance, eager and compiled, and PAR-4x / PAR-16x
      speed-ups over 1x;
  (e) DDP training through `torchrun -m argen.cli train` on every visible GPU (2 gloo ranks on CPU);
  (f) VQ encode + decode images/s.
Without CUDA the same checks run at tiny sizes on the CPU and the CUDA-only parts are reported as skipped, so a
test can run this script and it cannot rot. Sizes on CUDA: GPT-B and GPT-XL, VQ-16 at 256 px.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from argen.config import GPT_PRESETS, VQ_PRESETS, GPTConfig, LayoutConfig, VQConfig, preset
from argen.data.token_cache import write_token_cache
from argen.layout import Layout
from argen.model.transformer import Transformer
from argen.sample import SamplingOptions, generate
from argen.teacher_forcing import TeacherForcing, cross_entropy
from argen.tokenizer.vq import VQModel

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
# Tiny stand-ins on the CPU: the same code paths in seconds.
SMALL_GPT = dict(n_layer=2, n_head=2, dim=64, multiple_of=32, num_classes=10, vocab_size=256)
SMALL_VQ = dict(
    image_size=32,
    in_channels=3,
    ch=32,
    ch_mult=(1, 2, 2),
    num_res_blocks=1,
    z_channels=64,
    codebook_size=256,
    codebook_dim=8,
)


def gpt(name: str, parallel: int = 1, grid: int = 16) -> tuple[Transformer, Layout]:
    """A random-weight GPT of a preset (or the tiny CPU stand-in) and its 1x or PAR layout."""
    config = preset(GPT_PRESETS, name, GPTConfig) if CUDA else GPTConfig(**SMALL_GPT)
    grid = grid if CUDA else 8
    layout = Layout(
        LayoutConfig(grid=(grid, grid), order="region" if parallel > 1 else "raster", parallel=parallel),
        config.vocab_size,
    )
    torch.manual_seed(0)
    return Transformer(config, n_transition=layout.n_transition).eval(), layout


def timed(function: Callable[[], Any], repeats: int = 3) -> float:
    """Median seconds of `function` after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        if CUDA:
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if CUDA:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def check_devices_agree() -> dict[str, Any]:
    """(a) The same weights on CUDA and on the CPU: logits close, greedy ids equal."""
    if not CUDA:
        return {"skipped": "no CUDA device"}
    model, layout = gpt("GPT-B")
    labels = torch.arange(4)
    forcing = TeacherForcing(layout, model.config)
    tensors = layout.training_tensors(torch.randint(0, model.config.vocab_size, (4, *layout.grid)), labels)
    cpu_logits = forcing.logits(model, tensors["ids"], tensors["kinds"])
    greedy = SamplingOptions(greedy=True)
    cpu_ids = generate(model, layout, labels, options=greedy).visual
    model.to(DEVICE)
    gpu_logits = forcing.logits(model, tensors["ids"].to(DEVICE), tensors["kinds"]).cpu()
    gpu_ids = generate(model, layout, labels, options=greedy).visual.cpu()
    vq = VQModel(preset(VQ_PRESETS, "VQ-16", VQConfig)).eval()
    images = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        cpu_codes = vq.encode(images)
        cpu_pixels = vq.decode(cpu_codes)
        vq.to(DEVICE)
        gpu_codes = vq.encode(images.to(DEVICE)).cpu()
        gpu_pixels = vq.decode(cpu_codes.to(DEVICE)).cpu()
    tolerance = 2e-3  # TF32 off by default for these matmuls; reductions differ in order
    logits_error = float((gpu_logits - cpu_logits).abs().max())
    pixels_error = float((gpu_pixels - cpu_pixels).abs().max())
    return {
        "gpt_logits_max_abs_diff": logits_error,
        "vq_pixels_max_abs_diff": pixels_error,
        "tolerance": tolerance,
        "greedy_ids_equal": bool(torch.equal(cpu_ids, gpu_ids)),
        "vq_codes_agree": float((gpu_codes == cpu_codes).float().mean()),
        "ok": logits_error < tolerance and pixels_error < tolerance and bool(torch.equal(cpu_ids, gpu_ids)),
    }


def check_compiled_decoding() -> dict[str, Any]:
    """(b) The compiled decode step (CUDA graphs on a GPU) gives the eager ids, plainly and with speculative
    decoding's windows."""
    model, layout = gpt("GPT-B", parallel=4)
    model.to(DEVICE)
    labels = torch.arange(4, device=DEVICE)
    equal = {}
    for window in (0, 8):
        options = SamplingOptions(greedy=True, speculative=window)
        eager = generate(model, layout, labels, options=options).visual
        compiled = generate(model, layout, labels, options=dataclasses.replace(options, compile=True)).visual
        equal["speculative" if window else "plain"] = bool(torch.equal(eager, compiled))
    return {"layout": layout.describe(), "ids_equal": equal, "ok": all(equal.values())}


def check_speculative_decoding() -> dict[str, Any]:
    """(b2) Speculative Jacobi decoding on the device: greedy ids equal plain greedy ids, in fewer forward passes,
    guided, on PAR-4x; and the time per image against plain decoding at batch 1."""
    model, layout = gpt("GPT-B", parallel=4)
    model.to(DEVICE)
    labels = torch.arange(2, device=DEVICE)
    options = SamplingOptions(greedy=True, guidance=2.0)
    plain = generate(model, layout, labels, options=options)
    fast = generate(model, layout, labels, options=dataclasses.replace(options, speculative=8))
    one = torch.zeros(1, dtype=torch.long, device=DEVICE)
    sampled = SamplingOptions(guidance=2.0)
    seconds = {
        window: timed(
            lambda window=window: generate(model, layout, one, options=dataclasses.replace(sampled, speculative=window))
        )
        for window in (0, 8)
    }
    equal = bool(torch.equal(plain.visual, fast.visual))
    return {
        "layout": layout.describe(),
        "window": 8,
        "ids_equal": equal,
        "passes": fast.forward_passes,
        "steps": layout.num_steps,
        "seconds_per_image": {str(w): t for w, t in seconds.items()},
        "ok": equal and fast.forward_passes <= layout.num_steps,
    }


def training_steps(compiled: bool, steps: int) -> dict[str, Any]:
    """(c) `steps` AdamW steps of bf16 autocast teacher forcing on random tokens (one fixed batch: the loss must
    fall as the model memorises it)."""
    model, layout = gpt("GPT-B")
    model.train().to(DEVICE)
    batch = 32 if CUDA else 8
    forcing = TeacherForcing(layout, model.config)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, *layout.grid), generator=generator)
    tensors = layout.training_tensors(ids, torch.randint(0, 10, (batch,), generator=generator))
    tensors = {key: value.to(DEVICE) for key, value in tensors.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=CUDA)
    forward = torch.compile(model) if compiled else model

    def step() -> float:
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            loss, _, _ = cross_entropy(forcing.logits(forward, tensors["ids"], tensors["kinds"]), tensors["targets"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    first = step()
    losses = [step()]  # the first two steps compile (forward, then backward): not timed
    if CUDA:
        torch.cuda.synchronize()
    started = time.perf_counter()
    losses += [step() for _ in range(steps - 2)]
    if CUDA:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = batch * layout.sequence_length * (steps - 2)
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "compiled": compiled,
        "batch": batch,
        "first_loss": first,
        "last_loss": losses[-1],
        "tokens_per_s": tokens / seconds,
        "flops_per_s": 6 * parameters * tokens / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if CUDA else None,
        "ok": losses[-1] < first,
    }


def decode_speed(name: str) -> list[dict[str, Any]]:
    """(d) ms per decode step and images/s of one preset: 1x, PAR-4x and PAR-16x; batch 1 and 64; guidance 1 and
    2; eager and compiled (compiled on CUDA only)."""
    rows = []
    for parallel in (1, 4, 16):
        model, layout = gpt(name, parallel)
        model.to(DEVICE)
        for batch in (1, 64) if CUDA else (1, 4):
            for guidance in (1.0, 2.0):
                for compiled in (False, True) if CUDA else (False,):
                    options = SamplingOptions(guidance=guidance, compile=compiled, dtype="bf16" if CUDA else "fp32")
                    labels = torch.arange(batch, device=DEVICE) % model.config.num_classes
                    seconds = timed(lambda: generate(model, layout, labels, options=options), repeats=2)
                    rows.append(
                        {
                            "model": name,
                            "parallel": parallel,
                            "steps": layout.num_steps,
                            "batch": batch,
                            "guidance": guidance,
                            "compiled": compiled,
                            "ms_per_step": 1000 * seconds / layout.num_steps,
                            "images_per_s": batch / seconds,
                        }
                    )
    for row in rows:  # speed-up over 1x at the same batch, guidance and compilation
        base = next(
            r for r in rows if r["parallel"] == 1 and all(r[k] == row[k] for k in ("batch", "guidance", "compiled"))
        )
        row["speedup_over_1x"] = row["images_per_s"] / base["images_per_s"]
    return rows


def check_ddp(work: Path) -> dict[str, Any]:
    """(e) A few steps of `argen train` under torchrun: every GPU (NCCL), or 2 gloo ranks on the CPU."""
    ranks = torch.cuda.device_count() if CUDA else 2
    generator = torch.Generator().manual_seed(0)

    class RandomTokens:  # what write_token_cache reads: a dataset of batches
        def __len__(self) -> int:
            return 256

        def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"images": indices, "labels": indices % 10}

    grid = 16 if CUDA else 8
    write_token_cache(
        lambda indices: {"ids": torch.randint(0, 1024, (len(indices), grid, grid), generator=generator)},
        RandomTokens(),
        work / "cache",
        {"codebook_size": 1024, "class_names": []},
        progress=False,
    )
    model = [] if CUDA else ["model.dim=64", "model.n_layer=2", "model.n_head=2", "model.multiple_of=32"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={ranks}",
        "-m",
        "argen.cli",
        "train",
        "--preset",
        "GPT-B" if CUDA else "GPT-T",
        "--cache",
        str(work / "cache"),
        "--out",
        str(work / "ddp"),
        "train.steps=5",
        "train.batch_size=32",
        "train.log_every=1",
        f"train.precision={'bf16' if CUDA else 'fp32'}",
        *model,
    ]
    environment = {
        **os.environ,
        "ARGEN_NO_PROGRESS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    started = time.perf_counter()
    run = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    log = work / "ddp" / "log.jsonl"
    losses = [json.loads(line)["model_loss"] for line in log.read_text().splitlines()] if log.is_file() else []
    return {
        "ranks": ranks,
        "backend": "nccl" if CUDA else "gloo",
        "seconds": time.perf_counter() - started,
        "losses": losses,
        "ok": run.returncode == 0 and len(losses) == 5,
        **({} if run.returncode == 0 else {"stderr_tail": run.stderr[-2000:]}),
    }


def vq_speed() -> dict[str, Any]:
    """(f) VQ encode + decode images/s (VQ-16 at 256 px on CUDA, bf16 autocast there)."""
    config = preset(VQ_PRESETS, "VQ-16", VQConfig) if CUDA else VQConfig(**SMALL_VQ)
    model = VQModel(config).eval().to(DEVICE)
    batch = 32 if CUDA else 4
    images = torch.rand(batch, config.in_channels, config.image_size, config.image_size, device=DEVICE) * 2 - 1

    def round_trip() -> None:
        with torch.no_grad(), torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=CUDA):
            model.decode(model.encode(images))

    return {"image_size": config.image_size, "batch": batch, "images_per_s": batch / timed(round_trip)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak for MFU (H100/H200 SXM: 989)"
    )
    parser.add_argument("--train-steps", type=int, default=50)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # (a) compares CUDA with the CPU in fp32
    started = time.perf_counter()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if CUDA else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    report["devices_agree"] = check_devices_agree()
    report["compiled_decoding"] = check_compiled_decoding()
    report["speculative_decoding"] = check_speculative_decoding()
    steps = args.train_steps if CUDA else 8
    report["training"] = [training_steps(compiled, steps) for compiled in (False, True)]
    for run in report["training"]:
        run["mfu"] = run["flops_per_s"] / (args.peak_tflops * 1e12) if CUDA else None
    report["decode"] = decode_speed("GPT-B") + (decode_speed("GPT-XL") if CUDA else [])
    with tempfile.TemporaryDirectory() as work:
        report["ddp"] = check_ddp(Path(work))
    report["vq"] = vq_speed()
    names = ("devices_agree", "compiled_decoding", "speculative_decoding", "ddp")
    checks = [report[name] for name in names] + report["training"]
    failed = [
        name for name, check in zip((*names, "training_eager", "training_compiled"), checks) if check.get("ok") is False
    ]
    report.update(failed=failed, seconds=time.perf_counter() - started)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
