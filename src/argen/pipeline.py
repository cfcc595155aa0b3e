"""The Python API: `argen.load(path)` gives a pipeline (tokenizer + AR transformer) that turns class labels
into images.

    pipeline = argen.load("checkpoints/fmnist-ar")
    images = pipeline([3, 7], generator=torch.Generator().manual_seed(0), temperature=1.0, top_k=0)

A pipeline directory (`save_pretrained`) holds `pipeline.json` and one checkpoint directory per component;
an AR checkpoint directory alone also loads (its tokenizer is found through its config.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from argen.config import ARRunConfig, from_dict, to_dict
from argen.data.transforms import to_uint8
from argen.io import checkpoint as ckpt
from argen.sample import Generated, SamplingOptions, generate

PIPELINE_FILE = "pipeline.json"


@dataclass
class Pipeline:
    model: torch.nn.Module
    layout: Any
    config: ARRunConfig
    tokenizer: torch.nn.Module | None = None
    tokenizer_config: Any = None  # the tokenizer's run config, saved with it
    class_names: tuple[str, ...] = ()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> "Pipeline":
        self.model.to(device)
        if self.tokenizer is not None:
            self.tokenizer.to(device)
        return self

    def _labels(self, labels) -> torch.Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        classes = self.config.model.num_classes
        if labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise ValueError(f"class labels must be integers in [0, {classes}), got {labels.tolist()}")
        return labels.to(self.device)

    def generate_ids(self, labels, generator: torch.Generator | None = None, **options: Any) -> Generated:
        """Token ids in grid order (and prologue ids) for each label; options are SamplingOptions fields."""
        known = {f.name for f in fields(SamplingOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown sampling option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return generate(self.model, self.layout, self._labels(labels), options=SamplingOptions(**options),
                        generator=generator)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Grid ids -> uint8 images (B, C, H, W)."""
        if self.tokenizer is None:
            raise ValueError("this pipeline has no tokenizer; use generate_ids, or load one with a tokenizer")
        return to_uint8(self.tokenizer.decode(ids.to(self.device))).cpu()

    def __call__(self, labels, generator: torch.Generator | None = None, output_type: str = "pil",
                 **options: Any):
        """Images for `labels`: a list of PIL images ("pil"), uint8 NHWC ("np") or uint8 NCHW ("pt")."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        images = self.decode(self.generate_ids(labels, generator, **options).visual)
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return array
        from PIL import Image

        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in array]

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        ar_meta = {"class_names": list(self.class_names), "visual_vocab": self.layout.visual_vocab}
        ckpt.save_checkpoint(directory / "ar", "ar", to_dict(self.config), self.model.state_dict(), ar_meta)
        components = {"ar": "ar"}
        if self.tokenizer is not None:
            ckpt.save_checkpoint(directory / "tokenizer", "tokenizer", to_dict(self.tokenizer_config),
                                 self.tokenizer.state_dict())
            components["tokenizer"] = "tokenizer"
        ckpt.save_json(directory / PIPELINE_FILE, {"format": "argen-pipeline-1", "components": components})
        return directory


def load(path: str | Path, device: str | torch.device = "cpu", tokenizer: str | Path | None = None,
         ema: bool = False) -> Pipeline:
    """A pipeline from a pipeline directory or an AR checkpoint directory (strict loading, clear errors)."""
    from argen.train.recipes import build_ar, load_tokenizer

    path = Path(path)
    ar_dir, tokenizer_dir = path, tokenizer
    if (path / PIPELINE_FILE).is_file():
        components = json.loads((path / PIPELINE_FILE).read_text())["components"]
        ar_dir = path / components["ar"]
        if tokenizer_dir is None and "tokenizer" in components:
            tokenizer_dir = path / components["tokenizer"]
    meta = ckpt.read_meta(ar_dir, "ar")
    config = from_dict(ARRunConfig, meta["config"])
    layout, model = build_ar(config, int(meta.get("visual_vocab", config.model.vocab_size)))
    weights_file = "ema.safetensors" if ema else ckpt.WEIGHTS_FILE
    if ema and not (ar_dir / weights_file).is_file():
        raise ckpt.CheckpointError(f"{ar_dir} has no EMA weights (train with train.ema_decay > 0)")
    from safetensors.torch import load_file

    ckpt.load_state_into(model, load_file(str(ar_dir / weights_file)), str(ar_dir))
    model.eval()
    if tokenizer_dir is None and meta.get("tokenizer"):
        named = ar_dir / meta["tokenizer"]  # relative names are relative to the AR directory
        if named.is_dir():
            tokenizer_dir = named
    tokenizer_model, tokenizer_config = (None, None)
    if tokenizer_dir is not None:
        tokenizer_model, tokenizer_config = load_tokenizer(tokenizer_dir)
        codebook = tokenizer_config.model.codebook_size
        if codebook != layout.visual_vocab:
            raise ckpt.CheckpointError(f"the tokenizer {tokenizer_dir} has {codebook} codes but the AR model "
                                       f"predicts {layout.visual_vocab} visual ids")
    return Pipeline(model, layout, config, tokenizer_model, tokenizer_config,
                    tuple(meta.get("class_names", ()))).to(device)
