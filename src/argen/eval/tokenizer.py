"""A tokenizer's reconstruction quality: MSE, PSNR, codebook usage and perplexity; with an extractor, rFID and the
class accuracy of the reconstructions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from argen.data import load_dataset
from argen.data.tokenize import evaluation_data
from argen.data.video import load_video_dataset
from argen.data.transforms import to_uint8
from argen.eval.reference import compute_reference, evaluate
from argen.io import checkpoint as ckpt
from argen.io.images import save_grid
from argen.io.load import load_tokenizer


def pixel_errors(images: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE, PSNR in dB) of each image (B, ...) against its reference, on [0, 255] pixels."""
    error = (images.float() - reference.float()).pow(2).flatten(1).mean(1)
    return error, 10 * torch.log10(255.0**2 / error.clamp_min(1e-10))


@torch.inference_mode()
def evaluate_tokenizer(
    directory: str | Path,
    out_dir: str | Path,
    split: str = "test",
    count: int = 0,
    data_dir: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
    extractor=None,
    lpips: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """MSE, PSNR (per image or video frame, on [0, 255] pixels), codebook usage and perplexity, a reconstruction
    grid; with a feature extractor the rFID of reconstructions against the originals and their class accuracy;
    with an LPIPS network (argen.tokenizer.lpips) the mean LPIPS of reconstruction and original."""
    model, config = load_tokenizer(directory)
    data = evaluation_data(config, split, data_dir)
    # A causal 3D tokenizer encodes whole clips, an image tokenizer images (or frames); the metrics are per frame.
    dataset = load_video_dataset(data) if config.model.temporal_downsample else load_dataset(data, training=False)
    if config.model.temporal_downsample:
        batch_size = max(1, batch_size // data.video.frames)  # about as many frames per pass as images
    total = len(dataset) if count <= 0 else min(count, len(dataset))
    squared_error, psnr_sum, lpips_sum, frame_total = 0.0, 0.0, 0.0, 0
    psnr_by_frame = 0.0  # videos: summed over clips, per frame position
    counts = torch.zeros(config.model.codebook_size, dtype=torch.long)
    first_originals = first_reconstructions = None
    originals, reconstructions, labels = [], [], []  # uint8 NHWC and labels, kept only for rFID
    for start in tqdm(range(0, total, batch_size), desc="tokenizer eval", disable=not progress):
        batch = dataset.batch(torch.arange(start, min(start + batch_size, total)))
        ids = model.encode(batch["images"])
        decoded = model.decode(ids)
        if lpips is not None:  # on the [-1, 1] images, frames of videos as images
            lpips_sum += float(
                lpips(
                    decoded.clamp(-1, 1).flatten(0, decoded.ndim - 4), batch["images"].flatten(0, decoded.ndim - 4)
                ).sum()
            )
        reconstruction = to_uint8(decoded)
        original = to_uint8(batch["images"])
        counts += torch.bincount(ids.flatten(), minlength=config.model.codebook_size)
        frames = original.ndim - 4  # 1 for videos: the metrics, the grid and rFID see frames
        original, reconstruction = original.flatten(0, frames), reconstruction.flatten(0, frames)
        error, psnr = pixel_errors(reconstruction, original)  # (frames,)
        squared_error += float(error.sum())
        psnr_sum += float(psnr.sum())
        frame_total += len(error)
        if frames:
            psnr_by_frame = psnr_by_frame + psnr.view(len(ids), -1).sum(0)
        if first_originals is None:
            first_originals, first_reconstructions = original[:32], reconstruction[:32]
        if extractor is not None:
            originals.append(original.permute(0, 2, 3, 1).numpy())
            reconstructions.append(reconstruction.permute(0, 2, 3, 1).numpy())
            labels.append(batch["labels"].repeat_interleave(len(original) // len(batch["labels"])).numpy())
    probabilities = counts.double() / counts.sum()
    entropy = -(probabilities[probabilities > 0] * probabilities[probabilities > 0].log()).sum()
    out_dir = Path(out_dir)
    pairs = torch.stack([first_originals, first_reconstructions], 1).flatten(0, 1)  # original, reconstruction
    grid = save_grid(pairs, out_dir / "reconstructions.png", columns=16, scale=2)
    result = {
        "tokenizer": str(directory),
        "tokenizer_sha256": ckpt.checkpoint_checksum(directory),
        "split": split,
        "images": total,
        "frames": frame_total,
        "tokens_per_item": int(ids[0].numel()),  # image or clip
        "mse": squared_error / frame_total / 255.0**2 * 4,  # on the [-1, 1] scale
        "psnr_db": psnr_sum / frame_total,
        "codebook_usage": float((counts > 0).double().mean()),
        "perplexity": float(entropy.exp()),
        "codebook_size": config.model.codebook_size,
        "grid": str(grid),
    }
    if lpips is not None:
        result["lpips"] = lpips_sum / frame_total
    if frames:  # where the error is: a causal 3D tokenizer encodes frame 0 alone, later frames 4 to a latent
        result["psnr_db_by_frame"] = (psnr_by_frame / total).tolist()
    if extractor is not None:
        reference = compute_reference(originals, extractor)
        scores = evaluate(reconstructions, reference, extractor, np.concatenate(labels))
        # The class accuracy of the reconstructions: how much of what the classifier sees survives tokenization.
        result.update(
            rfid=scores["fid"],
            reconstruction_class_accuracy=scores["class_accuracy"],
            extractor=scores["extractor"],
            extractor_checksum=scores["checksum"],
        )
    ckpt.save_json(out_dir / "metrics.json", result)
    return result
