"""What the `argen` command line accepts: every command, its options and their defaults (argen.cli runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, NoReturn

from argen import __version__
from argen.config import CLUSTER_METHODS, DECODE_PRECISIONS, GPT_PRESETS, LIVE_DISPLAY_BUDGET, VQ_PRESETS
from argen.io.paths import check_writable

# The CTF refiner pass's defaults; a --refine-* option away from them needs --refiner.
REFINE_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "guidance": 1.0}


class HelpWithDefaults(argparse.HelpFormatter):
    """--help lists each option's default after its text, unless the text already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one --help away) and every option's default in its --help."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpWithDefaults)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if kwargs.get("help") is None and kwargs.get("default") is not None and kwargs.get("default") is not False:
            kwargs["help"] = "(default: %(default)s)"  # argparse shows nothing for an option without a text
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def output_folder(text: str) -> Path:
    """An output folder argument, refused at parse time (before any work) when it cannot be written."""
    return _writable(text, folder=True)


def output_file(text: str) -> Path:
    """An output file argument, refused at parse time (before any work) when it cannot be written."""
    return _writable(text, folder=False)


def _writable(text: str, folder: bool) -> Path:
    try:
        check_writable(text, folder)
    except OSError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return Path(text)


# `argen eval SAMPLES ...` is short for `argen eval samples SAMPLES ...`
EVAL_SUBCOMMANDS = ("samples", "ref", "train-classifier", "tokenizer", "video", "-h", "--help")
Handler = Callable[[argparse.Namespace], int]  # a command: parsed arguments in, exit status out


def _add_training_arguments(parser: argparse.ArgumentParser, presets: dict[str, Any] | None) -> None:
    """What every training command takes: a model preset (when it has presets), a YAML config, --print-config,
    key=value overrides and the run folder."""
    if presets is not None:
        parser.add_argument("--preset", help=f"model preset: {', '.join(presets)}")
    parser.add_argument("--config", type=Path, help="YAML file merged over the preset")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4")
    parser.add_argument("--out", help="output run directory (train.out_dir)")


def _add_extractor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifier", type=Path, help="project classifier checkpoint (offline default)")
    parser.add_argument("--inception", type=Path, help="local FID Inception-v3 weight file (never downloaded)")


def _add_tokenizer_eval(commands: Any, name: str, handler: Handler) -> None:
    """`argen tokenizer eval` and `argen eval tokenizer`: one command under two names."""
    evaluate = commands.add_parser(name, help="PSNR, codebook usage, a reconstruction grid; rFID and the "
                                   "reconstructions' class accuracy with an extractor; LPIPS with its weight files")
    evaluate.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    _add_extractor(evaluate)
    evaluate.add_argument("--lpips-vgg", type=Path, help="torchvision's VGG16 weights (with --lpips-linear: LPIPS)")
    evaluate.add_argument("--lpips-linear", type=Path, help="LPIPS' lin layers (LlamaGen's vgg.pth)")
    evaluate.add_argument("--out", type=output_folder, default="runs/tokenizer-eval")
    evaluate.add_argument("--split", default="test", choices=["train", "test"])
    evaluate.add_argument("--count", type=int, default=0, help="images to use (0 = all)")
    evaluate.add_argument("--data-dir", help="dataset folder (else the one the tokenizer was trained on)")
    evaluate.set_defaults(handler=handler)


def build_parser(handlers: dict[str, Handler], description: str = "") -> argparse.ArgumentParser:
    """Every command's arguments; `handlers` maps a command's name (e.g. "eval-samples") to what runs it."""
    parser = Parser(prog="argen", description=description)
    parser.add_argument("--version", action="version", version=f"argen {__version__}")
    parser.add_argument("--threads", type=int, help="CPU threads of this process (default: one per core; on a "
                        "machine shared with other jobs, or under torchrun, 1 is faster; OMP_NUM_THREADS also works)")
    commands = parser.add_subparsers(dest="command", metavar="command")

    tokenizer = commands.add_parser("tokenizer", help="train or evaluate a VQ tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    train = tokenizer_commands.add_parser("train", help="train a VQ tokenizer on images")
    _add_training_arguments(train, VQ_PRESETS)
    train.add_argument("--data-dir", help="dataset folder (else found automatically)")
    train.set_defaults(handler=handlers["tokenizer-train"])
    _add_tokenizer_eval(tokenizer_commands, "eval", handlers["eval-tokenizer"])

    tokenize = commands.add_parser("tokenize", help="write the token cache of a dataset")
    tokenize.add_argument("--tokenizer", required=True, type=Path)
    tokenize.add_argument("--out", required=True, type=output_folder)
    tokenize.add_argument("--split", default="train", choices=["train", "test"])
    tokenize.add_argument("--data-dir")
    tokenize.add_argument("--limit", type=int, default=0, help="tokenize only the first N images (0 = all)")
    tokenize.add_argument("--holdout", type=int, default=0, help="keep the split's last N images out of the cache "
                          "as a validation split (guidance is chosen on it: argen eval ref --holdout-of CACHE)")
    tokenize.add_argument("--flip-copies", action="store_true", help="also store horizontally mirrored copies "
                          "(right for clothing and natural images, wrong for digits and text)")
    tokenize.add_argument("--ten-crops", action="store_true", help="store LlamaGen's ten crops of every image "
                          "(centre crop at 1.1x, 5 crops and their mirrors); training draws one per sample and epoch")
    tokenize.add_argument("--shard-size", type=int, default=16384, help="samples per shard file (the unit of work "
                          "of a rank and of a restart)")
    tokenize.add_argument("--workers", type=int, help="DataLoader processes decoding images (default: the "
                          "tokenizer's data.num_workers)")
    tokenize.set_defaults(handler=handlers["tokenize"])

    train_ar = commands.add_parser("train", help="train the AR transformer on a token cache")
    _add_training_arguments(train_ar, GPT_PRESETS)
    train_ar.add_argument("--cache", help="token cache directory (argen tokenize)")
    train_ar.add_argument("--coarse-table", help="CTF: train on the coarse labels of this table (argen ctf cluster)")
    train_ar.set_defaults(handler=handlers["train"])

    sample = commands.add_parser("sample", help="sample images (PNG grid + ADM .npz), videos (GIF, PNG strip, "
                                               ".npz) or token ids")
    sample.add_argument("--model", required=True, type=Path, help="AR checkpoint or pipeline directory")
    sample.add_argument("--tokenizer", type=Path, help="tokenizer checkpoint (else the one the model names)")
    sample.add_argument("--classes", help="comma-separated class ids, e.g. 3,7 (default: every class)")
    sample.add_argument("--count", type=int, help="images, cycling through --classes (default: one per listed "
                        "class, or 10); with --fixed-prologue, the rows (default 10)")
    sample.add_argument("--batch", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--parallel", type=int, default=0,
                        help="tokens per step the model must decode (PAR's k; 0 = the model's own layout)")
    sample.add_argument("--greedy", action="store_true", help="argmax decoding")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=int, default=0)
    sample.add_argument("--top-p", type=float, default=1.0)
    sample.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    sample.add_argument("--cfg-schedule", default="constant", choices=["constant", "linear", "cosine"],
                        help="ramp of the guidance over a segment's tokens, from 1 to --cfg (default: %(default)s)")
    sample.add_argument("--cfg-power", type=float, default=1.0, help="the ramp's power p: cosine is "
                        "1 + (s - 1)(1 - cos(pi t^p)) / 2 (Prologue's visual ramp: p 0.2-0.25) (default: %(default)s)")
    sample.add_argument("--prologue-cfg", type=float, help="Prologue: constant guidance on the prologue tokens "
                        "(--cfg, --cfg-schedule and --cfg-power then apply to the visual tokens; the paper: < 1)")
    sample.add_argument("--prologue-temperature", type=float, help="Prologue: temperature of the prologue tokens")
    sample.add_argument("--fixed-prologue", type=Path, help="Prologue: a token cache with prologue ids; write a "
                        "grid whose rows keep the prologue of the cache's first --count images and resample only "
                        "the visual tokens (--columns - 1 samples per row)")
    sample.add_argument("--dtype", default="auto", choices=DECODE_PRECISIONS,
                        help="decode precision; auto = the fastest on this CPU (docs/speed.md)")
    sample.add_argument("--speculative", type=int, default=0, metavar="W", help="speculative Jacobi decoding over "
                        "windows of W steps: fewer forward passes, the same distribution (0 = off; docs/speed.md)")
    sample.add_argument("--ema", action="store_true", help="use the EMA weights")
    sample.add_argument("--columns", type=int, default=10)
    sample.add_argument("--fps", type=float, default=4.0, help="frames per second of video GIFs")
    sample.add_argument("--out", type=output_folder, default="runs/samples")
    sample.add_argument("--save-ids", type=output_file, help="write the ids (grid order) to this JSON file")
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
    sample.set_defaults(handler=handlers["sample"])

    data = commands.add_parser("data", help="prepare datasets")
    data_commands = data.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    pack = data_commands.add_parser("pack", help="pack an image folder (<class>/<image>) into WebDataset tar shards "
                                                 "(data.name=webdataset)")
    pack.add_argument("--images", required=True, type=Path, help="image folder, one sub-folder per class")
    pack.add_argument("--out", required=True, type=output_folder, help="folder for the shards and shards.json")
    pack.add_argument("--shard-size", type=int, default=2000, help="images per tar shard")
    pack.set_defaults(handler=handlers["data-pack"])

    ctf = commands.add_parser("ctf", help="CTF: codebook clusters and the coarse-to-fine refiner")
    ctf_commands = ctf.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    cluster = ctf_commands.add_parser("cluster", help="cluster a tokenizer's codebook into a fine -> coarse table")
    cluster.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    cluster.add_argument("--clusters", required=True, type=int, help="number of clusters K (coarse labels)")
    cluster.add_argument("--method", default="spherical", choices=CLUSTER_METHODS,
                         help="spherical (cosine) k-means, as CTF clusters l2-normalised codes; kmeans (Euclidean); "
                         "balanced (equal sizes); random (the CTF paper's negative ablation) (default: %(default)s)")
    cluster.add_argument("--restarts", type=int, default=4, help="k-means restarts; the lowest inertia is kept")
    cluster.add_argument("--seed", type=int, default=0)
    cluster.add_argument("--out", required=True, type=output_file,
                         help="table file (.safetensors); a -sizes.png beside")
    cluster.set_defaults(handler=handlers["ctf-cluster"])
    redundancy = ctf_commands.add_parser(
        "redundancy", help="CTF's premise: PSNR after swapping each token for a random member of its cluster")
    redundancy.add_argument("--tokenizer", required=True, type=Path, help="tokenizer checkpoint directory")
    redundancy.add_argument("--clusters", required=True, type=int, help="number of clusters K (coarse labels)")
    redundancy.add_argument("--methods", nargs="+", default=list(CLUSTER_METHODS), choices=CLUSTER_METHODS,
                            help="clusterings to compare (default: %(default)s)")
    redundancy.add_argument("--count", type=int, default=500, help="test images (default: %(default)s)")
    redundancy.add_argument("--seed", type=int, default=0)
    redundancy.add_argument("--out", type=output_file, help="also write the JSON here")
    redundancy.set_defaults(handler=handlers["ctf-redundancy"])
    ceiling = ctf_commands.add_parser("ceiling", help="what the fine stage alone costs: test images' true coarse "
                                      "maps refined and decoded (token accuracy, PSNR, samples.npz for argen eval)")
    ceiling.add_argument("--refiner", required=True, type=Path, help="refiner checkpoint directory")
    ceiling.add_argument("--tokenizer", required=True, type=Path, help="the tokenizer the refiner was trained on")
    ceiling.add_argument("--count", type=int, default=1000, help="test images")
    ceiling.add_argument("--refine-temperature", type=float, default=1.0)
    ceiling.add_argument("--seed", type=int, default=0)
    ceiling.add_argument("--out", required=True, type=output_folder)
    ceiling.set_defaults(handler=handlers["ctf-ceiling"])
    train_refiner = ctf_commands.add_parser("train-refiner", help="train the refiner: coarse map -> fine ids")
    _add_training_arguments(train_refiner, GPT_PRESETS)
    train_refiner.add_argument("--cache", help="token cache directory (argen tokenize)")
    train_refiner.add_argument("--table", help="fine -> coarse table of the cache's tokenizer (argen ctf cluster)")
    train_refiner.set_defaults(handler=handlers["ctf-train-refiner"])

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    bench_sample = bench_commands.add_parser("sample", help="decode speed: ms/step, images/s, bandwidth fraction")
    bench_sample.add_argument("--model", type=Path, help="AR checkpoint directory")
    bench_sample.add_argument("--refiner", type=Path,
                              help="CTF refiner checkpoint: time its pass too (--model is the coarse AR)")
    bench_sample.add_argument("--preset", help=f"model preset with random weights: {', '.join(GPT_PRESETS)}")
    bench_sample.add_argument("--random-weights", action="store_true", help="build --preset with random weights")
    bench_sample.add_argument("--batch", type=int, default=1)
    bench_sample.add_argument("--cfg", type=float, help="guidance scale (default: the model's shipped setting, as "
                              "argen sample uses it; 1 for --preset)")
    bench_sample.add_argument("--parallel", type=int, default=1)
    bench_sample.add_argument("--grid", type=int, default=16, help="token grid side for --preset")
    bench_sample.add_argument("--dtype", default="auto", choices=DECODE_PRECISIONS)
    bench_sample.add_argument("--speculative", type=int, default=0, metavar="W",
                              help="speculative Jacobi decoding over windows of W steps (0 = off)")
    bench_sample.add_argument("--repeats", type=int, default=3)
    bench_sample.add_argument("--bandwidth-gbs", type=float,
                              help="memory bandwidth of the bound (default: measured once on this machine, cached)")
    bench_sample.add_argument("--json", action="store_true")
    bench_sample.add_argument("overrides", nargs="*", metavar="key=value", help="model overrides, e.g. n_layer=2")
    bench_sample.set_defaults(handler=handlers["bench-sample"])
    bench_live = bench_commands.add_parser("live", help="what watching a run costs (argen serve's live display)")
    bench_live.add_argument("--model", required=True, type=Path, help="AR checkpoint or pipeline directory")
    bench_live.add_argument("--tokenizer", type=Path, help="tokenizer checkpoint (else the one the model names)")
    bench_live.add_argument("--refiner", type=Path, help="CTF: the refiner of a coarse AR model")
    bench_live.add_argument("--batch", type=int, default=1)
    bench_live.add_argument("--cfg", type=float, default=2.0, help="classifier-free guidance scale (1 = off)")
    bench_live.add_argument("--repeats", type=int, default=5)
    bench_live.add_argument("--budget", type=float, default=LIVE_DISPLAY_BUDGET,
                            help="share of the sampling time that partial renders may take")
    bench_live.add_argument("--json", action="store_true")
    bench_live.set_defaults(handler=handlers["bench-live"])

    convert = commands.add_parser("convert", help="convert LlamaGen / PAR checkpoints to argen checkpoints")
    convert.add_argument("kind", choices=["llamagen", "par", "llamagen-vq"])
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=output_folder)
    convert.add_argument("--preset", required=True, help="GPT preset (llamagen, par) or VQ preset (llamagen-vq)")
    convert.add_argument("--parallel", type=int, default=4, help="PAR: tokens per parallel step k")
    convert.add_argument("overrides", nargs="*", metavar="key=value")
    convert.set_defaults(handler=handlers["convert"])

    evaluation = commands.add_parser("eval", help="metrics: FID, IS, precision/recall, class accuracy",
                                     description="argen eval SAMPLES --ref REF.npz (--classifier DIR | --inception "
                                                 "FILE), or one of the subcommands below")
    eval_commands = evaluation.add_subparsers(dest="subcommand", metavar="subcommand", required=True)

    samples = eval_commands.add_parser("samples", help="metrics of an ADM .npz or a folder of images")
    samples.add_argument("samples", type=Path)
    samples.add_argument("--ref", required=True, type=Path, help="reference statistics (argen eval ref)")
    _add_extractor(samples)
    samples.add_argument("--unconditional", action="store_true", help="ignore labels stored with the samples")
    samples.add_argument("--bootstrap", type=int, default=0, metavar="ROUNDS",
                         help="also report the FID's standard deviation over ROUNDS resamples of the samples")
    samples.add_argument("--out", type=output_file, help="also write the JSON here")
    samples.set_defaults(handler=handlers["eval-samples"])
    reference = eval_commands.add_parser("ref", help="reference statistics of a dataset split")
    _add_extractor(reference)
    reference.add_argument("--dataset", help="data.name of the images: fashion-mnist, idx, imagefolder, digits, ... "
                           "(default: the dataset the --classifier was trained on; must be that one)")
    reference.add_argument("--data-dir", help="their folder (data.path; default: the classifier's; Fashion-MNIST is "
                           "found by itself)")
    reference.add_argument("--split", default="test", choices=["train", "test"])
    reference.add_argument("--image-size", type=int, help="the samples' size (default: the classifier's data size)")
    reference.add_argument("--channels", type=int, help="1 or 3 (default: the classifier's)")
    reference.add_argument("--resize", choices=["pad", "resize"], default="pad", help="see data.resize")
    reference.add_argument("--pad-to", type=int, default=0, help="see data.pad_to (e.g. 32 for Fashion-MNIST at 64)")
    reference.add_argument("--skip", type=int, default=0, help="leave out the split's first N images (e.g. those "
                           "an AR trained on with cache_limit=N: the rest is a validation split)")
    reference.add_argument("--limit", type=int, default=0, help="then use only the next N images (0 = all)")
    reference.add_argument("--holdout-of", type=Path, metavar="CACHE",
                           help="the validation images a token cache kept aside (argen tokenize --holdout N), as "
                           "the models see them (instead of --dataset, --split, --skip and sizes)")
    reference.add_argument("--out", required=True, type=output_file)
    reference.set_defaults(handler=handlers["eval-ref"])
    classifier = eval_commands.add_parser("train-classifier", help="train the project's metric classifier")
    _add_training_arguments(classifier, None)
    classifier.add_argument("--data-dir", help="the images' folder (data.path); name the dataset with data.name=...")
    classifier.set_defaults(handler=handlers["eval-train-classifier"])
    _add_tokenizer_eval(eval_commands, "tokenizer", handlers["eval-tokenizer"])
    video_eval = eval_commands.add_parser("video", help="frame FID, temporal distance and class accuracy of videos; "
                                          "FVD with --i3d")
    video_eval.add_argument("samples", type=Path, help="video batch (videos.npz of `argen sample`)")
    video_eval.add_argument("--real", required=True, type=Path, help="real videos (argen video make-dataset)")
    _add_extractor(video_eval)
    video_eval.add_argument("--i3d", type=Path, help="Inception-I3D (Kinetics-400) weights in pytorch-i3d's layout, "
                            "e.g. rgb_imagenet.pt: FVD too (16 frames at 224 px)")
    video_eval.add_argument("--unconditional", action="store_true", help="ignore labels stored with the samples")
    video_eval.add_argument("--out", type=output_file, help="also write the JSON here")
    video_eval.set_defaults(handler=handlers["eval-video"])

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
    make_dataset.add_argument("--out", required=True, type=output_file, help="video batch file (.npz)")
    make_dataset.set_defaults(handler=handlers["video-make-dataset"])

    report_parser = commands.add_parser("report", help="a self-contained HTML report of runs, samples and metrics")
    report_parser.add_argument("--out", type=output_folder, default="runs/report")
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
    report_parser.set_defaults(handler=handlers["report"])

    probe = commands.add_parser("probe", help="linear probe of the class: P prologue ids vs the first P visual ids")
    probe.add_argument("--cache", required=True, type=Path, help="token cache with prologue ids (training set)")
    probe.add_argument("--test-cache", type=Path, help="token cache to test on (else a held-out part of --cache)")
    probe.add_argument("--test-fraction", type=float, default=0.2, help="held-out fraction without --test-cache")
    probe.add_argument("--regularization", type=float, default=1.0, help="inverse L2 strength (scikit-learn's C)")
    probe.add_argument("--max-iterations", type=int, default=1000)
    probe.add_argument("--seed", type=int, default=0)
    probe.add_argument("--out", type=output_file, help="also write the JSON here")
    probe.set_defaults(handler=handlers["probe"])

    demo = commands.add_parser("demo", help="Fashion-MNIST end to end: samples, metrics and an HTML report")
    demo.add_argument("--out", type=output_folder, default="runs/demo")
    demo.add_argument("--checkpoints", type=Path, help="checkpoint folder (default: the shipped checkpoints)")
    demo.add_argument("--train", action="store_true", help="train a quick pipeline from scratch first")
    demo.add_argument("--per-class", type=int, default=20, help="samples per class and method")
    demo.add_argument("--per-batch", type=int, default=4,
                      help="images of each class in one sampling batch (1: the latency regime, batch = classes)")
    demo.set_defaults(handler=handlers["demo"])

    serve = commands.add_parser("serve", help="a local web app: sample every method and watch the decode order")
    serve.add_argument("--checkpoints", nargs="+", default=[], metavar="[NAME=]DIR",
                       help="checkpoint sets like checkpoints/fmnist64 (every method found) or pipeline folders "
                       "(default: the shipped checkpoints/fmnist64)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a host name the server answers to besides its addresses and localhost (repeatable; "
                       "behind a reverse proxy, the proxy's public name; * answers any name)")
    serve.set_defaults(handler=handlers["serve"])

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
    entropy.add_argument("--out", required=True, type=output_folder)
    entropy.set_defaults(handler=handlers["analyze-entropy"])
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse a command line; `key=value` overrides may come anywhere, also after an option (argparse alone takes
    them only before the first one), and `argen eval SAMPLES` means `argen eval samples SAMPLES`."""
    argv = list(argv)
    if len(argv) > 1 and argv[0] == "eval" and argv[1] not in EVAL_SUBCOMMANDS:
        argv.insert(1, "samples")
    args, unknown = parser.parse_known_args(argv)
    overrides = [item for item in unknown if "=" in item and not item.startswith("-")]
    if unknown and (overrides != unknown or not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args
