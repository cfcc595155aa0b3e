"""Training the metric classifier with the one trainer: cross-entropy with light shift augmentation.

The checkpoint (kind "classifier") is what `ClassifierExtractor.from_checkpoint` loads for FID,
Inception Score and class accuracy, and what the tokenizer's perceptual loss can use as its network.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from argen.config import ClassifierRunConfig, ConfigError
from argen.data import image_batches, load_dataset
from argen.eval.features import Classifier, ClassifierExtractor
from argen.eval.metrics import class_accuracy
from argen.io import checkpoint as ckpt
from argen.io.checkpoint import CLASSIFIER_KIND
from argen.train import trainer
from argen.train.trainer import Task

CLASSIFIER = "classifier"


def random_shift(images: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate each image by a random offset in [-shift, shift]^2, filling with black (-1); global RNG."""
    if shift == 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (shift, shift, shift, shift), value=-1.0)  # (B, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * shift + 1, (2, batch))
    rows = (offsets[0][:, None] + torch.arange(height)).to(images.device)  # (B, H)
    columns = (offsets[1][:, None] + torch.arange(width)).to(images.device)  # (B, W)
    index = torch.arange(batch, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], columns[:, None, :]].permute(0, 3, 1, 2)


class ClassifierTask(Task):
    """Train a Classifier on {"images": float (B, C, H, W) in [-1, 1], "labels": long (B,)} batches."""

    def __init__(self, model: Classifier, shift: int = 2):
        self.model, self.shift = model, shift  # shift: checked by ClassifierRunConfig

    def modules(self) -> dict[str, nn.Module]:
        return {CLASSIFIER: self.model}

    def loss(
        self, name: str, modules: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if name != CLASSIFIER:
            raise KeyError(f"unknown module {name!r}; this task trains {CLASSIFIER!r}")
        logits = modules[CLASSIFIER](random_shift(batch["images"], self.shift))
        loss = F.cross_entropy(logits.float(), batch["labels"])
        accuracy = (logits.detach().argmax(dim=1) == batch["labels"]).float().mean()
        return loss, {"accuracy": float(accuracy)}


def train_classifier(config: ClassifierRunConfig, progress: bool = True) -> Path:
    """Train the metric classifier on `config.data`; returns the checkpoint directory."""
    model_config, data = config.model, config.data
    if (data.image_size, data.channels) != (model_config.image_size, model_config.in_channels):
        raise ConfigError(
            f"data.image_size/channels ({data.image_size}, {data.channels}) must match "
            f"model.image_size/in_channels ({model_config.image_size}, {model_config.in_channels})"
        )
    dataset = load_dataset(data)
    if dataset.num_classes != model_config.num_classes:
        raise ConfigError(
            f"the dataset has {dataset.num_classes} classes but model.num_classes is {model_config.num_classes}"
        )
    return trainer.run(
        config,
        CLASSIFIER_KIND,
        dataset,
        lambda: ClassifierTask(Classifier(model_config), config.shift),
        progress,
        num_workers=data.num_workers,
    )


def classifier_test_accuracy(directory: Path, config: ClassifierRunConfig) -> float:
    """Test-split accuracy of a trained classifier, also written beside its checkpoint as test_accuracy.json."""
    test = load_dataset(dataclasses.replace(config.data, split="test", flip=False, limit=0), training=False)
    logits = ClassifierExtractor.from_checkpoint(directory).features(image_batches(test))
    accuracy = float(class_accuracy(logits["logits"], test.labels.numpy()))
    ckpt.save_json(
        Path(directory).parent / "test_accuracy.json", {"split": "test", "images": len(test), "accuracy": accuracy}
    )
    return accuracy
