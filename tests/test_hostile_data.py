"""Hostile data, round two: decompression bombs and oversized images are counted skips (or one-line errors with
on_bad_image=error) in folders and tar shards alike; symlink loops and unreadable files are skips; shard manifests
cannot lead out of their folder; labels and videos are called what they are; files get the user's umask."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from argen.cli import main
from argen.config import DataConfig
from argen.data import DataError, load_dataset
from argen.data.tar_shards import TarShardDataset, pack_image_folder
from argen.data.token_cache import write_token_cache
from argen.io.checkpoint import atomic_write


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says side x side pixels (a decompression bomb's header; its data is one pixel's)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", side, side)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the chunk's CRC over type and fields
    path.write_bytes(bytes(data))
    return path


def image_folder(root: Path, bad: dict[str, str] | None = None) -> Path:
    for label in range(2):
        (root / f"c{label}").mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (24, 24), (200 * label, 40, 90)).save(root / f"c{label}" / f"{index}.png")
    for name, kind in (bad or {}).items():
        path = root / "c1" / name
        if kind == "bomb":
            bomb_png(path)
        elif kind == "loop":
            path.symlink_to(path.name)
    return root


def test_a_decompression_bomb_is_a_counted_skip_or_a_one_line_error(tmp_path):
    folder = image_folder(tmp_path / "images", {"bomb.png": "bomb"})
    dataset = load_dataset(DataConfig(name="imagefolder", path=str(folder), image_size=16, channels=3))
    with pytest.warns(UserWarning, match=r"bomb.png: unreadable image, skipped \(1 so far"):
        batch = dataset.batch(torch.arange(len(dataset)))
    assert batch["readable"].tolist() == [True] * 6 + [False]
    strict = load_dataset(
        DataConfig(name="imagefolder", path=str(folder), image_size=16, channels=3, on_bad_image="error")
    )
    with pytest.raises(DataError, match=r"bomb.png: unreadable image \(.*decompression bomb"):
        strict.batch(torch.arange(len(strict)))


def test_images_over_the_pixel_limit_are_skipped_before_decoding(tmp_path):
    folder = image_folder(tmp_path / "images")
    Image.new("RGB", (40, 30)).save(folder / "c0" / "large.png")
    dataset = load_dataset(
        DataConfig(name="imagefolder", path=str(folder), image_size=16, channels=3, max_image_pixels=24 * 24)
    )
    with pytest.warns(UserWarning, match=r"large.png: unreadable image.*40x30 pixels, over the limit of 576"):
        assert dataset.batch(torch.arange(len(dataset)))["readable"].sum() == 6
    with pytest.raises(ValueError, match="data.max_image_pixels must be an integer >= 1"):
        DataConfig(max_image_pixels=0)


def test_a_bomb_in_tar_shards_is_skipped_too(tmp_path):
    folder = image_folder(tmp_path / "images", {"bomb.png": "bomb"})
    shards = pack_image_folder(folder, tmp_path / "shards", shard_size=7)
    dataset = TarShardDataset(shards, 16, 3)
    with pytest.warns(UserWarning, match="unreadable image, skipped"):
        batch = next(dataset.stream(seed=0, start=0, micro_batch=7))
    assert batch["images"].shape == (7, 3, 16, 16)


def test_a_symlink_loop_is_skipped_with_a_warning(tmp_path):
    folder = image_folder(tmp_path / "images", {"loop.png": "loop"})
    (folder / "c2").symlink_to("c2")  # a looping class folder too
    with pytest.warns(UserWarning, match=r"skipped 1 entry that cannot be followed .* e.g. (loop.png|c2)"):
        dataset = load_dataset(DataConfig(name="imagefolder", path=str(folder), image_size=16, channels=3))
    assert len(dataset) == 6 and dataset.class_names == ("c0", "c1")


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda index: index["shards"][0].update(file="../../etc/passwd"), "is not a file name of the folder"),
        (lambda index: index["shards"][0].update(file="/etc/passwd"), "is not a file name of the folder"),
        (lambda index: index["shards"][0].update(count=-5), "a shard's count must be an integer >= 0, got -5"),
    ],
)
def test_a_shard_manifest_cannot_lead_out_of_its_folder(tmp_path, edit, says):
    shards = pack_image_folder(image_folder(tmp_path / "images"), tmp_path / "shards", shard_size=3)
    index = json.loads((shards / "shards.json").read_text())
    edit(index)
    (shards / "shards.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=says):
        TarShardDataset(shards, 16, 3)


def test_a_label_that_is_not_a_number_is_called_a_bad_label(tmp_path):
    import webdataset as wds

    (tmp_path / "shards").mkdir()
    with wds.TarWriter(str(tmp_path / "shards" / "shard-000000.tar")) as writer:
        for index in range(4):
            image = tmp_path / "image.png"
            Image.new("RGB", (8, 8)).save(image)
            writer.write({"__key__": f"{index:09d}", "png": image.read_bytes(), "cls": b"shirt"})
    (tmp_path / "shards" / "shards.json").write_text(
        json.dumps(
            {
                "format": "argen-tar-shards-1",
                "count": 4,
                "class_names": ["a"],
                "shards": [{"file": "shard-000000.tar", "count": 4}],
            }
        )
    )
    with pytest.raises(DataError, match=r"sample 000000000 has the label 'shirt', not a class number"):
        next(TarShardDataset(tmp_path / "shards", 8, 3).stream(seed=0, start=0, micro_batch=2))


def test_pack_leaves_out_an_unreadable_file_and_makes_nothing_of_none(tmp_path, monkeypatch, capsys):
    folder = image_folder(tmp_path / "images")
    read_bytes = Path.read_bytes

    def unreadable(path: Path) -> bytes:
        if path.name == "1.png" or "only" in str(path):
            raise PermissionError(13, "Permission denied")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    assert main(["data", "pack", "--images", str(folder), "--out", str(tmp_path / "shards")]) == 0
    assert "left out 2 unreadable image(s), e.g. c0/1.png (Permission denied)" in capsys.readouterr().out
    assert json.loads((tmp_path / "shards" / "shards.json").read_text())["count"] == 4
    only = tmp_path / "only"
    (only / "c0").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(only / "c0" / "a.png")
    assert main(["data", "pack", "--images", str(only), "--out", str(tmp_path / "none")]) == 2
    assert "no readable image to pack" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_videos_left_out_are_called_videos(tmp_path, capsys):
    class Videos:
        kind = "video"

        def __len__(self):
            return 4

        def batch(self, indices):
            return {"images": torch.zeros(len(indices), 2, 1, 4, 4), "labels": indices, "readable": indices != 2}

    write_token_cache(
        lambda images: {"ids": images[:, :, 0, :2, :2].long()},
        Videos(),
        tmp_path / "cache",
        tokenizer={"codebook_size": 16},
        batch_size=4,
        shard_size=4,
        progress=False,
    )
    assert "left out 1 unreadable video(s)" in capsys.readouterr().out


def test_files_are_written_with_the_users_umask(tmp_path):
    """mkstemp makes 0600 files; argen's outputs get what the umask gives, so others can read shared caches."""
    mask = os.umask(0)
    os.umask(mask)
    atomic_write(tmp_path / "file", lambda tmp: tmp.write_text("x"))
    assert (tmp_path / "file").stat().st_mode & 0o777 == 0o666 & ~mask
    script = (
        "import os, sys; os.umask(0o002); from pathlib import Path; "
        "from argen.io.checkpoint import atomic_write; "
        "atomic_write(Path(sys.argv[1]), lambda tmp: tmp.write_text('x'))"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "group")],
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    assert (tmp_path / "group").stat().st_mode & 0o777 == 0o664
