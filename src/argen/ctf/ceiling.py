"""What CTF's fine stage alone costs: test images tokenized, their fine ids mapped to the true coarse labels, the
refiner's pass from those, decoded. No coarse AR takes part, so the result is the ceiling every CTF sample is held
under: token accuracy of the refined ids, the share outside their position's cluster, PSNR against the tokenizer's
own reconstruction, and the decoded images as an ADM `.npz` for `argen eval` (FID, class accuracy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from argen.ctf.sample import RefineOptions, refine
from argen.data import load_dataset
from argen.data.tokenize import evaluation_data
from argen.data.transforms import to_uint8
from argen.eval.npz import write_npz
from argen.eval.tokenizer import pixel_errors
from argen.io.checkpoint import save_json
from argen.io.load import load_refiner, load_tokenizer


@torch.no_grad()
def refiner_ceiling(
    refiner_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    count: int = 1000,
    options: RefineOptions | None = None,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
) -> dict[str, Any]:
    """Refine the true coarse maps of the first `count` test images; write metrics.json and samples.npz."""
    refiner, _, meta = load_refiner(refiner_dir)
    tokenizer, config = load_tokenizer(tokenizer_dir)
    table = refiner.fine_to_coarse
    if config.model.codebook_size != len(table):
        raise ValueError(
            f"the refiner's table maps {len(table)} codes but {tokenizer_dir} has "
            f"{config.model.codebook_size}: give the tokenizer the refiner was trained on"
        )
    dataset = load_dataset(evaluation_data(config, "test", None), training=False)
    total = min(count, len(dataset))
    generator = torch.Generator().manual_seed(seed)
    right = outside = tokens = 0
    psnr_sum = 0.0
    images, labels = [], []
    for start in tqdm(range(0, total, batch_size), desc="refiner ceiling", disable=not progress):
        batch = dataset.batch(torch.arange(start, min(start + batch_size, total)))
        fine = tokenizer.encode(batch["images"])
        refined = refine(refiner, table[fine], batch["labels"], options, generator)
        right += int((refined == fine).sum())
        outside += int((table[refined] != table[fine]).sum())
        tokens += fine.numel()
        decoded = to_uint8(tokenizer.decode(refined))
        psnr_sum += float(pixel_errors(decoded, to_uint8(tokenizer.decode(fine)))[1].sum())
        images.append(decoded.permute(0, 2, 3, 1))
        labels.append(batch["labels"])
    out_dir = Path(out_dir)
    write_npz(out_dir / "samples.npz", torch.cat(images).numpy(), labels=torch.cat(labels).numpy())
    result = {
        "refiner": str(refiner_dir),
        "tokenizer": str(tokenizer_dir),
        "images": total,
        "clustering": meta.get("coarse_table", {}).get("method"),
        "token_accuracy": right / tokens,
        "outside_cluster": outside / tokens,
        "psnr_db": psnr_sum / total,
        "refine": vars(options or RefineOptions()),
        "seed": seed,
    }
    save_json(out_dir / "metrics.json", result)
    return result
