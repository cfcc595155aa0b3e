"""An ImageNet-like image folder for scale rehearsals: Fashion-MNIST upscaled to 256x256 RGB JPEG, written as
<out>/<class>/<n>.jpg (any N; images repeat, with a shift per pass, past the 60,000 of the train split).

    python scripts/make_imagefolder.py --count 20000 --out /tmp/fmnist256
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from argen.data.datasets import FASHION_MNIST_CLASSES, find_fashion_mnist, load_idx_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True, help="number of images")
    parser.add_argument("--out", type=Path, required=True, help="output folder (keep it under /tmp or runs/)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    images, labels = load_idx_folder(find_fashion_mnist(), "train")
    for name in range(len(FASHION_MNIST_CLASSES)):
        (args.out / f"{name:02d}").mkdir(parents=True, exist_ok=True)
    for n in range(args.count):
        source = images[n % len(images), 0]
        if n >= len(images):  # a distinct image per pass: rolled by the pass number
            source = np.roll(source, n // len(images), axis=1)
        picture = Image.fromarray(source).resize((args.size, args.size), Image.BICUBIC).convert("RGB")
        picture.save(args.out / f"{int(labels[n % len(labels)]):02d}" / f"{n}.jpg", quality=90)
    print(f"{args.count} images in {args.out}")


if __name__ == "__main__":
    main()
