"""`argen demo`: Fashion-MNIST end to end: tokenizer reconstructions, class-conditional samples, metrics, report.

By default it uses the small checkpoints shipped in the repository (`checkpoints/fmnist32/`, each with a
model card naming the command that made it); `--train` (or a missing folder) trains a quick pipeline first.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from argen.config import (ARRunConfig, DataConfig, GPT_PRESETS, GPTConfig, TokenizerRunConfig, TrainConfig,
                          VQ_PRESETS, VQConfig, VQLossConfig, preset)
from argen.data import load_dataset

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "fmnist32"
COMPONENTS = ("tokenizer", "ar", "classifier")
# The settings measured best for class accuracy on the shipped model (README, "Results").
SAMPLING = {"guidance": 2.0, "temperature": 0.8}


def shipped_checkpoints() -> Path | None:
    """The repository's checkpoint folder when every component is there."""
    if all((SHIPPED / name / "config.json").is_file() for name in COMPONENTS):
        return SHIPPED
    return None


def quick_train(out_dir: Path, progress: bool = True, scale: float = 1.0) -> Path:
    """Train tokenizer, AR model and classifier on Fashion-MNIST with short schedules (about 4 minutes
    on 2 cores at scale 1); returns a folder laid out like the shipped checkpoints."""
    from argen.eval.classifier_task import ClassifierRunConfig, train_classifier
    from argen.train import recipes

    def steps(count: int) -> int:
        return max(2, int(count * scale))

    out_dir.mkdir(parents=True, exist_ok=True)
    data = DataConfig(name="fashion-mnist", image_size=32, channels=1)
    vq = dataclasses.replace(preset(VQ_PRESETS, "VQ-CPU-32", VQConfig), ch=32, codebook_size=1024)
    tokenizer = recipes.train_tokenizer(TokenizerRunConfig(
        model=vq, loss=VQLossConfig(restart_dead_codes_every=20), data=data,
        train=TrainConfig(steps=steps(150), batch_size=32, lr=1e-3, schedule="cosine", warmup_steps=10,
                          weight_decay=0.0, out_dir=str(out_dir / "tokenizer-run"))), progress)
    cache = recipes.tokenize(tokenizer, out_dir / "cache", progress=progress, limit=steps(12000))
    from argen.data.token_cache import TokenDataset

    config = ARRunConfig(model=preset(GPT_PRESETS, "GPT-T", GPTConfig), cache=str(cache),
                         train=TrainConfig(steps=steps(300), batch_size=64, lr=3e-3, schedule="cosine",
                                           warmup_steps=20, out_dir=str(out_dir / "ar-run")))
    config = recipes.ar_config_from_cache(config, TokenDataset(cache))
    ar = recipes.train_ar(config, progress)
    classifier_config = ClassifierRunConfig(data=data)
    classifier_config = dataclasses.replace(classifier_config, train=dataclasses.replace(
        classifier_config.train, steps=steps(200), out_dir=str(out_dir / "classifier-run")))
    classifier = train_classifier(classifier_config, progress)
    folder = out_dir / "checkpoints"
    for name, source in zip(COMPONENTS, (tokenizer, ar, classifier)):
        target = folder / name
        if target.is_symlink() or target.exists():
            target.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        target.symlink_to(Path(source).resolve(), target_is_directory=True)
    return folder


def run_demo(out_dir: str | Path = "runs/demo", checkpoints: str | Path | None = None, train: bool = False,
             per_class: int = 50, progress: bool = True, train_scale: float = 1.0) -> dict[str, Any]:
    """Run the demo; returns the numbers it printed and the report path."""
    import argen
    from argen.eval import report
    from argen.eval.features import ClassifierExtractor
    from argen.eval.reference import ReferenceStatistics, compute_reference, evaluate
    from argen.train.recipes import evaluate_tokenizer

    started = time.perf_counter()
    out_dir = Path(out_dir)
    folder = Path(checkpoints) if checkpoints else shipped_checkpoints()
    if train or folder is None:
        print("argen demo: training tokenizer, AR model and classifier on Fashion-MNIST first "
              f"(about {4 * train_scale:.0f} minutes on 2 cores) ...", flush=True)
        folder = quick_train(out_dir / "train", progress, train_scale)
    for name in COMPONENTS:
        if not (folder / name / "config.json").is_file():
            raise FileNotFoundError(f"{folder / name} is not a checkpoint; run `argen demo --train`")

    tokenizer_metrics = evaluate_tokenizer(folder / "tokenizer", out_dir / "tokenizer", count=1000,
                                           progress=progress)
    pipeline = argen.load(folder / "ar", tokenizer=folder / "tokenizer")
    classes = pipeline.config.model.num_classes
    labels = torch.arange(classes).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(0)
    sampling_started = time.perf_counter()
    ids = pipeline.generate_ids(labels, generator, **SAMPLING).visual
    sampling_seconds = time.perf_counter() - sampling_started
    samples = pipeline.decode(ids)  # (N, C, H, W) uint8

    extractor = ClassifierExtractor.from_checkpoint(folder / "classifier")
    reference_path = folder / "reference.npz"
    if reference_path.is_file():
        reference = ReferenceStatistics.load(reference_path)
    else:
        test = load_dataset(DataConfig(name="fashion-mnist", split="test", image_size=32, channels=1),
                            training=False)
        reference = compute_reference(test.images.numpy().transpose(0, 2, 3, 1), extractor)
    # One split: the demo's few hundred samples are too few for 10 Inception Score splits.
    metrics = evaluate(samples.permute(0, 2, 3, 1).numpy(), reference, extractor, labels.numpy(), splits=1)
    steps = pipeline.layout.num_steps
    row = {"method": f"{pipeline.layout.config.order}, {pipeline.layout.config.parallel} token(s) per step",
           "steps": steps, "images_per_s": round(len(labels) / sampling_seconds, 2),
           "fid": round(metrics["fid"], 3), "inception_score": round(metrics["inception_score"], 3),
           "precision": round(metrics["precision"], 3), "recall": round(metrics["recall"], 3),
           "class_accuracy": round(metrics["class_accuracy"], 3)}
    sections: list[Any] = [
        report.Text("argen demo", f"Fashion-MNIST 32x32, checkpoints from {folder}. Metrics use the "
                    f"{metrics['extractor']} features (sha256 {metrics['checksum'][:12]}...) against "
                    f"{reference.count} Fashion-MNIST test images; they are not comparable with ImageNet FIDs."),
        report.Table("Tokenizer (1000 test images)", [{
            "psnr_db": round(tokenizer_metrics["psnr_db"], 2), "mse": round(tokenizer_metrics["mse"], 5),
            "codebook_usage": round(tokenizer_metrics["codebook_usage"], 3),
            "perplexity": round(tokenizer_metrics["perplexity"], 1)}]),
        report.Media("Originals (odd columns) and reconstructions (even columns)",
                     Path(tokenizer_metrics["grid"])),
        report.Grid("Samples: one row per class (" + ", ".join(pipeline.class_names) + ")",
                    samples.view(classes, per_class, *samples.shape[1:])[:, :10].flatten(0, 1),
                    columns=min(per_class, 10), scale=2),
        report.Table("Sampling and quality", [row],
                     caption=f"{len(labels)} samples, guidance {SAMPLING['guidance']}, temperature "
                     f"{SAMPLING['temperature']}, seed 0; images/s is wall time on this machine"),
    ]
    for name in ("tokenizer", "ar"):
        # Shipped checkpoints keep their training log inside; fresh runs keep it beside the checkpoint.
        logs = [folder / name / "log.jsonl", (folder / name).resolve().parent / "log.jsonl"]
        log = next((path for path in logs if path.is_file()), None)
        if log is not None:
            sections.append(report.training_curves(log, title=f"Training curve: {name}"))
    page = report.write_report(out_dir / "report", sections, title="argen demo: Fashion-MNIST")
    elapsed = time.perf_counter() - started
    print(f"\ntokenizer: PSNR {tokenizer_metrics['psnr_db']:.2f} dB, codebook usage "
          f"{tokenizer_metrics['codebook_usage']:.1%}")
    width = max(len(k) for k in row)
    for key, value in row.items():
        print(f"  {key:<{width}}  {value}")
    print(f"report: {page}  ({elapsed:.0f} s)")
    return {"tokenizer": tokenizer_metrics, "samples": row, "report": str(page), "seconds": elapsed}
