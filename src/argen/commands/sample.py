"""`argen sample`: images (PNG grid + ADM .npz), videos (GIF, PNG strip, .npz) or token ids, on one process or
shared by torchrun ranks (argen.sampling_run); Prologue's fixed-prologue rows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from argen.commands.arguments import output_file, output_folder, positive
from argen.config import DECODE_PRECISIONS

# The CTF refiner pass's defaults; a --refine-* option away from them needs --refiner.
REFINE_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "guidance": 1.0}


def add(commands: Any) -> None:
    sample = commands.add_parser(
        "sample", help="sample images (PNG grid + ADM .npz), videos (GIF, PNG strip, .npz) or token ids"
    )
    sample.add_argument("--model", required=True, type=Path, help="AR checkpoint or pipeline directory")
    sample.add_argument("--tokenizer", type=Path, help="tokenizer checkpoint (else the one the model names)")
    sample.add_argument("--classes", help="comma-separated class ids, e.g. 3,7 (default: every class)")
    sample.add_argument(
        "--count",
        type=int,
        help="images, cycling through --classes (default: one per listed "
        "class, or 10); with --fixed-prologue, the rows (default 10)",
    )
    sample.add_argument("--batch", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--parallel",
        type=int,
        default=0,
        help="tokens per step the model must decode (PAR's k; 0 = the model's own layout)",
    )
    sample.add_argument("--greedy", action="store_true", help="argmax decoding")
    sample.add_argument(
        "--temperature", type=float, help="sampling temperature (default: the model's recorded setting, else 1)"
    )
    sample.add_argument("--top-k", type=int, default=0)
    sample.add_argument("--top-p", type=float, default=1.0)
    sample.add_argument(
        "--cfg",
        type=float,
        help="classifier-free guidance scale, 1 = off (default: the guidance the model records, chosen on its "
        "validation split, else 1; any guidance flag replaces all of the recorded guidance)",
    )
    sample.add_argument(
        "--cfg-schedule",
        choices=["constant", "linear", "cosine"],
        help="ramp of the guidance over a segment's tokens, from 1 to --cfg (default: constant)",
    )
    sample.add_argument(
        "--cfg-power",
        type=float,
        help="the ramp's power p: cosine is "
        "1 + (s - 1)(1 - cos(pi t^p)) / 2 (Prologue's visual ramp: p 0.2-0.25) (default: 1)",
    )
    sample.add_argument(
        "--prologue-cfg",
        type=float,
        help="Prologue: constant guidance on the prologue tokens "
        "(--cfg, --cfg-schedule and --cfg-power then apply to the visual tokens; the paper: < 1)",
    )
    sample.add_argument("--prologue-temperature", type=float, help="Prologue: temperature of the prologue tokens")
    sample.add_argument(
        "--fixed-prologue",
        type=Path,
        help="Prologue: a token cache with prologue ids; write a "
        "grid whose rows keep the prologue of the cache's first --count images and resample only "
        "the visual tokens (--columns - 1 samples per row)",
    )
    sample.add_argument(
        "--dtype",
        default="auto",
        choices=DECODE_PRECISIONS,
        help="decode precision; auto = the fastest on this CPU (docs/speed.md)",
    )
    sample.add_argument(
        "--speculative",
        type=int,
        default=0,
        metavar="W",
        help="speculative Jacobi decoding over "
        "windows of W steps: fewer forward passes, the same distribution (0 = off; docs/speed.md)",
    )
    sample.add_argument("--ema", action="store_true", help="use the EMA weights")
    sample.add_argument("--columns", type=int, default=10)
    sample.add_argument("--fps", type=float, default=4.0, help="frames per second of video GIFs")
    sample.add_argument("--out", type=output_folder, default="runs/samples")
    sample.add_argument("--save-ids", type=output_file, help="write the ids (grid order) to this JSON file")
    sample.add_argument("--refiner", type=Path, help="CTF refiner checkpoint (for a model trained on coarse labels)")
    sample.add_argument(
        "--refine-temperature", type=float, default=REFINE_DEFAULTS["temperature"], help="CTF refiner pass temperature"
    )
    sample.add_argument(
        "--refine-top-k", type=int, default=REFINE_DEFAULTS["top_k"], help="CTF refiner pass top-k (0 = all codes)"
    )
    sample.add_argument("--refine-top-p", type=float, default=REFINE_DEFAULTS["top_p"])
    sample.add_argument(
        "--refine-cfg", type=float, default=REFINE_DEFAULTS["guidance"], help="CTF refiner guidance scale (1 = off)"
    )
    sample.add_argument(
        "--refine-restrict",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample only codes of each position's cluster (default: as the refiner was trained)",
    )
    sample.set_defaults(run=run)


def _classes(text: str | None) -> list[int] | None:
    try:
        classes = [int(c) for c in text.split(",") if c.strip()] if text else None
    except ValueError as error:
        raise ValueError(f"--classes must be comma-separated integers, got {text!r}") from error
    if classes == []:
        raise ValueError("--classes lists no class")
    return classes


def _refine_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The refiner pass's options (CTF), or None without --refiner; --greedy and --dtype apply to both stages."""
    options = {
        "temperature": args.refine_temperature,
        "top_k": args.refine_top_k,
        "top_p": args.refine_top_p,
        "guidance": args.refine_cfg,
    }
    if args.refine_restrict is not None:
        options["restrict_to_cluster"] = args.refine_restrict
    if args.refiner is None:
        if options != REFINE_DEFAULTS:
            raise ValueError("--refine-* options set the CTF refiner pass; they need --refiner DIR")
        return None
    return options


def run(args: argparse.Namespace) -> int:
    from argen.io.run_folder import own_folder
    from argen.sample import SamplingOptions
    from argen import distributed

    positive(count=args.count, batch=args.batch, columns=args.columns)
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    classes = _classes(args.classes)
    if distributed.under_torchrun() and args.fixed_prologue:
        raise ValueError("--fixed-prologue runs in one process; start argen sample without torchrun")
    given = {
        "temperature": args.temperature,
        "guidance": args.cfg,
        "guidance_schedule": args.cfg_schedule,
        "guidance_power": args.cfg_power,
    }
    options = SamplingOptions.split_prologue(
        {
            "top_k": args.top_k,
            "top_p": args.top_p,
            "greedy": args.greedy,
            "dtype": args.dtype,
            "speculative": args.speculative,
            **{name: value for name, value in given.items() if value is not None},
        },
        guidance=args.prologue_cfg,
        temperature=args.prologue_temperature,
    )
    # What the command line leaves unset comes from the model's recorded settings, group by group.
    unset = {
        "guidance": all(flag is None for flag in (args.cfg, args.cfg_schedule, args.cfg_power, args.prologue_cfg)),
        "temperature": args.temperature is None and args.prologue_temperature is None,
    }
    SamplingOptions(**options)  # bad values fail here, before a model is loaded
    refine = _refine_options(args)
    # One process samples on the CPU; torchrun ranks on their GPU when there is one.
    context = distributed.setup(None if distributed.under_torchrun() else "cpu")
    try:
        with own_folder(args.out, "sample"):
            return _sample(args, classes, options, unset, refine, context)
    finally:
        distributed.teardown(context)


def _sample(
    args: argparse.Namespace,
    classes: list[int] | None,
    options: dict[str, Any],
    unset: dict[str, bool],
    refine: dict[str, Any] | None,
    context: Any,
) -> int:
    import torch

    from argen.data.token_cache import TokenDataset
    from argen.io.checkpoint import save_json
    from argen.io.images import save_grid
    from argen.pipeline import load
    from argen.sample import DEFAULT_SETTINGS, recorded_settings
    from argen.sampling_run import PREVIEW_SAMPLES, sample_to_npz

    pipeline = load(args.model, context.device, tokenizer=args.tokenizer, ema=args.ema, refiner=args.refiner)
    layout = pipeline.layout
    recorded = recorded_settings(pipeline.tuned_sampling, **unset)
    if recorded and context.is_main:
        print(f"sampling with the model's recorded settings: {recorded} (flags override them)")
    options = {**DEFAULT_SETTINGS, **recorded, **options}
    if args.fixed_prologue:
        if args.columns < 2:
            raise ValueError("--fixed-prologue needs --columns >= 2 (the cache image, then samples)")
        generator = torch.Generator(pipeline.device).manual_seed(args.seed)
        images = pipeline.fixed_prologue_rows(
            TokenDataset(args.fixed_prologue), args.count or 10, args.columns - 1, generator, **options
        )
        grid = save_grid(images, args.out / "fixed-prologue.png", columns=args.columns, scale=2)
        print(f"fixed-prologue resampling (first column: the cache image, then samples with its prologue): {grid}")
        return 0
    if args.parallel and args.parallel != layout.parallel:
        # The layout is part of what a model learned (PAR's k - 1 transition embeddings, its attention groups).
        raise ValueError(
            f"--parallel {args.parallel}: {args.model} was trained for {layout.parallel} token(s) per "
            f"step ({layout.describe()}); train or convert a model with layout.parallel={args.parallel}"
        )
    if not args.save_ids and pipeline.tokenizer is None:
        if pipeline.coarse and pipeline.refinement is None:
            raise ValueError(
                f"{args.model} predicts CTF coarse labels: pass --refiner DIR to decode images, or "
                f"--save-ids FILE for the coarse labels"
            )
        raise ValueError("the model has no tokenizer to decode images; pass --tokenizer DIR or --save-ids FILE")
    classes = classes or list(range(pipeline.config.model.num_classes))
    count = args.count or (len(classes) if args.classes else 10)
    labels = [classes[i % len(classes)] for i in range(count)]
    if context.is_main:
        print(f"decoding: {layout.describe()}")
    run = sample_to_npz(
        pipeline,
        labels,
        args.batch,
        args.seed,
        args.out,
        context,
        refine,
        {"ema": args.ema},
        args.columns,
        args.fps,
        ids=args.save_ids,
        **options,
    )
    if run is None:  # not rank 0
        return 0
    # CTF counts its refiner pass as one more step (the paper's "256+1").
    ctf = (
        {}
        if refine is None
        else {
            "refiner": str(args.refiner),
            "ar_steps": layout.num_steps,
            "refine": {"restrict_to_cluster": pipeline.refinement.config.refiner.restrict_to_cluster, **refine},
        }
    )
    # Images per second of the samples this run made (a resumed run skips the parts an earlier one finished).
    speed = run.made / run.seconds if run.seconds else None
    batches = -(-run.made // args.batch)
    save_json(
        args.out / "sampling.json",
        {
            "model": str(args.model),
            "images": len(labels),
            "steps": pipeline.forward_passes,
            "parallel": layout.parallel,
            "order": layout.config.order,
            "seconds": run.seconds,
            "images_per_s": speed,
            # the AR's forward passes per batch (SJD: fewer than its steps; the refiner pass not counted)
            "forward_passes_per_batch": run.forward_passes / batches if batches else None,
            "ranks": context.world_size,
            **options,
            **ctf,
        },
    )
    rate = f"{speed:.1f} images/s" if speed else "all resumed"
    if args.save_ids:
        print(f"ids (grid order): {args.save_ids}")
    if run.picture is not None:
        shown = min(len(labels), PREVIEW_SAMPLES)
        print(f"samples: {run.picture} (the first {shown} of {len(labels)}) and {run.npz} ({rate})")
    return 0
