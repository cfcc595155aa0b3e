"""All three methods in one model: prologue tokens first (in parallel pairs), then CTF coarse labels in PAR's
region order, then one refiner pass, trained and sampled through the ordinary CLI (the one Layout, Sampler and
Trainer)."""

import json

import torch

import argen
from tiny_tokenizer import tiny_tokenizer
from argen.cli import main
from argen.ctf.table import load_table
from argen.data.token_cache import TokenDataset

TOKENIZER = [
    *tiny_tokenizer(steps=1),
    "model.prologue_tokens=4",
    "model.prologue_codebook_size=16",
    "model.prologue_codebook_dim=4",
    "model.prologue_width=32",
    "model.prologue_layers=1",
    "model.prologue_heads=2",
    "prologue.prior.dim=32",
    "prologue.prior.n_layer=1",
    "prologue.prior.n_head=2",
    "prologue.prior.multiple_of=16",
]
SMALL = [
    "model.dim=32",
    "model.n_layer=2",
    "model.n_head=2",
    "model.multiple_of=16",
    "train.batch_size=16",
    "train.steps=2",
    "train.warmup_steps=0",
]


def test_prologue_ctf_par_model_trains_and_samples_complete_sequences(tmp_path):
    tokenizer = tmp_path / "tokenizer" / "checkpoint"
    assert main(["tokenizer", "train", "--out", str(tmp_path / "tokenizer"), *TOKENIZER]) == 0
    assert main(["tokenize", "--tokenizer", str(tokenizer), "--out", str(tmp_path / "cache")]) == 0
    table = tmp_path / "table.safetensors"
    assert (
        main(
            [
                "ctf",
                "cluster",
                "--tokenizer",
                str(tokenizer),
                "--clusters",
                "8",
                "--method",
                "random",
                "--out",
                str(table),
            ]
        )
        == 0
    )
    cache, ar, refiner = str(tmp_path / "cache"), tmp_path / "ar", tmp_path / "refiner"
    assert (
        main(
            [
                "train",
                "--cache",
                cache,
                "--coarse-table",
                str(table),
                "--out",
                str(ar),
                *SMALL,
                "layout.order=region",
                "layout.parallel=16",
                "layout.sequential_initial=false",
                "layout.prologue_parallel=2",
            ]
        )
        == 0
    )
    meta = json.loads((ar / "checkpoint" / "config.json").read_text())["config"]
    # [class][4 prologue][separator][64 coarse labels]: vocabulary 8 clusters + 16 prologue codes + separator
    assert (meta["layout"]["prologue_length"], meta["model"]["vocab_size"]) == (4, 8 + 16 + 1)
    assert main(["ctf", "train-refiner", "--cache", cache, "--table", str(table), "--out", str(refiner), *SMALL]) == 0

    pipeline = argen.load(ar / "checkpoint", refiner=refiner / "checkpoint")
    generated = pipeline.generate_ids(
        [0, 3, 7], torch.Generator().manual_seed(0), guidance=2.0, refine={"restrict_to_cluster": True}
    )
    assert generated.prologue.shape == (3, 4) and int(generated.prologue.min()) >= 0
    assert int(generated.prologue.max()) < 16
    assert generated.visual.shape == generated.coarse.shape == (3, 8, 8)
    assert int(generated.visual.min()) >= 0 and int(generated.visual.max()) < 32
    assert torch.equal(load_table(table).coarse(generated.visual.cpu()), generated.coarse.cpu())
    # One sequence, as the demo's combination: the prologue 2 tokens per step, the separator, then 4 groups of 16
    # coarse labels; fewer steps than PAR-16x alone on this grid (16 initial tokens + 3 groups).
    assert pipeline.layout.num_steps == 2 + 1 + 4 < 16 + 3
    fixed = TokenDataset(cache).column("prologue_ids", 2)
    kept = pipeline.generate_ids([1, 2], torch.Generator().manual_seed(1), forced={"prologue": fixed})
    assert torch.equal(kept.prologue.cpu(), fixed)
    assert pipeline.decode(generated.visual).shape == (3, 1, 16, 16)
