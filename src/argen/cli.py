"""The `argen` command line: a thin layer over argen's recipes; every command validates its inputs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from argen import __version__
from argen.config import ConfigError, build, dump_yaml, preset


def _progress() -> bool:
    return os.environ.get("ARGEN_NO_PROGRESS", "") == ""


def _add_config_arguments(parser: argparse.ArgumentParser, presets: dict[str, Any] | None) -> None:
    if presets is not None:
        parser.add_argument("--preset", help=f"model preset: {', '.join(presets)}")
    parser.add_argument("--config", type=Path, help="YAML file merged over the preset")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4")


def _given(options: dict[str, Any]) -> list[str]:
    """key=value overrides for the command-line options that were given (falsy values are left out)."""
    return [f"{key}={value}" for key, value in options.items() if value]


def _run_config(args: argparse.Namespace, cls: type, presets: dict[str, Any] | None, model_cls: type | None,
                extra: list[str] | None = None) -> Any:
    """Defaults, then the named model preset, then --config YAML, then key=value overrides."""
    base = cls()
    if presets is not None and getattr(args, "preset", None):
        base = dataclasses.replace(base, model=preset(presets, args.preset, model_cls))
        if hasattr(base, "data") and hasattr(base.model, "image_size"):
            # The tokenizer fixes the image format: keep the data in step with the preset.
            base = dataclasses.replace(base, data=dataclasses.replace(
                base.data, image_size=base.model.image_size, channels=base.model.in_channels))
    return build(cls, base=base, yaml_path=args.config, overrides=[*(extra or []), *args.overrides])


def _print_or_none(args: argparse.Namespace, config: Any) -> bool:
    if args.print_config:
        print(dump_yaml(config), end="")
        return True
    return False


# ------------------------------------------------------------------------------------------------
# commands


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from argen.config import VQ_PRESETS, TokenizerRunConfig, VQConfig

    extra = _given({"data.path": args.data_dir, "train.out_dir": args.out})
    config = _run_config(args, TokenizerRunConfig, VQ_PRESETS, VQConfig, extra)
    if _print_or_none(args, config):
        return 0
    from argen.train import recipes

    directory = recipes.train_tokenizer(config, progress=_progress())
    print(f"tokenizer checkpoint: {directory}")
    return 0


def cmd_tokenizer_eval(args: argparse.Namespace) -> int:
    from argen.train import recipes

    result = recipes.evaluate_tokenizer(args.tokenizer, args.out, split=args.split, count=args.count,
                                        data_dir=args.data_dir, progress=_progress())
    print(json.dumps(result, indent=2))
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from argen.train import recipes

    directory = recipes.tokenize(args.tokenizer, args.out, split=args.split, data_dir=args.data_dir,
                                 flip_copies=args.flip_copies, limit=args.limit, progress=_progress())
    print(f"token cache: {directory}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from argen.config import GPT_PRESETS, ARRunConfig, GPTConfig

    extra = _given({"cache": args.cache, "coarse_table": args.coarse_table, "train.out_dir": args.out})
    config = _run_config(args, ARRunConfig, GPT_PRESETS, GPTConfig, extra)
    if config.cache:
        from argen.train.recipes import ar_config_from_cache, open_token_cache

        # The cache (and a CTF table) fix grid, vocabulary and classes; explicit settings still win.
        cache = open_token_cache(config.cache, config.coarse_table)
        config = build(ARRunConfig, base=ar_config_from_cache(config, cache), yaml_path=args.config,
                       overrides=[*extra, *args.overrides])
    if _print_or_none(args, config):
        return 0
    from argen.train import recipes

    print(f"AR checkpoint: {recipes.train_ar(config, progress=_progress())}")
    return 0


def _parse_classes(text: str | None, count: int, num_classes: int) -> list[int]:
    if text:
        try:
            return [int(c) for c in text.split(",") if c.strip()]
        except ValueError as error:
            raise ValueError(f"--classes must be comma-separated integers, got {text!r}") from error
    return [i % num_classes for i in range(count)]


def _sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "greedy": args.greedy,
               "guidance": args.cfg, "guidance_schedule": args.cfg_schedule, "dtype": args.dtype}
    # Prologue's split settings: the prologue segment's own guidance (constant) and temperature.
    for name, value in (("guidance", args.prologue_cfg), ("temperature", args.prologue_temperature)):
        if value is not None:
            options[name] = {"visual": options[name], "prologue": value}
    if args.prologue_cfg is not None:
        options["guidance_schedule"] = {"visual": args.cfg_schedule, "prologue": "constant"}
    return options


def _fixed_prologue_rows(pipeline: Any, cache_dir: Path, rows: int, per_row: int, generator: Any,
                         options: dict[str, Any]) -> Any:
    """Fixed-prologue resampling: for each of the first `rows` images of a token cache with prologue ids, the
    image as the tokenizer reconstructs it, then `per_row` samples of its class whose prologue ids are kept
    and only the visual tokens are drawn. uint8 (rows * (1 + per_row), C, H, W), row by row."""
    import torch

    from argen.data.token_cache import TokenDataset

    cache = TokenDataset(cache_dir)
    if "prologue_ids" not in cache.tensors:
        raise ValueError(f"--fixed-prologue {cache_dir}: the cache has no prologue ids (tokenize with a Prologue "
                         "tokenizer)")
    if pipeline.layout.prologue_length != cache.tensors["prologue_ids"].shape[1]:
        raise ValueError(f"--fixed-prologue {cache_dir}: its prologues have {cache.tensors['prologue_ids'].shape[1]} "
                         f"ids, the model's {pipeline.layout.prologue_length}")
    rows = min(rows, len(cache))
    prologue = cache.tensors["prologue_ids"][:rows].long().repeat_interleave(per_row, 0)
    labels = cache.tensors["labels"][:rows].long()
    generated = pipeline.generate_ids(labels.repeat_interleave(per_row, 0), generator,
                                      forced={"prologue": prologue.to(pipeline.device)}, **options)
    originals = pipeline.decode(cache.tensors["ids"][:rows].long())  # (rows, C, H, W)
    samples = pipeline.decode(generated.visual).view(rows, per_row, *originals.shape[1:])
    return torch.cat([originals[:, None], samples], 1).flatten(0, 1)


REFINE_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "guidance": 1.0}


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


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import argen
    from argen.eval.npz import write_npz
    from argen.io.checkpoint import save_json
    from argen.io.images import save_grid
    from argen.io.video import save_gif, save_strip

    pipeline = argen.load(args.model, tokenizer=args.tokenizer, ema=args.ema, refiner=args.refiner)
    layout = pipeline.layout
    if args.fixed_prologue:
        generator = torch.Generator(pipeline.device).manual_seed(args.seed)
        images = _fixed_prologue_rows(pipeline, args.fixed_prologue, args.count, args.columns - 1, generator,
                                      _sampling_options(args))
        grid = save_grid(images, Path(args.out) / "fixed-prologue.png", columns=args.columns, scale=2)
        print(f"fixed-prologue resampling (first column: the cache image, then samples with its prologue): {grid}")
        return 0
    if args.parallel and args.parallel != layout.parallel:
        # The layout is part of what a model learned (PAR's k - 1 transition embeddings, its attention groups).
        raise ValueError(f"--parallel {args.parallel}: {args.model} was trained for {layout.parallel} token(s) per "
                         f"step ({layout.describe()}); train or convert a model with layout.parallel="
                         f"{args.parallel}")
    print(f"decoding: {layout.describe()}")
    labels = _parse_classes(args.classes, args.count, pipeline.config.model.num_classes)
    generator = torch.Generator(pipeline.device).manual_seed(args.seed)
    out = Path(args.out)
    refine = _refine_options(args)
    ids, coarse, images = [], [], []
    started = time.perf_counter()
    for start in range(0, len(labels), args.batch):
        chunk = labels[start:start + args.batch]
        generated = pipeline.generate_ids(chunk, generator, refine, **_sampling_options(args))
        ids.append(generated.visual.cpu())
        if generated.coarse is not None:
            coarse.append(generated.coarse.cpu())
        if pipeline.tokenizer is not None:
            images.append(pipeline.decode(generated.visual))
    ids = torch.cat(ids)
    seconds = time.perf_counter() - started
    if args.save_ids:
        saved = {"classes": labels, "grid": list(ids.shape[1:]), "ids": ids.tolist()}
        if coarse:  # CTF: "ids" are the refined fine ids, "coarse" the AR's cluster labels
            saved["coarse"] = torch.cat(coarse).tolist()
        Path(args.save_ids).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save_ids).write_text(json.dumps(saved))
        print(f"ids (grid order): {args.save_ids}")
    if images:
        images = torch.cat(images)
        if images.ndim == 5:  # videos (B, T, C, H, W): a strip per video, an animated grid, a video batch
            grid = save_strip(images, out / "samples.png", scale=2)
            save_gif(images, out / "samples.gif", columns=args.columns, fps=args.fps, scale=2)
            npz = write_npz(out / "videos.npz", images.permute(0, 1, 3, 4, 2).numpy(), labels=np.asarray(labels),
                            video=True)
        else:
            grid = save_grid(images, out / "samples.png", columns=args.columns, scale=2)
            npz = write_npz(out / "samples.npz", images.permute(0, 2, 3, 1).numpy(), labels=np.asarray(labels))
        # CTF counts its refiner pass as one more step (the paper's "256+1").
        ctf = {} if refine is None else {
            "refiner": str(args.refiner), "ar_steps": layout.num_steps,
            "refine": {"restrict_to_cluster": pipeline.refiner_config.refiner.restrict_to_cluster, **refine}}
        save_json(out / "sampling.json", {"model": str(args.model), "images": len(labels),
                                          "steps": layout.num_steps + (refine is not None),
                                          "parallel": layout.parallel, "order": layout.config.order,
                                          "seconds": seconds, "images_per_s": len(labels) / seconds,
                                          **_sampling_options(args), **ctf})
        print(f"samples: {grid} and {npz} ({len(labels) / seconds:.1f} images/s)")
    elif not args.save_ids:
        if pipeline.coarse and pipeline.refiner is None:
            raise ValueError(f"{args.model} predicts CTF coarse labels: pass --refiner DIR to decode images, or "
                             f"--save-ids FILE for the coarse labels")
        raise ValueError("the model has no tokenizer to decode images; pass --tokenizer DIR or --save-ids FILE")
    return 0


def cmd_bench_sample(args: argparse.Namespace) -> int:
    from argen.bench import run_sample_benchmark

    result = run_sample_benchmark(model=args.model, preset_name=args.preset, random_weights=args.random_weights,
                                  batch=args.batch, guidance=args.cfg, parallel=args.parallel, grid=args.grid,
                                  dtype=args.dtype, repeats=args.repeats, bandwidth_gbs=args.bandwidth_gbs,
                                  overrides=args.overrides, refiner=args.refiner)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from argen.io.convert import convert_checkpoint

    directory = convert_checkpoint(args.kind, args.source, args.destination, args.preset, args.parallel,
                                   args.overrides)
    print(f"argen checkpoint: {directory}")
    return 0


def _extractor(args: argparse.Namespace):
    from argen.eval.features import ClassifierExtractor, InceptionExtractor

    if bool(args.classifier) == bool(args.inception):
        raise ValueError("give exactly one feature extractor: --classifier DIR or --inception WEIGHTS_FILE")
    if args.classifier:
        return ClassifierExtractor.from_checkpoint(args.classifier)
    return InceptionExtractor.from_file(args.inception)


def cmd_eval_train_classifier(args: argparse.Namespace) -> int:
    from argen.eval.classifier_task import ClassifierRunConfig, train_classifier

    extra = _given({"data.path": args.data_dir, "train.out_dir": args.out})
    config = build(ClassifierRunConfig, yaml_path=args.config, overrides=[*extra, *args.overrides])
    if _print_or_none(args, config):
        return 0
    directory = train_classifier(config, progress=_progress())
    accuracy = _classifier_accuracy(directory, config)
    print(f"classifier checkpoint: {directory}\ntest accuracy: {accuracy:.4f}")
    return 0


def _classifier_accuracy(directory: Path, config: Any) -> float:
    """Test-split accuracy, also written into the checkpoint's folder as test_accuracy.json."""
    import numpy as np

    from argen.data import load_dataset
    from argen.eval.features import ClassifierExtractor
    from argen.eval.metrics import class_accuracy
    from argen.io.checkpoint import save_json

    test = load_dataset(dataclasses.replace(config.data, split="test", flip=False, limit=0), training=False)
    logits = ClassifierExtractor.from_checkpoint(directory).features(test.images.numpy().transpose(0, 2, 3, 1))
    accuracy = class_accuracy(logits["logits"], test.labels.numpy())
    save_json(Path(directory).parent / "test_accuracy.json", {"split": "test", "images": len(test),
                                                              "accuracy": accuracy})
    return float(np.float64(accuracy))


def cmd_eval_ref(args: argparse.Namespace) -> int:
    from argen.config import DataConfig
    from argen.data import load_dataset
    from argen.eval.reference import compute_reference

    data = DataConfig(name=args.dataset, path=args.data_dir or "", split=args.split, image_size=args.image_size,
                      channels=args.channels, resize=args.resize, pad_to=args.pad_to)
    images = load_dataset(data, training=False).images.numpy().transpose(0, 2, 3, 1)
    reference = compute_reference(images, _extractor(args))
    path = reference.save(args.out)
    print(f"reference statistics of {reference.count} images ({reference.extractor}): {path}")
    return 0


def cmd_eval_samples(args: argparse.Namespace) -> int:
    from argen.eval.npz import read_samples
    from argen.eval.reference import ReferenceStatistics, evaluate
    from argen.io.checkpoint import save_json

    batch = read_samples(args.samples)
    labels = batch.labels if batch.labels is not None and not args.unconditional else None
    result = evaluate(batch.images, ReferenceStatistics.load(args.ref), _extractor(args), labels,
                      bootstrap=args.bootstrap)
    result.update(samples_file=str(args.samples), reference_file=str(args.ref))
    print(json.dumps(result, indent=2))
    if args.out:
        save_json(args.out, result)
    return 0


def cmd_eval_tokenizer(args: argparse.Namespace) -> int:
    from argen.train import recipes

    result = recipes.evaluate_tokenizer(args.tokenizer, args.out, split=args.split, count=args.count,
                                        data_dir=args.data_dir, progress=_progress(),
                                        extractor=_extractor(args) if (args.classifier or args.inception) else None)
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval_video(args: argparse.Namespace) -> int:
    from argen.eval.npz import read_npz
    from argen.eval.video import evaluate_videos
    from argen.io.checkpoint import save_json

    samples, real = read_npz(args.samples, video=True), read_npz(args.real, video=True)
    labels = samples.labels if not args.unconditional else None
    result = evaluate_videos(samples.images, real.images, _extractor(args), labels)
    result.update(samples_file=str(args.samples), real_file=str(args.real))
    print(json.dumps(result, indent=2))
    if args.out:
        save_json(args.out, result)
    return 0


def cmd_video_make_dataset(args: argparse.Namespace) -> int:
    from argen.config import DataConfig, TokenizerRunConfig, from_dict
    from argen.data.video import load_video_dataset
    from argen.eval.npz import write_npz
    from argen.io import checkpoint as ckpt
    from argen.io.video import save_gif, save_strip

    base = DataConfig(name="moving-fashion-mnist")
    if args.tokenizer:  # the videos its token cache was written from
        base = from_dict(TokenizerRunConfig, ckpt.read_meta(args.tokenizer, "tokenizer")["config"]).data
    unprefixed = [item for item in args.overrides if not item.startswith("data.")]
    if unprefixed:
        raise ValueError(f"make-dataset takes data.* overrides (as `argen tokenizer train` does), got {unprefixed}")
    extra = [f"split={args.split}", f"limit={args.count}", "flip=false"]
    overrides = [*extra, *(item[len("data."):] for item in args.overrides)]
    config = build(DataConfig, base=base, overrides=overrides)
    if _print_or_none(args, config):
        return 0
    dataset = load_video_dataset(config)
    out = Path(args.out)
    write_npz(out, dataset.videos.permute(0, 1, 3, 4, 2).numpy(), dataset.labels.numpy(), video=True)
    preview = dataset.videos[:args.preview]
    save_gif(preview, out.with_suffix(".gif"), columns=10, fps=args.fps, scale=2)
    save_strip(preview, out.with_suffix(".png"), scale=2)
    print(f"{len(dataset)} videos of {tuple(dataset.videos.shape[1:])} (T, C, H, W), {dataset.num_classes} classes: "
          f"{out} (preview: {out.with_suffix('.gif')}, {out.with_suffix('.png')})")
    return 0


def _named_paths(items: list[str], option: str) -> list[tuple[str, Path]]:
    named = []
    for item in items or []:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{option} {path}: no such file")
        named.append((name or path.parent.name or path.stem, path))
    return named


def cmd_report(args: argparse.Namespace) -> int:
    from argen.eval import report
    from argen.eval.npz import read_samples

    sections: list[Any] = [report.Text(args.title, args.text)] if args.text else []
    rows = []
    for name, path in _named_paths(args.metrics, "--metrics"):
        row = {"name": name, **{k: v for k, v in json.loads(path.read_text()).items()
                                if isinstance(v, (int, float, str)) and not k.endswith("file")}}
        sampling = path.parent / "sampling.json"
        if sampling.is_file():  # written by `argen sample`: steps and wall time
            info = json.loads(sampling.read_text())
            row.update(steps=info["steps"], images_per_s=info["images_per_s"],
                       wall_time_s=info["seconds"] / max(info["images"], 1))
        rows.append(row)
    if rows:
        sections.append(report.Table("Metrics", rows))
        for metric in ("fid", "inception_score", "class_accuracy"):
            for axis in ("steps", "wall_time_s"):
                if sum(metric in r and axis in r for r in rows) >= 2:
                    sections.append(report.quality_plot(rows, metric, x=axis, group="name"))
    for name, path in _named_paths(args.samples, "--samples"):
        batch = read_samples(path)
        images = batch.images.transpose(0, 3, 1, 2)
        columns = 10
        if batch.labels is not None:  # one row per class, up to 10 samples each
            order = [i for c in sorted(set(batch.labels.tolist())) for i in
                     [j for j, label in enumerate(batch.labels.tolist()) if label == c][:columns]]
            images = images[order]
        sections.append(report.Grid(f"Samples: {name}", images, columns=columns))
    for name, path in _named_paths(args.media, "--media"):
        sections.append(report.Media(f"Media: {name}", path))
    for name, path in _named_paths(args.log, "--log"):
        sections.append(report.training_curves(path, title=f"Training curves: {name}"))
    for _, path in _named_paths(args.analysis, "--analysis"):
        sections += report.analysis_sections(path)
    if not sections:
        raise ValueError("nothing to report: give --metrics, --samples, --media, --log and/or --analysis")
    print(f"report: {report.write_report(args.out, sections, title=args.title)}")
    return 0


def _parse_position(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(value) for value in text.split(","))
    except ValueError as error:
        raise ValueError(f"--reference must be comma-separated grid indices such as 8,8, got {text!r}") from error


def cmd_analyze_entropy(args: argparse.Namespace) -> int:
    from argen.eval.entropy import write_entropy_analysis

    result = write_entropy_analysis(args.cache, args.out, models=_named_paths(args.models, "--models"),
                                    references=[_parse_position(r) for r in args.reference] or None,
                                    limit=args.limit, model_limit=args.model_limit, coarse=args.coarse,
                                    alphabet=args.alphabet, correction=args.correction, batch_size=args.batch,
                                    device=args.device)
    for model in result["models"]:
        increase = model.get("entropy_increase", {}).get("bits", 0.0)
        print(f"{model['name']}: entropy {model['entropy_bits']:.3f} bits/token, NLL {model['nll_bits']:.3f} "
              f"bits/token, entropy increase {increase:+.3f} bits/token")
    print(f"entropy analysis: {Path(args.out) / 'entropy.json'}")
    return 0


def cmd_ctf_cluster(args: argparse.Namespace) -> int:
    from argen.ctf.table import cluster_tokenizer, histogram_path

    table = cluster_tokenizer(args.tokenizer, args.clusters, args.out, method=args.method, restarts=args.restarts,
                              seed=args.seed)
    sizes = table.sizes
    print(f"{table.fine_vocab} codes in {table.coarse_vocab} clusters ({args.method}): sizes {int(sizes.min())} to "
          f"{int(sizes.max())}, inertia {table.metadata['inertia']:.6g}")
    print(f"fine -> coarse table: {args.out} (histogram: {histogram_path(args.out)})")
    return 0


def cmd_ctf_train_refiner(args: argparse.Namespace) -> int:
    from argen.config import GPT_PRESETS, GPTConfig, RefinerRunConfig

    extra = _given({"cache": args.cache, "coarse_table": args.table, "train.out_dir": args.out})
    config = _run_config(args, RefinerRunConfig, GPT_PRESETS, GPTConfig, extra)
    if config.cache and config.coarse_table:
        from argen.ctf.table import load_table
        from argen.train.recipes import open_token_cache, refiner_config_from_cache

        # The cache fixes the classes and the table the input vocabulary; explicit settings still win.
        base = refiner_config_from_cache(config, open_token_cache(config.cache),
                                         load_table(config.coarse_table).coarse_vocab)
        config = build(RefinerRunConfig, base=base, yaml_path=args.config, overrides=[*extra, *args.overrides])
    if _print_or_none(args, config):
        return 0
    from argen.train import recipes

    print(f"refiner checkpoint: {recipes.train_refiner(config, progress=_progress())}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from argen.eval.probe import linear_probe
    from argen.io.checkpoint import save_json

    result = linear_probe(args.cache, args.test_cache, test_fraction=args.test_fraction,
                          regularization=args.regularization, max_iterations=args.max_iterations, seed=args.seed)
    print(json.dumps(result, indent=2))
    if args.out:
        save_json(args.out, result)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from argen.demo import run_demo

    run_demo(args.out, checkpoints=args.checkpoints, train=args.train, per_class=args.per_class,
             per_batch=args.per_batch, progress=_progress())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from argen.config import VQ_PRESETS

    parser = argparse.ArgumentParser(prog="argen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"argen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")

    tokenizer = commands.add_parser("tokenizer", help="train or evaluate a VQ tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    train = tokenizer_commands.add_parser("train", help="train a VQ tokenizer on images")
    _add_config_arguments(train, VQ_PRESETS)
    train.add_argument("--data-dir", help="dataset folder (else found automatically)")
    train.add_argument("--out", help="output run directory (train.out_dir)")
    train.set_defaults(handler=cmd_tokenizer_train)
    evaluate = tokenizer_commands.add_parser("eval", help="MSE, PSNR, codebook usage and a reconstruction grid")
    evaluate.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    evaluate.add_argument("--out", type=Path, default=Path("runs/tokenizer-eval"))
    evaluate.add_argument("--split", default="test", choices=["train", "test"])
    evaluate.add_argument("--count", type=int, default=0, help="images to use (0 = all)")
    evaluate.add_argument("--data-dir", help="dataset folder (else the one the tokenizer was trained on)")
    evaluate.set_defaults(handler=cmd_tokenizer_eval)

    tokenize = commands.add_parser("tokenize", help="write the token cache of a dataset")
    tokenize.add_argument("--tokenizer", required=True, type=Path)
    tokenize.add_argument("--out", required=True, type=Path)
    tokenize.add_argument("--split", default="train", choices=["train", "test"])
    tokenize.add_argument("--data-dir")
    tokenize.add_argument("--limit", type=int, default=0, help="tokenize only the first N images (0 = all)")
    tokenize.add_argument("--flip-copies", action="store_true", help="also store horizontally flipped copies")
    tokenize.set_defaults(handler=cmd_tokenize)

    from argen.config import GPT_PRESETS

    train_ar = commands.add_parser("train", help="train the AR transformer on a token cache")
    _add_config_arguments(train_ar, GPT_PRESETS)
    train_ar.add_argument("--cache", help="token cache directory (argen tokenize)")
    train_ar.add_argument("--coarse-table", help="CTF: train on the coarse labels of this table (argen ctf cluster)")
    train_ar.add_argument("--out", help="output run directory (train.out_dir)")
    train_ar.set_defaults(handler=cmd_train)

    sample = commands.add_parser("sample", help="sample images (PNG grid + ADM .npz), videos (GIF, PNG strip, "
                                               ".npz) or token ids")
    sample.add_argument("--model", required=True, type=Path, help="AR checkpoint or pipeline directory")
    sample.add_argument("--tokenizer", type=Path, help="tokenizer checkpoint (else the one the model names)")
    sample.add_argument("--classes", help="comma-separated class ids, e.g. 3,7 (else --count cycling classes)")
    sample.add_argument("--count", type=int, default=10)
    sample.add_argument("--batch", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--parallel", type=int, default=0,
                        help="tokens per step the model must decode (PAR's k; 0 = the model's own layout)")
    sample.add_argument("--greedy", action="store_true", help="argmax decoding")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=int, default=0)
    sample.add_argument("--top-p", type=float, default=1.0)
    sample.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    sample.add_argument("--cfg-schedule", default="constant", choices=["constant", "linear", "cosine"])
    sample.add_argument("--prologue-cfg", type=float, help="Prologue: constant guidance on the prologue tokens "
                        "(--cfg and --cfg-schedule then apply to the visual tokens)")
    sample.add_argument("--prologue-temperature", type=float, help="Prologue: temperature of the prologue tokens")
    sample.add_argument("--fixed-prologue", type=Path, help="Prologue: a token cache with prologue ids; write a "
                        "grid whose rows keep the prologue of the cache's first --count images and resample only "
                        "the visual tokens (--columns - 1 samples per row)")
    sample.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    sample.add_argument("--ema", action="store_true", help="use the EMA weights")
    sample.add_argument("--columns", type=int, default=10)
    sample.add_argument("--fps", type=float, default=4.0, help="frames per second of video GIFs")
    sample.add_argument("--out", type=Path, default=Path("runs/samples"))
    sample.add_argument("--save-ids", type=Path, help="write the ids (grid order) to this JSON file")
    sample.add_argument("--refiner", type=Path, help="CTF refiner checkpoint (for a model trained on coarse labels)")
    sample.add_argument("--refine-temperature", type=float, default=REFINE_DEFAULTS["temperature"],
                        help="CTF refiner pass temperature")
    sample.add_argument("--refine-top-k", type=int, default=REFINE_DEFAULTS["top_k"],
                        help="CTF refiner pass top-k (0 = all codes)")
    sample.add_argument("--refine-top-p", type=float, default=REFINE_DEFAULTS["top_p"])
    sample.add_argument("--refine-cfg", type=float, default=REFINE_DEFAULTS["guidance"],
                        help="CTF refiner guidance scale (1 = off)")
    sample.add_argument("--refine-restrict", action=argparse.BooleanOptionalAction, default=None,
                        help="sample only codes of each position's cluster (default: as the refiner was trained)")
    sample.set_defaults(handler=cmd_sample)

    ctf = commands.add_parser("ctf", help="CTF: codebook clusters and the coarse-to-fine refiner")
    ctf_commands = ctf.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    cluster = ctf_commands.add_parser("cluster", help="cluster a tokenizer's codebook into a fine -> coarse table")
    cluster.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    cluster.add_argument("--clusters", required=True, type=int, help="number of clusters K (coarse labels)")
    cluster.add_argument("--method", default="kmeans", choices=["kmeans", "spherical", "balanced", "random"])
    cluster.add_argument("--restarts", type=int, default=4, help="k-means restarts; the lowest inertia is kept")
    cluster.add_argument("--seed", type=int, default=0)
    cluster.add_argument("--out", required=True, type=Path, help="table file (.safetensors); a -sizes.png beside")
    cluster.set_defaults(handler=cmd_ctf_cluster)
    train_refiner = ctf_commands.add_parser("train-refiner", help="train the refiner: coarse map -> fine ids")
    _add_config_arguments(train_refiner, GPT_PRESETS)
    train_refiner.add_argument("--cache", help="token cache directory (argen tokenize)")
    train_refiner.add_argument("--table", help="fine -> coarse table of the cache's tokenizer (argen ctf cluster)")
    train_refiner.add_argument("--out", help="output run directory (train.out_dir)")
    train_refiner.set_defaults(handler=cmd_ctf_train_refiner)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    bench_sample = bench_commands.add_parser("sample", help="decode speed: ms/step, images/s, bandwidth fraction")
    bench_sample.add_argument("--model", type=Path, help="AR checkpoint directory")
    bench_sample.add_argument("--refiner", type=Path,
                              help="CTF refiner checkpoint: time its pass too (--model is the coarse AR)")
    bench_sample.add_argument("--preset", help=f"model preset with random weights: {', '.join(GPT_PRESETS)}")
    bench_sample.add_argument("--random-weights", action="store_true", help="build --preset with random weights")
    bench_sample.add_argument("--batch", type=int, default=1)
    bench_sample.add_argument("--cfg", type=float, default=1.0)
    bench_sample.add_argument("--parallel", type=int, default=1)
    bench_sample.add_argument("--grid", type=int, default=16, help="token grid side for --preset")
    bench_sample.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    bench_sample.add_argument("--repeats", type=int, default=3)
    bench_sample.add_argument("--bandwidth-gbs", type=float, default=30.0)
    bench_sample.add_argument("--json", action="store_true")
    bench_sample.add_argument("overrides", nargs="*", metavar="key=value", help="model overrides, e.g. n_layer=2")
    bench_sample.set_defaults(handler=cmd_bench_sample)

    convert = commands.add_parser("convert", help="convert LlamaGen / PAR checkpoints to argen checkpoints")
    convert.add_argument("kind", choices=["llamagen", "par", "llamagen-vq"])
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=Path)
    convert.add_argument("--preset", required=True, help="GPT preset (llamagen, par) or VQ preset (llamagen-vq)")
    convert.add_argument("--parallel", type=int, default=4, help="PAR: tokens per parallel step k")
    convert.add_argument("overrides", nargs="*", metavar="key=value")
    convert.set_defaults(handler=cmd_convert)

    evaluation = commands.add_parser("eval", help="metrics: FID, IS, precision/recall, class accuracy",
                                     description="argen eval SAMPLES --ref REF.npz (--classifier DIR | --inception "
                                                 "FILE), or one of the subcommands below")
    eval_commands = evaluation.add_subparsers(dest="subcommand", metavar="subcommand", required=True)

    def add_extractor(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--classifier", type=Path, help="project classifier checkpoint (offline default)")
        parser.add_argument("--inception", type=Path, help="local FID Inception-v3 weight file (never downloaded)")

    samples = eval_commands.add_parser("samples", help="metrics of an ADM .npz or a folder of images")
    samples.add_argument("samples", type=Path)
    samples.add_argument("--ref", required=True, type=Path, help="reference statistics (argen eval ref)")
    add_extractor(samples)
    samples.add_argument("--unconditional", action="store_true", help="ignore labels stored with the samples")
    samples.add_argument("--bootstrap", type=int, default=0, metavar="ROUNDS",
                         help="also report the FID's standard deviation over ROUNDS resamples of the samples")
    samples.add_argument("--out", type=Path, help="also write the JSON here")
    samples.set_defaults(handler=cmd_eval_samples)
    reference = eval_commands.add_parser("ref", help="reference statistics of a dataset split")
    add_extractor(reference)
    reference.add_argument("--dataset", default="fashion-mnist")
    reference.add_argument("--data-dir")
    reference.add_argument("--split", default="test", choices=["train", "test"])
    reference.add_argument("--image-size", type=int, default=32)
    reference.add_argument("--channels", type=int, default=1)
    reference.add_argument("--resize", choices=["pad", "resize"], default="pad", help="see data.resize")
    reference.add_argument("--pad-to", type=int, default=0, help="see data.pad_to (e.g. 32 for Fashion-MNIST at 64)")
    reference.add_argument("--out", required=True, type=Path)
    reference.set_defaults(handler=cmd_eval_ref)
    classifier = eval_commands.add_parser("train-classifier", help="train the project's metric classifier")
    _add_config_arguments(classifier, None)
    classifier.add_argument("--data-dir")
    classifier.add_argument("--out", help="output run directory (train.out_dir)")
    classifier.set_defaults(handler=cmd_eval_train_classifier)
    tokenizer_eval = eval_commands.add_parser("tokenizer", help="rFID, PSNR and codebook usage of a tokenizer")
    tokenizer_eval.add_argument("--tokenizer", required=True, type=Path)
    add_extractor(tokenizer_eval)
    tokenizer_eval.add_argument("--out", type=Path, default=Path("runs/tokenizer-eval"))
    tokenizer_eval.add_argument("--split", default="test", choices=["train", "test"])
    tokenizer_eval.add_argument("--count", type=int, default=0)
    tokenizer_eval.add_argument("--data-dir")
    tokenizer_eval.set_defaults(handler=cmd_eval_tokenizer)
    video_eval = eval_commands.add_parser("video", help="frame FID, temporal distance and class accuracy of videos")
    video_eval.add_argument("samples", type=Path, help="video batch (videos.npz of `argen sample`)")
    video_eval.add_argument("--real", required=True, type=Path, help="real videos (argen video make-dataset)")
    add_extractor(video_eval)
    video_eval.add_argument("--unconditional", action="store_true", help="ignore labels stored with the samples")
    video_eval.add_argument("--out", type=Path, help="also write the JSON here")
    video_eval.set_defaults(handler=cmd_eval_video)

    video = commands.add_parser("video", help="video datasets")
    video_commands = video.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    make_dataset = video_commands.add_parser(
        "make-dataset", help="write a video dataset split as a video batch (.npz) with a GIF and PNG preview",
        description="Overrides are data.* keys, e.g. data.name=moving-digits data.video.frames=4.")
    make_dataset.add_argument("--print-config", action="store_true", help="print the data config and exit")
    make_dataset.add_argument("overrides", nargs="*", metavar="data.key=value")
    make_dataset.add_argument("--tokenizer", type=Path,
                              help="start from the data config of this tokenizer (else moving-fashion-mnist)")
    make_dataset.add_argument("--split", default="test", choices=["train", "test"])
    make_dataset.add_argument("--count", type=int, default=0, help="the first N videos (0 = all)")
    make_dataset.add_argument("--preview", type=int, default=20, help="videos in the preview GIF and strip")
    make_dataset.add_argument("--fps", type=float, default=4.0)
    make_dataset.add_argument("--out", required=True, type=Path, help="video batch file (.npz)")
    make_dataset.set_defaults(handler=cmd_video_make_dataset)

    report_parser = commands.add_parser("report", help="a self-contained HTML report of runs, samples and metrics")
    report_parser.add_argument("--out", type=Path, default=Path("runs/report"))
    report_parser.add_argument("--title", default="argen report")
    report_parser.add_argument("--text", help="an introductory paragraph")
    report_parser.add_argument("--metrics", nargs="*", metavar="[NAME=]FILE.json",
                               help="results of `argen eval --out` (with sampling.json beside: steps, time)")
    report_parser.add_argument("--samples", nargs="*", metavar="[NAME=]SAMPLES.npz", help="grids, a row per class")
    report_parser.add_argument("--media", nargs="*", metavar="[NAME=]FILE.gif",
                               help="image files shown as they are, e.g. the samples.gif of video samples")
    report_parser.add_argument("--log", nargs="*", metavar="[NAME=]log.jsonl", help="training curves")
    report_parser.add_argument("--analysis", nargs="*", metavar="DIR|FILE.json",
                               help="analysis results with a report block (e.g. `argen analyze entropy --out`)")
    report_parser.set_defaults(handler=cmd_report)

    probe = commands.add_parser("probe", help="linear probe of the class: P prologue ids vs the first P visual ids")
    probe.add_argument("--cache", required=True, type=Path, help="token cache with prologue ids (training set)")
    probe.add_argument("--test-cache", type=Path, help="token cache to test on (else a held-out part of --cache)")
    probe.add_argument("--test-fraction", type=float, default=0.2, help="held-out fraction without --test-cache")
    probe.add_argument("--regularization", type=float, default=1.0, help="inverse L2 strength (scikit-learn's C)")
    probe.add_argument("--max-iterations", type=int, default=1000)
    probe.add_argument("--seed", type=int, default=0)
    probe.add_argument("--out", type=Path, help="also write the JSON here")
    probe.set_defaults(handler=cmd_probe)

    demo = commands.add_parser("demo", help="Fashion-MNIST end to end: samples, metrics and an HTML report")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--checkpoints", type=Path, help="checkpoint folder (default: the shipped checkpoints)")
    demo.add_argument("--train", action="store_true", help="train a quick pipeline from scratch first")
    demo.add_argument("--per-class", type=int, default=20, help="samples per class and method")
    demo.add_argument("--per-batch", type=int, default=4,
                      help="images of each class in one sampling batch (1: the latency regime, batch = classes)")
    demo.set_defaults(handler=cmd_demo)

    analyze = commands.add_parser("analyze", help="analyses of data and models")
    analyze_commands = analyze.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    entropy = analyze_commands.add_parser("entropy", help="token dependency maps and per-position entropy "
                                                          "of parallel vs sequential decoding (PAR)")
    entropy.add_argument("--cache", required=True, type=Path, help="token cache (a test split for held-out numbers)")
    entropy.add_argument("--models", nargs="*", default=[], metavar="[NAME=]DIR",
                         help="AR checkpoints; the first is the baseline of the differences")
    entropy.add_argument("--reference", action="extend", nargs="+", default=[], metavar="R,C",
                         help="reference positions (default: centre, corner, edge)")
    entropy.add_argument("--limit", type=int, default=0, help="use the first N images of the cache (0 = all)")
    entropy.add_argument("--model-limit", type=int, default=1000, help="images teacher-forced per model (0 = all)")
    entropy.add_argument("--coarse", type=Path, help="fine -> coarse table (.safetensors, .npy, .json)")
    entropy.add_argument("--alphabet", type=int, default=64,
                         help="without --coarse: merge codes into this many frequency quantiles (0 = full codebook)")
    entropy.add_argument("--correction", default="miller-madow", choices=["miller-madow", "none"])
    entropy.add_argument("--batch", type=int, default=64)
    entropy.add_argument("--device", default="cpu")
    entropy.add_argument("--out", required=True, type=Path)
    entropy.set_defaults(handler=cmd_analyze_entropy)
    return parser


EVAL_SUBCOMMANDS = ("samples", "ref", "train-classifier", "tokenizer", "video", "-h", "--help")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] == "eval" and argv[1] not in EVAL_SUBCOMMANDS:
        argv.insert(1, "samples")  # `argen eval SAMPLES --ref ...`
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"argen: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
