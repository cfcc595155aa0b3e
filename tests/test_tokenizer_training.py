"""Tokenizer training through the one trainer: pinned first losses, resume == uninterrupted, CLI round trip."""

import json

import pytest
import torch

from tiny_tokenizer import tiny_tokenizer
from argen.cli import main
from argen.config import DataConfig, TokenizerRunConfig, TrainConfig, VQConfig, VQLossConfig
from argen.data.token_cache import TokenDataset
from argen.io.load import load_tokenizer
from argen.train import recipes

TINY = VQConfig(
    image_size=16,
    in_channels=1,
    ch=32,
    ch_mult=(1, 2),
    num_res_blocks=1,
    z_channels=16,
    codebook_size=32,
    codebook_dim=4,
)


def tiny_run(out_dir, steps=6, **loss):
    return TokenizerRunConfig(
        model=TINY,
        loss=VQLossConfig(**loss),
        data=DataConfig(name="synthetic", image_size=16, channels=1, limit=128),
        train=TrainConfig(
            steps=steps, batch_size=16, lr=1e-3, weight_decay=0.0, log_every=1, checkpoint_every=3, out_dir=str(out_dir)
        ),
    )


def losses(out_dir):
    return [json.loads(line)["tokenizer_loss"] for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_first_losses_are_pinned(tmp_path):
    recipes.train_tokenizer(tiny_run(tmp_path, steps=3), progress=False)
    assert losses(tmp_path) == pytest.approx([1.23483, 1.18259, 0.84911], rel=1e-4)


def test_resume_equals_uninterrupted_with_discriminator(tmp_path):
    options = dict(disc_weight=0.5, disc_start=2, disc_layers=1, disc_channels=8, restart_dead_codes_every=2)
    recipes.train_tokenizer(tiny_run(tmp_path / "full", **options), progress=False)
    # Interrupt after the checkpoint at step 3: the run restarts from it with a fresh process state.
    recipes.train_tokenizer(tiny_run(tmp_path / "split", steps=3, **options), progress=False)
    config = tiny_run(tmp_path / "split", **options)
    meta = json.loads((tmp_path / "split" / "checkpoint" / "config.json").read_text())
    meta["config"]["train"]["steps"] = 6  # the same run, asked to go further
    (tmp_path / "split" / "checkpoint" / "config.json").write_text(json.dumps(meta))
    recipes.train_tokenizer(config, progress=False)
    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    full, _ = load_tokenizer(tmp_path / "full" / "checkpoint")
    split, _ = load_tokenizer(tmp_path / "split" / "checkpoint")
    for (key, a), b in zip(full.state_dict().items(), split.state_dict().values()):
        assert torch.equal(a, b), key


def test_cli_train_eval_tokenize(tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "tokenizer",
        "train",
        "--out",
        str(run),
        *tiny_tokenizer(),
    ]
    assert main(args) == 0
    assert main(["tokenizer", "eval", "--tokenizer", str(run / "checkpoint"), "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 512 and 0 < metrics["codebook_usage"] <= 1 and metrics["psnr_db"] > 0
    assert (tmp_path / "eval" / "reconstructions.png").is_file()
    assert (
        main(["tokenize", "--tokenizer", str(run / "checkpoint"), "--out", str(tmp_path / "cache"), "--flip-copies"])
        == 0
    )
    cache = TokenDataset(tmp_path / "cache")
    assert len(cache) == 1024 and cache.grid == (8, 8)
    assert cache.manifest["tokenizer"]["sha256"] == metrics["tokenizer_sha256"]
    batch = cache.batch(torch.tensor([0, 512]))
    assert batch["ids"].shape == (2, 8, 8) and int(batch["ids"].max()) < 32
    assert batch["labels"][0] == batch["labels"][1]
    assert main(["tokenizer", "train", "--print-config", "train.nope=1"]) == 2
    assert "unknown config key(s) train.nope" in capsys.readouterr().err
