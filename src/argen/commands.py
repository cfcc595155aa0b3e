"""What each `argen` command does: validation and printing over the library, one function per command, and `run`,
which runs the one argen.cli parsed (threads, the one-line errors). Imported only when a command runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError

from argen.bench import run_live_benchmark, run_sample_benchmark
from argen.catalog import SHIPPED
from argen.cli_arguments import REFINE_DEFAULTS
from argen.config import (ARRunConfig, DataConfig, RefinerRunConfig, TokenizerRunConfig, build, build_run,
                          dump_yaml, from_dict)
from argen.ctf.ceiling import refiner_ceiling
from argen.ctf.cluster import cluster_tokenizer
from argen.ctf.sample import RefineOptions
from argen.ctf.redundancy import group_redundancy
from argen.ctf.table import histogram_path, load_table
from argen.data import image_batches, load_dataset
from argen.data.tar_shards import pack_image_folder
from argen.data.token_cache import TokenDataset
from argen.data.tokenize import tokenize
from argen.data.video import load_video_dataset
from argen.demo import run_demo
from argen.eval import report
from argen.eval.distributed import evaluate_across_ranks
from argen.eval.entropy_report import write_entropy_analysis
from argen.eval.features import ClassifierExtractor, FeatureExtractor, classifier_data
from argen.eval.i3d import I3DFeatures
from argen.eval.inception import InceptionExtractor
from argen.eval.npz import read_npz, read_samples
from argen.eval.probe import linear_probe
from argen.eval.reference import ReferenceStatistics, compute_reference, evaluate
from argen.eval.tokenizer import evaluate_tokenizer
from argen.eval.video import evaluate_videos, write_real_videos
from argen.io.checkpoint import save_json
from argen.io.paths import check_writable
from argen.io.convert import convert_checkpoint
from argen.io.images import save_grid
from argen.io.load import ar_config_from_cache, open_token_cache, refiner_config_from_cache, tokenizer_config
from argen.io.run_folder import own_folder
from argen.machine import other_argen_processes
from argen.pipeline import load as load_pipeline
from argen.sampling_run import PREVIEW_SAMPLES, sample_to_npz
from argen.serve.app import serve
from argen.tokenizer.lpips import load_lpips
from argen.train import distributed, recipes
from argen.train.classifier_task import ClassifierRunConfig, classifier_test_accuracy, train_classifier
from argen.train.trainer import TrainingError


def _progress() -> bool:
    return os.environ.get("ARGEN_NO_PROGRESS", "") == ""


def _run_config(args: argparse.Namespace, cls: type, options: dict[str, Any],
                derive: Callable[[Any], Any] | None = None) -> Any:
    """The run config of --preset, --config and key=value overrides (see argen.config.build_run); `options`
    are the command-line options given, as dotted keys (falsy ones are left out)."""
    overrides = [*(f"{key}={value}" for key, value in options.items() if value), *args.overrides]
    return build_run(cls, getattr(args, "preset", None), args.config, overrides, derive)


def _print_or_train(args: argparse.Namespace, config: Any, train: Callable[..., Path], what: str) -> Path | None:
    """--print-config prints the config; otherwise train (its run folder checked writable first) and return the
    checkpoint folder."""
    if args.print_config:
        print(dump_yaml(config), end="")
        return None
    check_writable(config.train.out_dir)
    with own_folder(config.train.out_dir, what):
        directory = train(config, progress=_progress())
    print(f"{what}: {directory}")
    return directory


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    config = _run_config(args, TokenizerRunConfig, {"data.path": args.data_dir, "train.out_dir": args.out})
    _print_or_train(args, config, recipes.train_tokenizer, "tokenizer checkpoint")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    def from_cache(config: ARRunConfig) -> ARRunConfig | None:
        return config.cache and ar_config_from_cache(config, open_token_cache(config.cache, config.coarse_table))

    config = _run_config(args, ARRunConfig, {
        "cache": args.cache, "coarse_table": args.coarse_table, "train.out_dir": args.out}, from_cache)
    _print_or_train(args, config, recipes.train_ar, "AR checkpoint")
    return 0


def cmd_ctf_train_refiner(args: argparse.Namespace) -> int:
    def from_cache(config: RefinerRunConfig) -> RefinerRunConfig | None:
        return config.cache and config.coarse_table and refiner_config_from_cache(
            config, open_token_cache(config.cache), load_table(config.coarse_table).coarse_vocab)

    config = _run_config(args, RefinerRunConfig, {
        "cache": args.cache, "coarse_table": args.table, "train.out_dir": args.out}, from_cache)
    _print_or_train(args, config, recipes.train_refiner, "refiner checkpoint")
    return 0


def cmd_eval_train_classifier(args: argparse.Namespace) -> int:
    config = _run_config(args, ClassifierRunConfig, {"data.path": args.data_dir, "train.out_dir": args.out})
    directory = _print_or_train(args, config, train_classifier, "classifier checkpoint")
    if directory is not None:
        print(f"test accuracy: {classifier_test_accuracy(directory, config):.4f}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    with own_folder(args.out, "tokenize"):
        directory = tokenize(args.tokenizer, args.out, split=args.split, data_dir=args.data_dir,
                             flip_copies=args.flip_copies, ten_crops=args.ten_crops, limit=args.limit,
                             num_workers=args.workers, shard_size=args.shard_size, progress=_progress(),
                             holdout=args.holdout)
    print(f"token cache: {directory}")
    return 0


def _sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "greedy": args.greedy,
               "guidance": args.cfg, "guidance_schedule": args.cfg_schedule, "guidance_power": args.cfg_power,
               "dtype": args.dtype, "speculative": args.speculative}
    # Prologue's split settings: the prologue segment's own guidance (constant) and temperature.
    for name, value in (("guidance", args.prologue_cfg), ("temperature", args.prologue_temperature)):
        if value is not None:
            options[name] = {"visual": options[name], "prologue": value}
    if args.prologue_cfg is not None:
        options["guidance_schedule"] = {"visual": args.cfg_schedule, "prologue": "constant"}
        options["guidance_power"] = {"visual": args.cfg_power, "prologue": 1.0}
    return options


def _refine_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The refiner pass's options (CTF), or None without --refiner; --greedy and --dtype apply to both stages."""
    options = {"temperature": args.refine_temperature, "top_k": args.refine_top_k, "top_p": args.refine_top_p,
               "guidance": args.refine_cfg}
    if args.refine_restrict is not None:
        options["restrict_to_cluster"] = args.refine_restrict
    if args.refiner is None:
        if options != REFINE_DEFAULTS:
            raise ValueError("--refine-* options set the CTF refiner pass; they need --refiner DIR")
        return None
    return options


def _positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def cmd_sample(args: argparse.Namespace) -> int:
    _positive(count=args.count, batch=args.batch, columns=args.columns)
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()] if args.classes else None
    except ValueError as error:
        raise ValueError(f"--classes must be comma-separated integers, got {args.classes!r}") from error
    if classes == []:
        raise ValueError("--classes lists no class")
    if distributed.under_torchrun() and (args.fixed_prologue or args.save_ids):
        raise ValueError("--fixed-prologue and --save-ids run in one process; start argen sample without torchrun")
    options, refine = _sampling_options(args), _refine_options(args)
    # One process samples on the CPU; torchrun ranks on their GPU when there is one.
    context = distributed.setup(None if distributed.under_torchrun() else "cpu")
    try:
        with own_folder(args.out, "sample"):
            return _sample(args, classes, options, refine, context)
    finally:
        distributed.teardown(context)


def _sample(args: argparse.Namespace, classes: list[int] | None, options: dict[str, Any],
            refine: dict[str, Any] | None, context: distributed.DistributedContext) -> int:
    pipeline = load_pipeline(args.model, context.device, tokenizer=args.tokenizer, ema=args.ema,
                             refiner=args.refiner)
    layout = pipeline.layout
    if args.fixed_prologue:
        if args.columns < 2:
            raise ValueError("--fixed-prologue needs --columns >= 2 (the cache image, then samples)")
        generator = torch.Generator(pipeline.device).manual_seed(args.seed)
        images = pipeline.fixed_prologue_rows(TokenDataset(args.fixed_prologue), args.count or 10, args.columns - 1,
                                              generator, **options)
        grid = save_grid(images, args.out / "fixed-prologue.png", columns=args.columns, scale=2)
        print(f"fixed-prologue resampling (first column: the cache image, then samples with its prologue): {grid}")
        return 0
    if args.parallel and args.parallel != layout.parallel:
        # The layout is part of what a model learned (PAR's k - 1 transition embeddings, its attention groups).
        raise ValueError(f"--parallel {args.parallel}: {args.model} was trained for {layout.parallel} token(s) per "
                         f"step ({layout.describe()}); train or convert a model with layout.parallel={args.parallel}")
    if not args.save_ids and pipeline.tokenizer is None:
        if pipeline.coarse and pipeline.refinement is None:
            raise ValueError(f"{args.model} predicts CTF coarse labels: pass --refiner DIR to decode images, or "
                             f"--save-ids FILE for the coarse labels")
        raise ValueError("the model has no tokenizer to decode images; pass --tokenizer DIR or --save-ids FILE")
    classes = classes or list(range(pipeline.config.model.num_classes))
    count = args.count or (len(classes) if args.classes else 10)
    labels = [classes[i % len(classes)] for i in range(count)]
    if context.is_main:
        print(f"decoding: {layout.describe()}")
    if args.save_ids:  # the ids of every sample, in memory (the same samples as a run without --save-ids)
        samples = pipeline.sample(labels, args.batch, None, refine, seed=args.seed, **options)
        print(f"ids (grid order): {samples.save_ids(args.save_ids)}")
        if samples.images is None:
            return 0
        (picture, npz), made = samples.save(args.out, columns=args.columns, fps=args.fps), len(labels)
        seconds, passes = samples.seconds + samples.decode_seconds, samples.forward_passes
    else:
        run = sample_to_npz(pipeline, labels, args.batch, args.seed, args.out, context, refine, {"ema": args.ema},
                            args.columns, args.fps, **options)
        if run is None:  # not rank 0
            return 0
        picture, npz, made, seconds, passes = run.picture, run.npz, run.made, run.seconds, run.forward_passes
    # CTF counts its refiner pass as one more step (the paper's "256+1").
    ctf = {} if refine is None else {
        "refiner": str(args.refiner), "ar_steps": layout.num_steps,
        "refine": {"restrict_to_cluster": pipeline.refinement.config.refiner.restrict_to_cluster, **refine}}
    # Images per second of the samples this run made (a resumed run skips the parts an earlier one finished).
    speed = made / seconds if seconds else None
    batches = -(-made // args.batch)
    save_json(args.out / "sampling.json", {
        "model": str(args.model), "images": len(labels), "steps": pipeline.forward_passes,
        "parallel": layout.parallel, "order": layout.config.order, "seconds": seconds, "images_per_s": speed,
        # the AR's forward passes per batch (SJD: fewer than its steps; the refiner pass not counted)
        "forward_passes_per_batch": passes / batches if batches else None,
        "ranks": context.world_size, **options, **ctf})
    shown = min(len(labels), PREVIEW_SAMPLES)
    print(f"samples: {picture} (the first {shown} of {len(labels)}) and {npz} "
          f"({f'{speed:.1f} images/s' if speed else 'all resumed'})")
    return 0


def cmd_bench_sample(args: argparse.Namespace) -> int:
    if args.preset and not args.random_weights:
        raise ValueError("--preset benchmarks random weights: add --random-weights")
    if args.refiner and not args.model:
        raise ValueError("--refiner needs --model (the coarse AR trained with the refiner's clusters table)")
    result = run_sample_benchmark(model=args.model, preset_name=args.preset, random_weights=args.random_weights,
                                  batch=args.batch, guidance=args.cfg, parallel=args.parallel, grid=args.grid,
                                  dtype=args.dtype, repeats=args.repeats, bandwidth_gbs=args.bandwidth_gbs,
                                  overrides=args.overrides, refiner=args.refiner, speculative=args.speculative)
    return _print_result(result, args.json)


def cmd_bench_live(args: argparse.Namespace) -> int:
    _positive(batch=args.batch, repeats=args.repeats)
    if not args.budget >= 0:
        raise ValueError(f"--budget must be >= 0, got {args.budget}")
    return _print_result(run_live_benchmark(args.model, args.tokenizer, args.refiner, args.batch, args.cfg,
                                            args.repeats, args.budget), args.json)


def _print_result(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result))
    else:
        width = max(len(key) for key in result)
        print("\n".join(f"{key:<{width}}  {value}" for key, value in result.items()))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    directory = convert_checkpoint(args.kind, args.source, args.destination, args.preset, args.parallel,
                                   args.overrides)
    print(f"argen checkpoint: {directory}")
    return 0


def _extractor(args: argparse.Namespace, required: bool = True, device: torch.device = torch.device("cpu")
               ) -> FeatureExtractor | None:
    if not required and not (args.classifier or args.inception):
        return None
    if bool(args.classifier) == bool(args.inception):
        raise ValueError("give exactly one feature extractor: --classifier DIR or --inception WEIGHTS_FILE")
    if args.classifier:
        return ClassifierExtractor.from_checkpoint(args.classifier, device=device)
    return InceptionExtractor.from_file(args.inception, device=device)


def _print_json(result: dict[str, Any], out: Path | None = None) -> int:
    print(json.dumps(result, indent=2))
    if out:
        save_json(out, result)
    return 0


def _reference_data(args: argparse.Namespace) -> DataConfig:
    """The images a reference is of: a cache's held-out split, or the classifier's own dataset unless named; never
    another dataset than the classifier's."""
    trained = classifier_data(args.classifier) if args.classifier else None
    if args.holdout_of:
        if args.dataset or args.data_dir or args.skip or args.limit or args.image_size or args.channels:
            raise ValueError("--holdout-of names the images and their sizes itself; drop --dataset, --data-dir, "
                             "--skip, --limit, --image-size and --channels")
        held_out = TokenDataset(args.holdout_of).manifest.get("holdout")
        if not held_out:
            raise ValueError(f"{args.holdout_of} kept no validation images aside (argen tokenize --holdout N)")
        data = from_dict(DataConfig, held_out["data"], "data")
        if trained is not None and data.name != trained.name:
            raise ValueError(f"the classifier {args.classifier} was trained on {trained.name}, not {data.name}")
        return data
    name = args.dataset or (trained.name if trained else None)
    if name is None:
        raise ValueError("give --dataset (and --data-dir): with --inception argen cannot tell which images the "
                         "reference is of")
    path = args.data_dir or (trained.path if trained is not None and trained.name == name else "")
    # A folder format is its folder; a named dataset (fashion-mnist, digits) is itself wherever its copy lies.
    folder_format = name in ("idx", "imagefolder", "webdataset")
    if trained is not None and (name != trained.name or folder_format and _resolved(path) != _resolved(trained.path)):
        raise ValueError(f"the classifier {args.classifier} was trained on {trained.name}"
                         f"{' at ' + trained.path if trained.path else ''}, not {name}{' at ' + path if path else ''}: "
                         "its features mean nothing on other data; use a classifier of those images "
                         "(argen eval train-classifier) or leave --dataset out")
    size = args.image_size or (trained.image_size if trained else 32)
    channels = args.channels or (trained.channels if trained else 1)
    return DataConfig(name=name, path=path, split=args.split, image_size=size, channels=channels, resize=args.resize,
                      pad_to=args.pad_to, skip=args.skip, limit=args.limit)


def _resolved(path: str) -> str:
    return str(Path(path).resolve()) if path else ""


def cmd_eval_ref(args: argparse.Namespace) -> int:
    data = _reference_data(args)
    reference = compute_reference(image_batches(load_dataset(data, training=False)), _extractor(args))
    reference.dataset = {"name": data.name, "path": _resolved(data.path), "split": data.split, "skip": data.skip,
                         "image_size": data.image_size, "channels": data.channels}
    print(f"reference statistics of {reference.describe()} ({reference.extractor}): {reference.save(args.out)}")
    return 0


def cmd_eval_samples(args: argparse.Namespace) -> int:
    if distributed.under_torchrun():
        context = distributed.setup()
        try:
            extractor = _extractor(args, device=context.device)
            result = evaluate_across_ranks(args.samples, ReferenceStatistics.load(args.ref), extractor, context,
                                           not args.unconditional, args.bootstrap)
        finally:
            distributed.teardown(context)
        return 0 if result is None else _print_json(
            {**result, "samples_file": str(args.samples), "reference_file": str(args.ref)}, args.out)
    batch = read_samples(args.samples)
    labels = batch.labels if batch.labels is not None and not args.unconditional else None
    reference = ReferenceStatistics.load(args.ref)
    reference.check_samples(batch.images.shape[1])
    result = evaluate(batch.images, reference, _extractor(args), labels, bootstrap=args.bootstrap)
    return _print_json({**result, "samples_file": str(args.samples), "reference_file": str(args.ref)}, args.out)


def cmd_eval_tokenizer(args: argparse.Namespace) -> int:
    if (args.lpips_vgg is None) != (args.lpips_linear is None):
        raise ValueError("LPIPS needs both files: --lpips-vgg (VGG16) and --lpips-linear (vgg.pth)")
    lpips = load_lpips(args.lpips_vgg, args.lpips_linear) if args.lpips_vgg else None
    return _print_json(evaluate_tokenizer(args.tokenizer, args.out, split=args.split, count=args.count,
                                          data_dir=args.data_dir, progress=_progress(),
                                          extractor=_extractor(args, required=False), lpips=lpips))


def cmd_eval_video(args: argparse.Namespace) -> int:
    samples, real = read_npz(args.samples, video=True), read_npz(args.real, video=True)
    i3d = I3DFeatures.from_file(args.i3d) if args.i3d else None
    result = evaluate_videos(samples.images, real.images, _extractor(args),
                             samples.labels if not args.unconditional else None, i3d)
    if i3d is None:
        print("argen eval video: no FVD: it needs Inception-I3D weights, --i3d FILE (docs/video.md)", file=sys.stderr)
    return _print_json({**result, "samples_file": str(args.samples), "real_file": str(args.real)}, args.out)


def cmd_video_make_dataset(args: argparse.Namespace) -> int:
    # The tokenizer's data settings: the videos its token cache was written from.
    base = tokenizer_config(args.tokenizer).data if args.tokenizer else DataConfig(name="moving-fashion-mnist")
    unprefixed = [item for item in args.overrides if not item.startswith("data.")]
    if unprefixed:
        raise ValueError(f"make-dataset takes data.* overrides (as `argen tokenizer train` does), got {unprefixed}")
    config = build(DataConfig, base=base, overrides=[f"split={args.split}", f"limit={args.count}", "flip=false",
                                                     *(item[len("data."):] for item in args.overrides)])
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    dataset = load_video_dataset(config)
    out = write_real_videos(dataset, args.out, args.preview, args.fps)
    print(f"{len(dataset)} videos of {config.video.frames} frames of {config.image_size}x{config.image_size}, "
          f"{dataset.num_classes} classes: {out} (preview: {out.with_suffix('.gif')}, {out.with_suffix('.png')})")
    return 0


def _named_paths(items: list[str] | None, option: str) -> list[tuple[str, Path]]:
    """[NAME=]PATH items as (name, path); the name defaults to the parent folder's (or the file's) name."""
    named = []
    for item in items or []:
        name, _, path = item.rpartition("=")
        if not Path(path).exists():
            raise FileNotFoundError(f"{option} {path}: no such file")
        named.append((name or Path(path).parent.name or Path(path).stem, Path(path)))
    return named


def cmd_report(args: argparse.Namespace) -> int:
    files = {kind: _named_paths(getattr(args, kind), f"--{kind}") for kind in report.REPORT_FILES}
    print(f"report: {report.report_from_files(args.out, args.title, args.text, **files)}")
    return 0


def cmd_analyze_entropy(args: argparse.Namespace) -> int:
    try:
        references = [tuple(int(value) for value in text.split(",")) for text in args.reference] or None
    except ValueError as error:
        raise ValueError(f"--reference must be comma-separated grid indices such as 8,8, got {args.reference}") \
            from error
    result = write_entropy_analysis(args.cache, args.out, models=_named_paths(args.models, "--models"),
                                    references=references, limit=args.limit, model_limit=args.model_limit,
                                    coarse=args.coarse, alphabet=args.alphabet, correction=args.correction,
                                    batch_size=args.batch, device=args.device)
    for model in result["models"]:
        increase = model.get("entropy_increase", {}).get("bits", 0.0)
        print(f"{model['name']}: entropy {model['entropy_bits']:.3f} bits/token, NLL {model['nll_bits']:.3f} "
              f"bits/token, entropy increase {increase:+.3f} bits/token")
    print(f"entropy analysis: {Path(args.out) / 'entropy.json'}")
    return 0


def cmd_data_pack(args: argparse.Namespace) -> int:
    with own_folder(args.out, "data pack"):
        directory = pack_image_folder(args.images, args.out, args.shard_size)
    print(f"tar shards: {directory}")
    return 0


def cmd_ctf_cluster(args: argparse.Namespace) -> int:
    table = cluster_tokenizer(args.tokenizer, args.clusters, args.out, method=args.method, restarts=args.restarts,
                              seed=args.seed)
    sizes = table.sizes
    print(f"{table.fine_vocab} codes in {table.coarse_vocab} clusters ({args.method}): sizes {int(sizes.min())} to "
          f"{int(sizes.max())}, inertia {table.metadata['inertia']:.6g}")
    print(f"fine -> coarse table: {args.out} (histogram: {histogram_path(args.out)})")
    return 0


def cmd_ctf_ceiling(args: argparse.Namespace) -> int:
    _positive(count=args.count)
    result = refiner_ceiling(args.refiner, args.tokenizer, args.out, args.count,
                             RefineOptions(temperature=args.refine_temperature), args.seed, progress=_progress())
    print(f"refiner ceiling on {result['images']} test images: {result['token_accuracy']:.1%} of tokens right, "
          f"{result['outside_cluster']:.1%} outside their cluster, {result['psnr_db']:.2f} dB against the "
          f"reconstruction; score {Path(args.out) / 'samples.npz'} with argen eval")
    return 0


def cmd_ctf_redundancy(args: argparse.Namespace) -> int:
    result = group_redundancy(args.tokenizer, args.clusters, args.methods, args.count, seed=args.seed,
                              progress=_progress())
    print(f"{result['images']} test images, {args.clusters} clusters; every token swapped for a random member of its "
          "cluster, PSNR against the reconstruction:")
    for method, scores in result["methods"].items():
        print(f"  {method:10s} {scores['psnr_db']:6.2f} dB   within-cluster cosine "
              f"{scores['within_cluster_cosine']:.3f}   largest cluster {scores['largest_cluster']} codes")
    if args.out:
        save_json(args.out, result)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    return _print_json(linear_probe(args.cache, args.test_cache, test_fraction=args.test_fraction,
                                    regularization=args.regularization, max_iterations=args.max_iterations,
                                    seed=args.seed), args.out)


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(args.out, checkpoints=args.checkpoints, train=args.train, per_class=args.per_class,
             per_batch=args.per_batch, progress=_progress())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    serve(args.checkpoints or [SHIPPED], args.host, args.port, tuple(args.allow_host))
    return 0


# argen's own errors (ValueError subclasses: ConfigError, CheckpointError, DataError, ...; TrainingError) and the
# expected ones of files and formats; anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, EOFError, TrainingError, SafetensorError)

HANDLERS = {
    "analyze-entropy": cmd_analyze_entropy,
    "bench-live": cmd_bench_live,
    "bench-sample": cmd_bench_sample,
    "convert": cmd_convert,
    "ctf-ceiling": cmd_ctf_ceiling,
    "ctf-redundancy": cmd_ctf_redundancy,
    "ctf-cluster": cmd_ctf_cluster,
    "data-pack": cmd_data_pack,
    "ctf-train-refiner": cmd_ctf_train_refiner,
    "demo": cmd_demo,
    "eval-ref": cmd_eval_ref,
    "eval-samples": cmd_eval_samples,
    "eval-tokenizer": cmd_eval_tokenizer,
    "eval-train-classifier": cmd_eval_train_classifier,
    "eval-video": cmd_eval_video,
    "probe": cmd_probe,
    "report": cmd_report,
    "sample": cmd_sample,
    "serve": cmd_serve,
    "tokenize": cmd_tokenize,
    "tokenizer-train": cmd_tokenizer_train,
    "train": cmd_train,
    "video-make-dataset": cmd_video_make_dataset,
}


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the command `args` names (its name in args.handler): threads first, then one line per expected error."""
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    elif "OMP_NUM_THREADS" not in os.environ and sys.stderr.isatty() and (others := other_argen_processes()):
        # Each process takes a thread per core: two of them fight over the cores and both run several times slower.
        print(f"argen: warning: another argen process is running (pid {others[0]}); with a thread per core each, "
              "both run several times slower: give each --threads N (N cores between them)", file=sys.stderr)
    try:
        return HANDLERS[args.handler](args)
    except KeyboardInterrupt:
        print("argen: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        if os.environ.get("ARGEN_DEBUG"):
            raise
        # One line: what was wrong and what to do (ARGEN_DEBUG=1 shows the traceback).
        print(f"argen: error: {' '.join(str(error).split()) or type(error).__name__}", file=sys.stderr)
        return 2
