"""`argen eval samples|ref|train-classifier|tokenizer|video`: FID, IS, precision/recall and class accuracy of
samples against reference statistics; the references; the project's metric classifier; videos (FVD with I3D).
`argen eval SAMPLES ...` is short for `argen eval samples SAMPLES ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from argen.commands import tokenizer
from argen.commands.arguments import add_extractor, output_file, print_json
from argen.commands.training import add_training_arguments, print_or_train, run_config

SUBCOMMANDS = ("samples", "ref", "train-classifier", "tokenizer", "video", "-h", "--help")


def add_bootstrap(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--bootstrap", type=int, default=0, metavar="ROUNDS", help=f"also report {what}")


def add(commands: Any) -> None:
    evaluation = commands.add_parser(
        "eval",
        help="metrics: FID, IS, precision/recall, class accuracy",
        description="argen eval SAMPLES --ref REF.npz (--classifier DIR | --inception "
        "FILE), or one of the subcommands below",
    )
    subcommands = evaluation.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    samples = subcommands.add_parser("samples", help="metrics of an ADM .npz or a folder of images")
    samples.add_argument("samples", type=Path)
    samples.add_argument("--ref", required=True, type=Path, help="reference statistics (argen eval ref)")
    add_extractor(samples)
    samples.add_argument("--unconditional", action="store_true", help="ignore labels stored with the samples")
    add_bootstrap(samples, "the FID's standard deviation over ROUNDS resamples of the samples")
    samples.add_argument("--out", type=output_file, help="also write the JSON here")
    samples.set_defaults(run=run_samples)
    reference = subcommands.add_parser("ref", help="reference statistics of a dataset split")
    add_extractor(reference)
    reference.add_argument(
        "--dataset",
        help="data.name of the images: fashion-mnist, idx, imagefolder, digits, ... "
        "(default: the dataset the --classifier was trained on; must be that one)",
    )
    reference.add_argument(
        "--data-dir", help="their folder (data.path; default: the classifier's; Fashion-MNIST is found by itself)"
    )
    reference.add_argument("--split", default="test", choices=["train", "test"])
    reference.add_argument("--image-size", type=int, help="the samples' size (default: the classifier's data size)")
    reference.add_argument("--channels", type=int, help="1 or 3 (default: the classifier's)")
    reference.add_argument("--resize", choices=["pad", "resize"], default="pad", help="see data.resize")
    reference.add_argument("--pad-to", type=int, default=0, help="see data.pad_to (e.g. 32 for Fashion-MNIST at 64)")
    reference.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the split's first N images (e.g. those "
        "an AR trained on with cache_limit=N: the rest is a validation split)",
    )
    reference.add_argument("--limit", type=int, default=0, help="then use only the next N images (0 = all)")
    reference.add_argument(
        "--holdout-of",
        type=Path,
        metavar="CACHE",
        help="the validation images a token cache kept aside (argen tokenize --holdout N), as "
        "the models see them (instead of --dataset, --split, --skip and sizes)",
    )
    reference.add_argument("--out", required=True, type=output_file)
    reference.set_defaults(run=run_ref)
    classifier = subcommands.add_parser("train-classifier", help="train the project's metric classifier")
    add_training_arguments(classifier, None)
    classifier.add_argument("--data-dir", help="the images' folder (data.path); name the dataset with data.name=...")
    classifier.set_defaults(run=run_train_classifier)
    tokenizer.add_eval(subcommands, "tokenizer")
    video = subcommands.add_parser(
        "video", help="frame FID, temporal distance and class accuracy of videos; FVD with --i3d"
    )
    video.add_argument("samples", type=Path, help="video batch (videos.npz of `argen sample`)")
    video.add_argument("--real", required=True, type=Path, help="real videos (argen video make-dataset)")
    add_extractor(video)
    video.add_argument(
        "--i3d",
        type=Path,
        help="Inception-I3D (Kinetics-400) weights in pytorch-i3d's layout, "
        "e.g. rgb_imagenet.pt: FVD too (16 frames at 224 px)",
    )
    video.add_argument("--unconditional", action="store_true", help="ignore labels stored with the samples")
    add_bootstrap(video, "the standard deviations of frame FID and video accuracy over ROUNDS resamples of the videos")
    video.add_argument("--out", type=output_file, help="also write the JSON here")
    video.set_defaults(run=run_video)


def shorthand(argv: list[str]) -> list[str]:
    """`argen eval SAMPLES ...` as `argen eval samples SAMPLES ...`."""
    if len(argv) > 1 and argv[0] == "eval" and argv[1] not in SUBCOMMANDS:
        return [argv[0], "samples", *argv[1:]]
    return argv


def run_samples(args: argparse.Namespace) -> int:
    from argen.eval.distributed import evaluate_across_ranks
    from argen.eval.inception import load_extractor
    from argen.eval.npz import read_samples
    from argen.eval.reference import ReferenceStatistics, evaluate
    from argen import distributed

    files = {"samples_file": str(args.samples), "reference_file": str(args.ref)}
    if distributed.under_torchrun():
        context = distributed.setup()
        try:
            extractor = load_extractor(args.classifier, args.inception, device=context.device)
            result = evaluate_across_ranks(
                args.samples,
                ReferenceStatistics.load(args.ref),
                extractor,
                context,
                not args.unconditional,
                args.bootstrap,
            )
        finally:
            distributed.teardown(context)
        return 0 if result is None else print_json({**result, **files}, args.out)
    batch = read_samples(args.samples)
    labels = batch.labels if batch.labels is not None and not args.unconditional else None
    reference = ReferenceStatistics.load(args.ref)
    reference.check_samples(batch.images.shape[1])
    result = evaluate(
        batch.images, reference, load_extractor(args.classifier, args.inception), labels, bootstrap=args.bootstrap
    )
    return print_json({**result, **files}, args.out)


def run_ref(args: argparse.Namespace) -> int:
    from argen.eval.inception import load_extractor
    from argen.eval.reference import dataset_reference, reference_data

    data = reference_data(
        args.classifier,
        args.dataset,
        args.data_dir,
        args.split,
        args.image_size,
        args.channels,
        args.resize,
        args.pad_to,
        args.skip,
        args.limit,
        args.holdout_of,
    )
    reference = dataset_reference(data, load_extractor(args.classifier, args.inception))
    print(f"reference statistics of {reference.describe()} ({reference.extractor}): {reference.save(args.out)}")
    return 0


def run_train_classifier(args: argparse.Namespace) -> int:
    from argen.config import ClassifierRunConfig
    from argen.train.classifier_task import classifier_test_accuracy, train_classifier

    config = run_config(args, ClassifierRunConfig, {"data.path": args.data_dir, "train.out_dir": args.out})
    directory = print_or_train(args, config, train_classifier, "classifier checkpoint")
    if directory is not None:
        print(f"test accuracy: {classifier_test_accuracy(directory, config):.4f}")
    return 0


def run_video(args: argparse.Namespace) -> int:
    from argen.eval.i3d import I3DFeatures
    from argen.eval.inception import load_extractor
    from argen.eval.npz import read_npz
    from argen.eval.video import evaluate_videos

    samples, real = read_npz(args.samples, video=True), read_npz(args.real, video=True)
    i3d = I3DFeatures.from_file(args.i3d) if args.i3d else None
    result = evaluate_videos(
        samples.images,
        real.images,
        load_extractor(args.classifier, args.inception),
        samples.labels if not args.unconditional else None,
        i3d,
        args.bootstrap,
    )
    if i3d is None:
        print("argen eval video: no FVD: it needs Inception-I3D weights, --i3d FILE (docs/video.md)", file=sys.stderr)
    return print_json({**result, "samples_file": str(args.samples), "real_file": str(args.real)}, args.out)
