"""`argen demo`: Fashion-MNIST end to end: every decoding method side by side, with metrics and a report.

By default it uses the small checkpoints shipped in the repository (`checkpoints/fmnist64/`, each with a
model card naming the command that made it); `--train` (or a missing folder) trains a quick set first.
Each method samples the same classes with the same seed, a few images of every class per batch (`per_batch`;
1 is the latency regime, where fewer steps mean the most saved time), and is scored against the shipped
reference statistics.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from argen.catalog import COMPONENTS, METHODS, SAMPLING, shipped_checkpoints
from argen.config import (
    ARRunConfig,
    ClassifierRunConfig,
    DataConfig,
    GPT_PRESETS,
    GPTConfig,
    PrologueTrainConfig,
    RefinerConfig,
    RefinerRunConfig,
    TokenizerRunConfig,
    TrainConfig,
    VQ_PRESETS,
    VQConfig,
    VQLossConfig,
    preset,
)
from argen.ctf.cluster import cluster_tokenizer
from argen.data import image_batches, load_dataset
from argen.data.token_cache import TokenDataset
from argen.data.tokenize import tokenize
from argen.eval import report
from argen.eval.features import ClassifierExtractor
from argen.eval.reference import ReferenceStatistics, compute_reference, evaluate
from argen.eval.tokenizer import evaluate_tokenizer
from argen.io.load import ar_config_from_cache, open_coarse_table, refiner_config_from_cache
from argen.pipeline import load as load_pipeline
from argen.sample import SamplingOptions
from argen.train import recipes
from argen.train.classifier_task import train_classifier

OPTION_NAMES = {field.name for field in dataclasses.fields(SamplingOptions)}

QUICK_TRAIN_MINUTES = 10  # `--train` at scale 1 on 2 idle cores: 10.1 minutes measured (docs/results.md)
DATA = DataConfig(name="fashion-mnist", image_size=64, channels=1, pad_to=32, resize="resize")
CTF_CLUSTERS = 128  # clusters of the 1024 codes, by spherical k-means as the CTF paper clusters (docs/ctf.md)


def quick_train(out_dir: Path, progress: bool = True, scale: float = 1.0) -> Path:
    """Train everything the demo shows on Fashion-MNIST with short schedules: a tokenizer, its Post prologue
    variant, a classifier and one tiny model per method (CTF's refiner is shared by the combined model: the
    Post variant keeps the visual codebook); returns a folder laid out like the shipped checkpoints
    (symbolic links to the runs)."""

    def steps(count: int) -> int:
        return max(2, int(count * scale))

    def train(
        steps_count: int, lr: float, run: str, batch_size: int, warmup: int, weight_decay: float = 0.0
    ) -> TrainConfig:
        return TrainConfig(
            steps=steps(steps_count),
            batch_size=batch_size,
            lr=lr,
            schedule="cosine",
            warmup_steps=warmup,
            weight_decay=weight_decay,
            out_dir=str(out_dir / run),
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    vq = dataclasses.replace(preset(VQ_PRESETS, "VQ-CPU-32", VQConfig), image_size=DATA.image_size)
    runs = {
        "tokenizer": recipes.train_tokenizer(
            TokenizerRunConfig(
                model=vq,
                loss=VQLossConfig(restart_dead_codes_every=20),
                data=DATA,
                train=train(150, 1e-3, "tokenizer-run", 16, 10),
            ),
            progress,
        )
    }
    # Prologue "Post": the visual tokenizer frozen, 16 prologue tokens over 64 codes (the demo's recipe).
    runs["prologue-tokenizer"] = recipes.train_tokenizer(
        TokenizerRunConfig(
            model=dataclasses.replace(vq, prologue_tokens=16, prologue_codebook_size=64),
            loss=VQLossConfig(restart_dead_codes_every=0),
            data=DATA,
            prologue=PrologueTrainConfig(
                visual_tokenizer=str(runs["tokenizer"]), freeze_visual=True, entropy_weight=0.1
            ),
            train=train(60, 3e-4, "prologue-tokenizer-run", 16, 5),
        ),
        progress,
    )
    caches = {
        name: tokenize(runs[name], out_dir / f"{name}-cache", progress=progress, limit=steps(8000))
        for name in ("tokenizer", "prologue-tokenizer")
    }
    tables = {name: out_dir / f"{name}-ctf{CTF_CLUSTERS}.safetensors" for name in caches}
    for name, table in tables.items():
        cluster_tokenizer(runs[name], CTF_CLUSTERS, table, method="spherical")
    tiny = preset(GPT_PRESETS, "GPT-T", GPTConfig)
    for method in METHODS:
        coarse = method.refiner is not None  # CTF: the AR predicts the cluster labels of its tokenizer's table
        table = str(tables[method.tokenizer]) if coarse else ""
        config = ARRunConfig(
            model=tiny,
            layout=method.layout,
            cache=str(caches[method.tokenizer]),
            coarse_table=table,
            train=train(250, 3e-3, f"{method.checkpoint}-run", 32, 20, weight_decay=0.05),
        )
        cache = TokenDataset(caches[method.tokenizer])
        runs[method.checkpoint] = recipes.train_ar(
            ar_config_from_cache(config, cache, open_coarse_table(table, cache) if coarse else None), progress
        )
    refiner = RefinerRunConfig(
        model=tiny,
        refiner=RefinerConfig(coarse_noise=0.1),
        cache=str(caches["tokenizer"]),
        coarse_table=str(tables["tokenizer"]),
        train=train(250, 3e-3, "ctf-refiner-run", 32, 20, weight_decay=0.05),
    )
    runs["ctf-refiner"] = recipes.train_refiner(
        refiner_config_from_cache(refiner, TokenDataset(caches["tokenizer"]), CTF_CLUSTERS), progress
    )
    classifier_config = ClassifierRunConfig(data=dataclasses.replace(DATA, image_size=32, pad_to=0, resize="pad"))
    classifier_config = dataclasses.replace(
        classifier_config,
        train=dataclasses.replace(classifier_config.train, steps=steps(200), out_dir=str(out_dir / "classifier-run")),
    )
    runs["classifier"] = train_classifier(classifier_config, progress)
    folder = out_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in runs.items():
        target = folder / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(Path(source).resolve(), target_is_directory=True)
    return folder


def _side_by_side(grids: list[torch.Tensor], classes: int, columns: int) -> torch.Tensor:
    """Per class row: `columns` samples of each method, methods separated by a white spacer image."""
    rows = []
    for row in range(classes):
        blocks = []
        for index, images in enumerate(grids):  # images (classes, per_class, C, H, W)
            if index:
                blocks.append(torch.full_like(images[row, :1], 255))
            blocks.append(images[row, :columns])
        rows.append(torch.cat(blocks))
    return torch.cat(rows)  # (classes * (methods * (columns + 1) - 1), C, H, W)


def _sample_method(
    pipeline, classes: int, per_class: int, per_batch: int, sampling: dict
) -> tuple[torch.Tensor, float, int]:
    """Batches of `per_batch` images of every class until each class has `per_class`; returns uint8 images
    (classes, per_class, C, H, W), the sampling seconds (token generation only) and the number of batches."""
    counts = [min(per_batch, per_class - start) for start in range(0, per_class, per_batch)]  # per class, per batch
    labels = torch.cat([torch.arange(classes).repeat_interleave(count) for count in counts])
    samples = pipeline.sample(labels, classes * per_batch, torch.Generator().manual_seed(0), **sampling)
    parts = samples.images.split([classes * count for count in counts])
    images = torch.cat([part.view(classes, count, *part.shape[1:]) for part, count in zip(parts, counts)], 1)
    return images, samples.seconds, len(counts)


def run_demo(
    out_dir: str | Path = "runs/demo",
    checkpoints: str | Path | None = None,
    train: bool = False,
    per_class: int = 20,
    progress: bool = True,
    train_scale: float = 1.0,
    per_batch: int = 4,
) -> dict[str, Any]:
    """Run the demo; returns the numbers it printed and the report path."""
    if per_class < 2:
        raise ValueError(f"per_class must be >= 2 (precision/recall need neighbours), got {per_class}")
    if per_batch < 1:
        raise ValueError(f"per_batch (images of each class in one batch) must be >= 1, got {per_batch}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    folder = Path(checkpoints) if checkpoints else shipped_checkpoints()
    if train or folder is None:
        print(
            f"argen demo: training two tokenizers, {len(METHODS)} AR models, a CTF refiner and a classifier on "
            f"Fashion-MNIST first (about {QUICK_TRAIN_MINUTES * train_scale:.0f} minutes on 2 cores) ...",
            flush=True,
        )
        folder = quick_train(out_dir / "train", progress, train_scale)
    for name in COMPONENTS:
        if not (folder / name / "config.json").is_file():
            raise FileNotFoundError(f"{folder / name} is not a checkpoint; run `argen demo --train`")

    tokenizer_metrics = evaluate_tokenizer(folder / "tokenizer", out_dir / "tokenizer", count=200, progress=progress)
    extractor = ClassifierExtractor.from_checkpoint(folder / "classifier")
    reference_path = folder / "reference.npz"
    if reference_path.is_file():
        reference = ReferenceStatistics.load(reference_path)
    else:
        test = load_dataset(dataclasses.replace(DATA, split="test"), training=False)
        reference = compute_reference(image_batches(test), extractor)

    rows, grids, class_names = [], [], ()
    for method in METHODS:
        pipeline = load_pipeline(
            folder / method.checkpoint,
            tokenizer=folder / method.tokenizer,
            refiner=folder / method.refiner if method.refiner else None,
        )
        classes, class_names = pipeline.config.model.num_classes, pipeline.class_names
        sampling = {**SAMPLING, **pipeline.tuned_sampling}
        images, seconds, batches = _sample_method(pipeline, classes, per_class, per_batch, sampling)
        options = SamplingOptions(**{name: value for name, value in sampling.items() if name in OPTION_NAMES})
        grids.append(images)
        labels = torch.arange(classes).repeat_interleave(per_class).numpy()
        # One Inception Score split: a few hundred samples are too few for ten.
        metrics = evaluate(images.flatten(0, 1).permute(0, 2, 3, 1).numpy(), reference, extractor, labels, splits=1)
        # Forward passes per image: the AR steps (prologue included), plus CTF's one refiner pass.
        rows.append(
            {
                "method": method.name,
                "steps": pipeline.forward_passes,
                "guidance": options.describe("guidance"),
                "temperature": options.describe("temperature"),
                "ms_per_batch": round(1000 * seconds / batches, 1),
                "images_per_s": round(classes * per_class / seconds, 2),
                "fid": round(metrics["fid"], 2),
                "inception_score": round(metrics["inception_score"], 3),
                "precision": round(metrics["precision"], 3),
                "recall": round(metrics["recall"], 3),
                "class_accuracy": round(metrics["class_accuracy"], 3),
            }
        )
    for row in rows:
        row["speedup"] = round(row["images_per_s"] / rows[0]["images_per_s"], 2)

    names = " | ".join(method.name for method in METHODS)
    shown = min(per_class, 4)  # samples per class and method in the picture
    sections: list[Any] = [
        report.Text(
            "argen demo",
            f"Fashion-MNIST 64x64 (16x16 tokens), checkpoints from {folder}. Every method "
            f"samples {per_class} images per class, {min(per_batch, per_class)} of every class per batch "
            f"(batch {len(class_names) * min(per_batch, per_class)}) at the guidance and temperature in the "
            "table (each model's own, chosen on a validation split when it was shipped), "
            "seed 0; times are wall time on this machine, CTF's refiner pass included. Steps count the "
            "forward passes per image: the AR steps (the prologue's and the separator's included) plus CTF's "
            f"one refiner pass. Metrics use the {extractor.name} features against {reference.count} "
            "Fashion-MNIST test images: they are only comparable with each other, not with ImageNet FIDs, "
            "and a few hundred samples inflate FID.",
        ),
        report.Grid(
            f"Samples, one row per class ({', '.join(class_names)}); left to right: {names}",
            _side_by_side(grids, len(class_names), shown),
            columns=len(METHODS) * (shown + 1) - 1,
            scale=1,
        ),
        report.Table("Steps, speed and quality", rows),
        report.Plot(
            "Quality against speed",
            [report.Series(row["method"], [row["images_per_s"]], [row["fid"]]) for row in rows],
            x_label="images/s",
            y_label="FID (lower is better)",
        ),
        report.Table(
            "Tokenizer (200 test images)",
            [
                {
                    "psnr_db": round(tokenizer_metrics["psnr_db"], 2),
                    "mse": round(tokenizer_metrics["mse"], 5),
                    "codebook_usage": round(tokenizer_metrics["codebook_usage"], 3),
                    "perplexity": round(tokenizer_metrics["perplexity"], 1),
                }
            ],
        ),
        report.Media("Originals (odd columns) and reconstructions (even columns)", Path(tokenizer_metrics["grid"])),
    ]
    for name in (
        "tokenizer",
        "prologue-tokenizer",
        "ctf-refiner",
        *(method.checkpoint for method in METHODS),
    ):
        # Shipped checkpoints keep their training log inside; fresh runs keep it beside the checkpoint.
        logs = [folder / name / "log.jsonl", (folder / name).resolve().parent / "log.jsonl"]
        log = next((path for path in logs if path.is_file()), None)
        if log is not None:
            sections.append(report.training_curves(log, title=f"Training curve: {name}"))
    page = report.write_report(out_dir / "report", sections, title="argen demo: Fashion-MNIST")
    elapsed = time.perf_counter() - started
    print(
        f"\ntokenizer: PSNR {tokenizer_metrics['psnr_db']:.2f} dB, codebook usage "
        f"{tokenizer_metrics['codebook_usage']:.1%}"
    )
    _print_table(rows)
    print(f"report: {page}  ({elapsed:.0f} s)")
    return {"tokenizer": tokenizer_metrics, "methods": rows, "report": str(page), "seconds": elapsed}


def _print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
