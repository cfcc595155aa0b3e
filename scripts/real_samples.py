"""Write real images of a dataset split as an ADM sample batch, to score them as if a model had drawn them: the
metrics' floor at a sample count (FID is biased upwards at few samples, so 1,000 real images do not score 0).

    .venv/bin/python scripts/real_samples.py --split train --skip 50000 --count 1000 --image-size 64 \
        --resize resize --pad-to 32 --out runs/demo64-real-validation.npz
    .venv/bin/argen eval runs/demo64-real-validation.npz --ref runs/fmnist64-reference.npz \
        --classifier checkpoints/fmnist64/classifier --bootstrap 50

The images are taken in the split's order after `--skip` (Fashion-MNIST's splits are shuffled across classes).
"""

import argparse

import numpy as np

from argen.config import DataConfig
from argen.data import image_batches, load_dataset
from argen.eval.npz import write_npz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--skip", type=int, default=0, help="leave out the split's first N images")
    parser.add_argument("--count", type=int, required=True, help="then write the next N images")
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--resize", choices=("pad", "resize"), default="pad")
    parser.add_argument("--pad-to", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.count <= 0:
        parser.error("--count must be positive")
    data = DataConfig(
        name=args.dataset,
        split=args.split,
        image_size=args.image_size,
        channels=args.channels,
        resize=args.resize,
        pad_to=args.pad_to,
        skip=args.skip,
        limit=args.count,
    )
    dataset = load_dataset(data, training=False)
    if len(dataset) < args.count:
        parser.error(f"the split has {len(dataset)} images after --skip {args.skip}, fewer than --count {args.count}")
    images = np.concatenate(list(image_batches(dataset)))
    print(f"{len(images)} real images: {write_npz(args.out, images, dataset.labels.numpy())}")


if __name__ == "__main__":
    main()
