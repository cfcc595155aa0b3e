"""One figure of video samples for docs/: a panel per batch (real videos, then each model's samples), each row
one video's frames left to right, the first video of each listed class.

    .venv/bin/python scripts/video_figure.py --out docs/figures/video3d-strips.png --classes 0,1,5,7 \
        real=runs/mfm17-test.npz 1x=runs/evalmfm17/1x/videos.npz PAR-4x=runs/evalmfm17/par4/videos.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from argen.eval.npz import read_npz  # noqa: E402
from argen.io.images import make_grid  # noqa: E402


def panel(path: Path, classes: list[int]) -> np.ndarray:
    """The frames of the first video of each class in `classes`, a row per video (uint8 H, W, C)."""
    batch = read_npz(path, video=True)
    if batch.labels is None:
        raise SystemExit(f"{path} has no labels to pick videos by class")
    rows = []
    for label in classes:
        found = np.flatnonzero(batch.labels == label)
        if not len(found):
            raise SystemExit(f"{path} has no video of class {label}")
        rows.append(batch.images[found[0]])  # (T, H, W, C)
    frames = np.concatenate(rows).transpose(0, 3, 1, 2)  # (rows * T, C, H, W)
    return make_grid(frames, columns=rows[0].shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("batches", nargs="+", metavar="NAME=videos.npz")
    parser.add_argument("--classes", default="0,1,2,3", help="comma-separated class ids, one row each")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    classes = [int(item) for item in args.classes.split(",")]
    named = [item.split("=", 1) for item in args.batches]
    if any(len(pair) != 2 for pair in named):
        raise SystemExit("each batch is NAME=path")
    panels = [(name, panel(Path(path), classes)) for name, path in named]
    height, width = panels[0][1].shape[:2]
    figure, axes = plt.subplots(len(panels), 1, figsize=(width / 60, len(panels) * (height / 60 + 0.35)))
    for axis, (name, image) in zip(np.atleast_1d(axes), panels):
        axis.imshow(
            image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255, interpolation="nearest"
        )
        axis.set_title(name, fontsize=9, loc="left")
        axis.axis("off")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100)
    print(args.out)


if __name__ == "__main__":
    main()
