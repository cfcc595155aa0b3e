"""Decode-speed benchmark: time per step against the memory-bandwidth bound of the weights and KV cache.

Per step the model streams every non-embedding weight once (plus a few embedding rows) and reads
the filled part of each layer's KV cache; `bytes_per_step / bandwidth` is the floor a bandwidth-bound
decoder cannot beat, and `bandwidth_fraction` says how close a run comes. Warm-up runs are excluded;
min and median of the timed repeats are reported. Other processes' CPU use is measured during each
run (from /proc/stat and os.times) and a warning is raised when the machine was not idle.

    argen bench sample --preset GPT-B --random-weights --grid 16 --batch 1 --dtype fp32 --json

`argen bench live` times what watching a run costs (`argen serve`'s live display) against the same run unwatched.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from argen.config import GPTConfig, GPT_PRESETS, LayoutConfig, build, preset
from argen.ctf.sample import RefineOptions, refine
from argen.layout import Layout
from argen.live import DISPLAY_BUDGET, generate_live, render_seconds
from argen.machine import BUSY_OTHERS, OtherLoad, describe, read_bandwidth_gbs
from argen.model import KVCache, Transformer
from argen.model.linear import Linear
from argen.pipeline import Pipeline, load
from argen.precision import CACHE_DTYPES, resolve
from argen.sample import SamplingOptions, decode_rows, generate

EMBEDDING_TABLES = ("tok_embeddings.", "cls_embedding.", "spe_tok_embeddings.")
# /proc/stat and os.times count in clock ticks (10 ms): over a 10 ms window one tick reads as a whole core, so the
# load is read over windows of consecutive repeats at least this long.
LOAD_WINDOW_SECONDS = 0.5


def bytes_per_step(model: Transformer, layout: Layout, rows: int, precision: str) -> dict[str, float]:
    """Average bytes read per decode step in a concrete precision: weights once (embedding tables: only the rows
    used; int8 linear weights: one byte each plus a bf16 scale per output channel) + KV cache."""
    int8_linears = (
        {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, Linear)}
        if precision == "int8"
        else set()
    )
    weights = 0
    for name, parameter in model.named_parameters():
        if name.startswith(EMBEDDING_TABLES):
            weights += rows * parameter.shape[-1] * parameter.element_size()
        elif name in int8_linears:
            weights += parameter.numel() + 2 * parameter.shape[0]
        else:
            weights += parameter.numel() * parameter.element_size()
    cache_dtype = CACHE_DTYPES[precision]
    config = model.config
    kv_dim = (config.n_kv_head or config.n_head) * (config.dim // config.n_head)
    element = torch.finfo(cache_dtype).bits // 8
    # Attention reads the filled prefix [0, slot_end) of every layer's keys and values.
    kv_total = sum(2 * config.n_layer * rows * step.slot_end * kv_dim * element for step in layout.steps)
    kv = kv_total / layout.num_steps
    return {"weights": float(weights), "kv_cache": kv, "total": weights + kv}


def _timed(run, device: torch.device, warmup: int, repeats: int) -> tuple[list[float], float | None]:
    """Wall seconds of `repeats` calls of `run` after `warmup` untimed ones, and the busiest other-process load
    seen over windows of at least LOAD_WINDOW_SECONDS (cores; None if unmeasurable: no /proc/stat, or all repeats
    together shorter than a window), warning when the machine was not idle. A shorter final window is not read."""

    def synchronised() -> None:
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        synchronised()
    seconds, loads = [], []
    load = OtherLoad()
    load.start()
    for _ in range(repeats):
        begin = time.perf_counter()
        synchronised()
        seconds.append(time.perf_counter() - begin)
        if load.elapsed() >= LOAD_WINDOW_SECONDS:
            loads.append(load.stop())
            load.start()
    busiest = max((value for value in loads if value is not None), default=None)
    if busiest is not None and busiest > BUSY_OTHERS:
        warnings.warn(
            f"other processes used up to {busiest:.2f} CPU cores during the benchmark; the timings are not trustworthy",
            RuntimeWarning,
            stacklevel=3,
        )
    return seconds, busiest


def linear_path(model: nn.Module) -> str:
    """The product the model's linear layers took in their last forward (see Linear.last_path)."""
    return next(module.last_path for module in model.modules() if isinstance(module, Linear))


def benchmark_sampling(
    model: Transformer,
    layout: Layout,
    batch: int = 1,
    guidance: float = 1.0,
    dtype: str = "auto",
    repeats: int = 5,
    bandwidth_gbs: float | None = None,
    warmup: int = 1,
    seed: int = 0,
    speculative: int = 0,
) -> dict:
    """Time `generate` (sampling at temperature 1) and relate it to the bandwidth bound.

    Returns steps, ms_per_step_min/median, images_per_s, tokens_per_s (median), bytes_per_step,
    bandwidth_fraction (bound / median step time) and bandwidth_fraction_best (bound / min), the
    busiest other-process load seen (cores), the precision and linear product taken, the settings and the
    machine (`argen.machine.describe`). The bandwidth is this machine's measured one unless given. With
    `speculative` W (SJD) it also reports the forward passes per batch and the time per pass.
    """
    if repeats < 1 or batch < 1:
        raise ValueError(f"repeats and batch must be >= 1, got repeats={repeats}, batch={batch}")
    options = SamplingOptions(guidance=guidance, dtype=dtype, speculative=speculative)
    device = next(model.parameters()).device
    labels = torch.arange(batch, device=device) % model.config.num_classes
    rows = batch * (2 if options.guided(layout) else 1)
    precision = resolve(dtype, decode_rows(layout, rows), device)
    cache = KVCache.allocate(model, rows, layout.sequence_length, CACHE_DTYPES[precision], device)
    generator = torch.Generator(device=device).manual_seed(seed)
    measured = bandwidth_gbs is None
    bandwidth_gbs = read_bandwidth_gbs() if measured else bandwidth_gbs

    passes: list[int] = []
    seconds, busiest = _timed(
        lambda: passes.append(
            generate(model, layout, labels, options=options, generator=generator, cache=cache).forward_passes
        ),
        device,
        warmup,
        repeats,
    )
    passes = passes[warmup:]
    steps = layout.num_steps
    traffic = bytes_per_step(model, layout, rows, precision)
    bound_ms = traffic["total"] / (bandwidth_gbs * 1e9) * 1e3
    step_min = min(seconds) / steps * 1e3
    step_median = statistics.median(seconds) / steps * 1e3
    median_seconds = statistics.median(seconds)
    return {
        "steps": steps,
        "forward_passes": statistics.mean(passes),
        "speculative": speculative,
        "ms_per_pass_median": statistics.median(seconds) / statistics.mean(passes) * 1e3,
        "batch": batch,
        "rows": rows,
        "guidance": guidance,
        "dtype": dtype,
        "dtype_path": precision,
        "linear_path": linear_path(model),
        "repeats": repeats,
        "ms_per_step_min": step_min,
        "ms_per_step_median": step_median,
        "seconds_per_batch_median": median_seconds,
        "images_per_s": batch / median_seconds,
        # the spread of the repeats: the slowest and fastest batch, as images/s
        "images_per_s_range": [batch / max(seconds), batch / min(seconds)],
        "tokens_per_s": batch * layout.generated_length / median_seconds,
        "bytes_per_step": traffic["total"],
        "weight_bytes_per_step": traffic["weights"],
        "kv_bytes_per_step": traffic["kv_cache"],
        "bandwidth_gbs": bandwidth_gbs,
        "bandwidth_measured": measured,
        "bound_ms_per_step": bound_ms,
        "bandwidth_fraction": bound_ms / step_median,
        "bandwidth_fraction_best": bound_ms / step_min,
        "other_load_max_cores": busiest,
        **describe(),
    }


def benchmark_refiner(
    refiner,
    grid: tuple[int, ...],
    batch: int = 1,
    dtype: str = "auto",
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict:
    """Time CTF's refiner pass (coarse labels -> fine ids, one forward) for a batch; the seconds do not depend on
    the labels' values, so random coarse labels stand in for the AR's."""
    device = next(refiner.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(refiner.config.vocab_size, (batch, *grid), generator=generator).to(device)
    labels = torch.arange(batch, device=device) % refiner.config.num_classes
    options = RefineOptions(dtype=dtype)
    seconds, busiest = _timed(lambda: refine(refiner, coarse, labels, options), device, warmup, repeats)
    return {"refiner_seconds_per_batch_median": statistics.median(seconds), "refiner_other_load_max_cores": busiest}


def run_sample_benchmark(
    model: str | Path | None = None,
    preset_name: str | None = None,
    random_weights: bool = False,
    batch: int = 1,
    guidance: float | None = None,
    parallel: int = 1,
    grid: int = 16,
    dtype: str = "auto",
    repeats: int = 3,
    bandwidth_gbs: float | None = None,
    overrides: list[str] | None = None,
    refiner: str | Path | None = None,
    speculative: int = 0,
) -> dict:
    """`argen bench sample`: a trained model (its own layout) or a preset with random weights; with a CTF
    `refiner` the refiner pass is timed too and images/s covers both stages. Without `guidance`, a model decodes
    with the guidance it was shipped with (what `argen sample` and the demo use), a preset without guidance."""
    if (model is None) == (preset_name is None):
        raise ValueError("give a model folder, or a preset name with random_weights")
    if refiner is not None and model is None:
        raise ValueError("a refiner needs its model (the coarse AR trained with the refiner's clusters table)")
    refiner_model = None
    if model is not None:
        pipeline = load(model, refiner=refiner)
        network, layout = pipeline.model, pipeline.layout
        refiner_model = pipeline.refinement and pipeline.refinement.refiner
        if guidance is None:
            shipped = pipeline.tuned_sampling.get("guidance", 1.0)
            # Split guidance (Prologue) is timed at its visual tokens' scale: speed depends only on guidance being on.
            guidance = float(shipped["visual"] if isinstance(shipped, dict) else shipped)
    else:
        if not random_weights:
            raise ValueError("a preset is benchmarked with random weights: set random_weights")
        config = build(GPTConfig, base=preset(GPT_PRESETS, preset_name, GPTConfig), overrides=overrides or [])
        order = "region" if parallel > 1 else "raster"
        layout = Layout(LayoutConfig(grid=(grid, grid), order=order, parallel=parallel), config.vocab_size)
        torch.manual_seed(0)
        network = Transformer(config, n_transition=layout.n_transition).eval()
    guidance = 1.0 if guidance is None else guidance
    rows = batch * (2 if SamplingOptions(guidance=guidance).guided(layout) else 1)
    if resolve(dtype, decode_rows(layout, rows), next(network.parameters()).device) == "bf16":
        network = network.to(torch.bfloat16)  # bf16 weights: half the bytes per step (LlamaGen's inference setup)
    result = benchmark_sampling(
        network, layout, batch, guidance, dtype, repeats, bandwidth_gbs, speculative=speculative
    )
    result.update(
        model=str(model) if model else f"{preset_name} (random weights)",
        grid=list(layout.grid),
        parallel=layout.parallel,
    )
    if refiner_model is not None:
        if dtype == "bf16":
            refiner_model = refiner_model.to(torch.bfloat16)
        result.update(benchmark_refiner(refiner_model, layout.grid, batch, dtype, repeats), refiner=str(refiner))
        ar_seconds = result["seconds_per_batch_median"]
        total = ar_seconds + result["refiner_seconds_per_batch_median"]
        # As `argen sample` counts them: the refiner pass is one more step, and in the batch's time.
        result.update(
            ar_images_per_s=result["images_per_s"],
            images_per_s=batch / total,
            ar_seconds_per_batch_median=ar_seconds,
            seconds_per_batch_median=total,
            ar_steps=result["steps"],
            steps=result["steps"] + 1,
            refiner_share=result["refiner_seconds_per_batch_median"] / total,
        )
    return result


def benchmark_live(
    pipeline: Pipeline,
    batch: int = 1,
    guidance: float = 1.0,
    repeats: int = 5,
    budget: float = DISPLAY_BUDGET,
    seed: int = 0,
) -> dict:
    """Seconds per batch of a run watched as `argen serve` watches it (a Frame after every step made into the page's
    JSON, partial images within `budget`), of the same run unwatched, and of one watched with every step rendered;
    each ends with the finished images decoded (the replay frames after them are not counted). The three
    alternate, `repeats` times each, after one warm-up, with the same seed (the same tokens, so the same work).
    `overhead` = watched / unwatched - 1 (fastest of each)."""
    if repeats < 1 or batch < 1:
        raise ValueError(f"repeats and batch must be >= 1, got repeats={repeats}, batch={batch}")
    labels = torch.arange(batch) % pipeline.config.model.num_classes
    render_cost = render_seconds(pipeline, batch)  # as `argen serve` measures it at start
    rendered, finished = [], []

    def sink(frame) -> None:
        page = frame.to_json()
        json.dumps(page)
        if frame.stage == "done":  # the replay frames that follow cost the run nothing
            finished.append(time.perf_counter())
        elif frame.stage != "replay":
            rendered.append(page["images"] is not None)

    def unwatched() -> None:
        generator = torch.Generator(pipeline.device).manual_seed(seed)
        pipeline.decode(pipeline.generate_ids(labels, generator, guidance=guidance).visual)

    def watched(share: float) -> None:
        rendered.clear()
        finished.clear()
        generate_live(
            pipeline,
            labels,
            sink,
            torch.Generator(pipeline.device).manual_seed(seed),
            budget=share,
            render_cost=render_cost,
            guidance=guidance,
        )

    runs = {"unwatched": unwatched, "watched": lambda: watched(budget), "every_step": lambda: watched(math.inf)}
    seconds = {name: [] for name in runs}
    for repeat in range(repeats + 1):
        for name, run in runs.items():
            begin = time.perf_counter()
            run()
            if repeat:  # the first round warms up
                seconds[name].append((finished[0] if name != "unwatched" else time.perf_counter()) - begin)
            if name == "watched":
                renders = sum(rendered)
    # Other jobs only add time, so the minimum is the steadiest figure on a shared machine; the median is kept too.
    best = {name: min(values) for name, values in seconds.items()}
    median = {name: statistics.median(values) for name, values in seconds.items()}
    steps = pipeline.forward_passes
    return {
        "steps": steps,
        "batch": batch,
        "guidance": guidance,
        "repeats": repeats,
        "budget": budget,
        "threads": torch.get_num_threads(),
        **{f"{name}_ms_per_step_min": 1000 * value / steps for name, value in best.items()},
        "render_ms": 1000 * render_cost,
        "partial_renders": renders,
        "overhead": best["watched"] / best["unwatched"] - 1,
        "overhead_median": median["watched"] / median["unwatched"] - 1,
        "every_step_overhead": best["every_step"] / best["unwatched"] - 1,
    }


def run_live_benchmark(
    model: str | Path,
    tokenizer: str | Path | None = None,
    refiner: str | Path | None = None,
    batch: int = 1,
    guidance: float = 1.0,
    repeats: int = 5,
    budget: float = DISPLAY_BUDGET,
) -> dict:
    """`argen bench live`: benchmark_live of the pipeline of an AR checkpoint (its tokenizer, CTF's refiner)."""
    pipeline = load(model, tokenizer=tokenizer, refiner=refiner)
    return {**benchmark_live(pipeline, batch, guidance, repeats, budget), "model": str(model)}
