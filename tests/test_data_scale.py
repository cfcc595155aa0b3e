"""Data at the papers' scale: memory-mapped token caches, streamed image folders read by workers, distributed and
restartable tokenization, stored ten crops, and bad data as one-line errors or counted skips."""

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from argen.cli import main
from argen.data import DataError
from argen.data.token_cache import TokenCacheError, TokenDataset, write_token_cache
from argen.data.transforms import ten_crop
from argen.io.load import load_tokenizer

TOKENIZER_ARGS = [
    "model.image_size=16",
    "model.in_channels=3",
    "model.ch=16",
    "model.ch_mult=[1,2]",
    "model.num_res_blocks=1",
    "model.z_channels=8",
    "model.codebook_size=32",
    "model.codebook_dim=4",
    "data.image_size=16",
    "data.channels=3",
    "train.batch_size=8",
]


class CountingImages:
    """n samples whose ids are their index, so every row of a cache says where it came from."""

    def __init__(self, count):
        self.count, self.batches = count, 0

    def __len__(self):
        return self.count

    def batch(self, indices):
        self.batches += 1
        return {"images": indices.view(-1, 1, 1).expand(-1, 2, 2).clone(), "labels": indices % 3}


def write_counting_cache(directory, count=100, **options):
    return write_token_cache(
        lambda images: {"ids": images},
        CountingImages(count),
        directory,
        tokenizer={"codebook_size": 128},
        batch_size=8,
        shard_size=32,
        progress=False,
        **options,
    )


def make_jpeg_folder(root, per_class=6, classes=3, size=24):
    """Coloured boxes, one colour and place per class, as JPEGs in root/<class>/<n>.jpg."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        (root / f"c{label}").mkdir(parents=True)
        for n in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[4 * label : 4 * label + 10, 6:16] = [200, 80 * label, 255 - 80 * label]
            Image.fromarray(pixels).save(root / f"c{label}" / f"{n}.jpg", quality=95)
    return root


def test_token_cache_maps_its_shards_and_a_batch_gathers_only_its_rows(tmp_path):
    cache = TokenDataset(write_counting_cache(tmp_path / "cache"))
    assert len(cache) == 100 and len(cache.shards) == 4 and cache.grid == (2, 2) and cache.num_classes == 3
    assert all(isinstance(shard["ids"], np.memmap) for shard in cache.shards)  # mapped, not read
    indices = torch.tensor([99, 0, 33, 64, 31, 32])
    batch = cache.batch(indices)
    assert torch.equal(batch["ids"][:, 0, 0], indices) and torch.equal(batch["labels"], indices % 3)
    assert batch["ids"].dtype == torch.int64 and cache.column("labels", 5).tolist() == [0, 1, 2, 0, 1]


def test_a_cache_with_a_shard_missing_or_truncated_is_a_clear_error(tmp_path):
    directory = write_counting_cache(tmp_path / "cache")
    shard = directory / "shard-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(TokenCacheError, match=r"shard-00002.safetensors: truncated or corrupt shard"):
        TokenDataset(directory)
    shard.unlink()
    with pytest.raises(TokenCacheError, match=r"shard-00002.safetensors is listed in the manifest but missing"):
        TokenDataset(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "shards": manifest["shards"][:2]}))
    with pytest.raises(TokenCacheError, match=r"the manifest says 100 samples, the shards hold 64"):
        TokenDataset(directory)


def test_a_restart_remakes_a_shard_damaged_since_it_was_written(tmp_path, capsys):
    def encode_then_die(images):
        if int(images.max()) >= 70:  # dies inside shard 2
            raise KeyboardInterrupt
        return {"ids": images}

    directory = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        write_token_cache(
            encode_then_die,
            CountingImages(100),
            directory,
            tokenizer={"codebook_size": 128},
            batch_size=8,
            shard_size=32,
            progress=False,
        )
    shard = directory / "shard-00000.safetensors"
    damaged = bytearray(shard.read_bytes())
    damaged[-3] ^= 0xFF  # a flipped bit in the data: the shard still parses, its ids are wrong
    shard.write_bytes(bytes(damaged))
    images = CountingImages(100)
    write_token_cache(
        lambda x: {"ids": x},
        images,
        directory,
        tokenizer={"codebook_size": 128},
        batch_size=8,
        shard_size=32,
        progress=False,
    )
    assert f"{shard} is damaged" in capsys.readouterr().out
    assert images.batches == 9  # shards 0, 2 and 3: 4 + 4 + 1 batches; shard 1 was kept
    assert torch.equal(TokenDataset(directory).column("ids")[:, 0, 0], torch.arange(100))


def test_a_killed_tokenization_restarts_from_its_last_finished_shard(tmp_path):
    class Killed(Exception):
        pass

    def encode_then_die(images):
        if int(images.max()) >= 70:  # dies inside shard 2
            raise Killed
        return {"ids": images}

    with pytest.raises(Killed):
        write_token_cache(
            encode_then_die,
            CountingImages(100),
            tmp_path / "cache",
            tokenizer={"codebook_size": 128},
            batch_size=8,
            shard_size=32,
            progress=False,
        )
    assert not (tmp_path / "cache" / "manifest.json").exists()
    assert sorted(p.name for p in (tmp_path / "cache").glob("shard-*")) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    images = CountingImages(100)
    write_token_cache(
        lambda x: {"ids": x},
        images,
        tmp_path / "cache",
        tokenizer={"codebook_size": 128},
        batch_size=8,
        shard_size=32,
        progress=False,
    )
    assert images.batches == 5  # shards 2 and 3 only: 4 + 1 batches
    cache = TokenDataset(tmp_path / "cache")
    assert torch.equal(cache.column("ids")[:, 0, 0], torch.arange(100))
    # Another plan (here another tokenizer) never mixes with the shards left behind: it starts over.
    other = CountingImages(100)
    write_token_cache(
        lambda x: {"ids": x},
        other,
        tmp_path / "cache",
        tokenizer={"codebook_size": 64},
        batch_size=8,
        shard_size=32,
        progress=False,
    )
    assert other.batches == 13


@pytest.fixture(scope="module")
def tokenizer_on_jpegs(tmp_path_factory):
    """A tokenizer trained 2 steps on a JPEG folder read by 2 workers, with LlamaGen's random crop and flip."""
    root = tmp_path_factory.mktemp("scale")
    folder = make_jpeg_folder(root / "images")
    run = root / "tokenizer"
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--out",
                str(run),
                "data.name=imagefolder",
                f"data.path={folder}",
                "data.num_workers=2",
                "data.crop_min=0.8",
                "data.flip=true",
                "train.steps=2",
                *TOKENIZER_ARGS,
            ]
        )
        == 0
    )
    return run / "checkpoint", folder


def test_ten_crops_are_stored_and_one_is_drawn_per_sample(tokenizer_on_jpegs, tmp_path):
    checkpoint, folder = tokenizer_on_jpegs
    assert main(["tokenize", "--tokenizer", str(checkpoint), "--out", str(tmp_path / "cache"), "--ten-crops"]) == 0
    cache = TokenDataset(tmp_path / "cache")
    assert cache.views == 10 and cache.grid == (8, 8) and len(cache) == 18
    stored = cache.rows("ids", torch.arange(18))
    assert stored.shape == (18, 10, 8, 8)
    model, _ = load_tokenizer(checkpoint)
    from argen.config import DataConfig
    from argen.data import load_dataset

    big = load_dataset(DataConfig(name="imagefolder", path=str(folder), image_size=18, channels=3), training=False)
    with torch.no_grad():
        expected = model.encode(ten_crop(big.batch(torch.arange(2))["images"], 16).flatten(0, 1))
    assert torch.equal(stored[:2].flatten(0, 1).long(), expected)
    torch.manual_seed(0)
    first = cache.batch(torch.arange(18))["ids"]
    torch.manual_seed(1)
    second = cache.batch(torch.arange(18))["ids"]
    assert first.shape == (18, 8, 8) and not torch.equal(first, second)
    assert all(any(torch.equal(row, view) for view in stored[i]) for i, row in enumerate(first))


def test_two_rank_tokenization_equals_one_process(tokenizer_on_jpegs, tmp_path, torchrun):
    checkpoint, folder = tokenizer_on_jpegs
    (folder / "c1" / "9.jpg").write_bytes(b"\xff\xd8\xff\xe0 a truncated JPEG")  # skipped and counted
    try:
        common = ["tokenize", "--tokenizer", str(checkpoint), "--shard-size", "4", "--workers", "1"]
        assert main(["--threads", "1", *common, "--out", str(tmp_path / "one")]) == 0
        two = subprocess.run(
            [*torchrun(), *common, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300
        )
        assert two.returncode == 0, two.stderr[-3000:]
    finally:
        (folder / "c1" / "9.jpg").unlink()
    one, both = TokenDataset(tmp_path / "one"), TokenDataset(tmp_path / "two")
    assert len(one) == len(both) == 18 and len(both.shards) == 5
    for key in ("ids", "labels"):
        assert torch.equal(one.column(key), both.column(key)), key
    assert "left out 1 unreadable image" in two.stdout


def test_bad_images_are_one_line_errors(tmp_path, capsys):
    folder = make_jpeg_folder(tmp_path / "images", per_class=2)
    (folder / "c0" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 a truncated JPEG")
    args = [
        "tokenizer",
        "train",
        "--out",
        str(tmp_path / "run"),
        "data.name=imagefolder",
        f"data.path={folder}",
        "data.num_workers=1",
        "train.steps=1",
        *TOKENIZER_ARGS,
        "train.batch_size=6",
    ]
    assert main([*args, "data.on_bad_image=error"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "1.jpg: unreadable image" in error and "Traceback" not in error
    (folder / "c3").mkdir()
    assert main(args) == 2
    assert "class folder" in capsys.readouterr().err


def test_tar_shards_deal_each_sample_once_per_epoch_and_resume_exactly(tmp_path):
    from argen.data.tar_shards import TarShardDataset

    folder = make_jpeg_folder(tmp_path / "images", per_class=8)  # 24 images
    assert main(["data", "pack", "--images", str(folder), "--out", str(tmp_path / "shards"), "--shard-size", "3"]) == 0
    shards = TarShardDataset(tmp_path / "shards", 16, 3, flip=True, crop_min=0.8)
    assert len(shards) == 24 and shards.class_names == ("c0", "c1", "c2")

    def labels_and_images(start, count, rank=0, world=1, workers=2):
        stream = shards.stream(seed=5, start=start, micro_batch=2, rank=rank, world_size=world, num_workers=workers)
        batches = [next(stream) for _ in range(count)]
        stream.close()
        return batches

    # 2 ranks x 2 workers: 4 streams of 2 shards (6 images, 3 micro-batches) each, every image once per epoch.
    epoch = [batch for rank in (0, 1) for batch in labels_and_images(0, 6, rank, 2)]
    images = torch.cat([batch["images"] for batch in epoch])
    assert images.shape == (24, 3, 16, 16)
    assert sorted(torch.cat([batch["labels"] for batch in epoch]).tolist()) == [0] * 8 + [1] * 8 + [2] * 8
    full = labels_and_images(0, 15)
    resumed = labels_and_images(7, 8)  # mid-epoch, on another worker's turn, across the epoch boundary
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(full[7:], resumed))
    in_process = labels_and_images(0, 4, workers=0)
    assert len(in_process) == 4 and in_process[0]["images"].shape == (2, 3, 16, 16)

    shard = tmp_path / "shards" / "shard-000003.tar"
    shard.write_bytes(shard.read_bytes()[:700])
    with pytest.raises(DataError, match=r"shard-000003.tar: truncated or corrupt tar shard"):
        labels_and_images(0, 12, workers=1)
    shard.unlink()
    with pytest.raises(DataError, match=r"shard-000003.tar is listed in .*shards.json but missing"):
        TarShardDataset(tmp_path / "shards", 16, 3)


def test_a_tokenizer_trains_on_tar_shards_with_workers(tmp_path):
    folder = make_jpeg_folder(tmp_path / "images", per_class=8)
    assert main(["data", "pack", "--images", str(folder), "--out", str(tmp_path / "shards"), "--shard-size", "4"]) == 0
    args = [
        "tokenizer",
        "train",
        "data.name=webdataset",
        f"data.path={tmp_path / 'shards'}",
        "data.num_workers=2",
        "train.steps=4",
        "train.checkpoint_every=2",
        "train.log_every=1",
        *TOKENIZER_ARGS,
    ]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    assert main([*args, "--out", str(tmp_path / "split"), "train.steps=2"]) == 0
    assert main([*args, "--out", str(tmp_path / "split")]) == 0

    def losses(run):
        return [json.loads(line)["tokenizer_loss"] for line in (run / "log.jsonl").read_text().splitlines()]

    assert losses(tmp_path / "split") == losses(tmp_path / "full")
