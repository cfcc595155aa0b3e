"""Datasets and transforms: IDX files good and bad, ImageFolder with a corrupt image, digits, transforms."""

import dataclasses
import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from argen.config import ConfigError, DataConfig
from argen.data import DataError, load_dataset
from argen.data.idx import IDXError, read_idx, write_idx
from argen.data.transforms import to_channels, to_resolution, to_uint8, to_unit_range


def write_mnist_folder(folder, count=20, labels_count=None, split="train"):
    rng = np.random.default_rng(0)
    prefix = "train" if split == "train" else "t10k"
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, labels_count or count, dtype=np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images, labels


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip_raw_and_gzip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    assert np.array_equal(read_idx(tmp_path / name), array)


def test_idx_truncated_file_names_file_and_sizes(tmp_path):
    path = tmp_path / "t.idx"
    write_idx(path, np.zeros((5, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IDXError, match=r"t\.idx: size .* does not match its header \(5, 4, 4\)"):
        read_idx(path)


def test_idx_corrupt_magic_and_gzip(tmp_path):
    bad_magic = tmp_path / "m.idx"
    bad_magic.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(IDXError, match="not an IDX file"):
        read_idx(bad_magic)
    bad_type = tmp_path / "t.idx"
    bad_type.write_bytes(b"\x00\x00\x42\x01\x00\x00\x00\x01\x00")
    with pytest.raises(IDXError, match="unknown IDX data type 0x42"):
        read_idx(bad_type)
    bad_gzip = tmp_path / "g.idx.gz"
    bad_gzip.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-6])
    with pytest.raises(IDXError, match="cannot decompress"):
        read_idx(bad_gzip)


def test_idx_folder_dataset_and_label_mismatch(tmp_path):
    images, labels = write_mnist_folder(tmp_path)
    dataset = load_dataset(DataConfig(name="idx", path=str(tmp_path), image_size=32))
    assert dataset.images.shape == (20, 1, 32, 32)
    # Padding keeps every pixel, centred.
    assert torch.equal(dataset.images[:, 0, 2:30, 2:30], torch.from_numpy(images))
    assert torch.equal(dataset.labels, torch.from_numpy(labels.astype(np.int64)))
    write_mnist_folder(tmp_path, count=20, labels_count=19)
    with pytest.raises(DataError, match="20 images but labels of shape"):
        load_dataset(DataConfig(name="idx", path=str(tmp_path)))


def test_skip_and_limit_hold_out_a_validation_split(tmp_path):
    images, labels = write_mnist_folder(tmp_path)
    config = DataConfig(name="idx", path=str(tmp_path), image_size=28)
    held_out = load_dataset(dataclasses.replace(config, skip=15))
    assert torch.equal(held_out.images[:, 0], torch.from_numpy(images[15:]))
    middle = load_dataset(dataclasses.replace(config, skip=5, limit=4))
    assert torch.equal(middle.labels, torch.from_numpy(labels[5:9].astype(np.int64)))
    with pytest.raises(DataError, match="data.skip=20 leaves no train image"):
        load_dataset(dataclasses.replace(config, skip=20))
    with pytest.raises(ConfigError, match="data.skip must be an integer >= 0"):
        DataConfig(skip=-1)
    with pytest.raises(DataError, match="data.skip applies to the in-memory image datasets, not imagefolder"):
        load_dataset(DataConfig(name="imagefolder", path=str(tmp_path), skip=3))


def test_missing_directory_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(name="idx", path=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_dataset(DataConfig(name="idx", path=str(tmp_path)))
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset(DataConfig(name="cifar"))


def test_fashion_mnist_found_through_environment(tmp_path, monkeypatch):
    write_mnist_folder(tmp_path, split="test")
    write_mnist_folder(tmp_path, split="train")
    monkeypatch.setenv("ARGEN_DATA_DIR", str(tmp_path))
    dataset = load_dataset(DataConfig(name="fashion-mnist", split="test", image_size=28))
    assert len(dataset) == 20 and dataset.class_names[0] == "T-shirt/top"


def make_image_folder(root):
    for label, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), colour).save(folder / f"{i}.png")
    (root / "class1" / "broken.png").write_bytes(b"not a png at all")


def test_image_folder_replaces_a_corrupt_image_in_its_batch_with_a_warning(tmp_path):
    make_image_folder(tmp_path)
    dataset = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path), image_size=16, channels=3))
    assert len(dataset) == 7 and dataset.class_names == ("class0", "class1")  # read lazily: nothing decoded yet
    with pytest.warns(UserWarning, match=r"broken.png: unreadable image, skipped \(1 so far"):
        batch = dataset.batch(torch.arange(7))
    images = to_uint8(batch["images"])
    assert images.shape == (7, 3, 16, 16) and batch["readable"].tolist() == [True] * 6 + [False]
    assert images[0, 0].float().mean() == 255 and images[5, 2].float().mean() == 255
    # The next readable image (wrapping around to the first) stands in, with its label.
    assert torch.equal(images[6], images[0]) and batch["labels"][6] == 0


def test_image_folder_corrupt_image_fatal_when_asked_and_empty_class_folder(tmp_path):
    make_image_folder(tmp_path)
    dataset = load_dataset(DataConfig(name="imagefolder", path=str(tmp_path), image_size=16, on_bad_image="error"))
    with pytest.raises(DataError, match=r"broken.png: unreadable image"):
        dataset.batch(torch.arange(7))
    (tmp_path / "class2").mkdir()
    with pytest.raises(DataError, match=r"class folder .*class2 has no images"):
        load_dataset(DataConfig(name="imagefolder", path=str(tmp_path), image_size=16))


def test_digits_and_synthetic_and_flip():
    digits = load_dataset(DataConfig(name="digits", image_size=8))
    assert len(digits) == 1797 and digits.images.max() == 255
    synthetic = load_dataset(DataConfig(name="synthetic", image_size=16, channels=3, limit=64, flip=True))
    assert synthetic.images.shape == (64, 3, 16, 16)
    torch.manual_seed(0)
    batch = synthetic.batch(torch.arange(64))["images"]
    plain = to_unit_range(synthetic.images)
    flipped = [torch.equal(b, p.flip(-1)) and not torch.equal(b, p) for b, p in zip(batch, plain)]
    assert 10 < sum(flipped) < 54


def test_transforms():
    grey = np.full((2, 1, 4, 4), 100, np.uint8)
    assert to_channels(grey, 3).shape == (2, 3, 4, 4)
    assert to_channels(to_channels(grey, 3), 1).max() == 100
    big = np.zeros((1, 1, 40, 60), np.uint8)
    assert to_resolution(big, 32).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="resize mode"):
        to_resolution(big, 32, "stretch")
    values = torch.tensor([0, 127, 128, 255], dtype=torch.uint8)
    assert torch.equal(to_uint8(to_unit_range(values)), values)


def test_pad_to_keeps_the_framing_before_resizing():
    digits = load_dataset(DataConfig(name="digits", image_size=8)).images  # (N, 1, 8, 8)
    framed = load_dataset(DataConfig(name="digits", image_size=20, pad_to=10, resize="resize")).images
    assert framed.shape == (1797, 1, 20, 20)
    expected = to_resolution(to_resolution(digits.numpy(), 10, "pad"), 20, "resize")
    assert np.array_equal(framed.numpy(), expected)
    # The 1-pixel black frame at 10x10 stays dark at 20x20 (up to the resampling filter's ringing).
    assert framed[:, :, 0].float().mean() < 0.1 * framed[:, :, 8:12].float().mean()
    with pytest.raises(DataError, match="pad_to=4 is smaller than the images"):
        load_dataset(DataConfig(name="digits", image_size=8, pad_to=4))
