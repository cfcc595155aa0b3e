"""Prologue's released AR converted into the one Transformer gives the official code's logits and greedy samples.

tests/data/prologue-ar was made once with the official code (scripts/prologue_reference.py, commit 3b6db41 of
github.com/Zyriix/prologue): a tiny ARModel in the released models' configuration with random weights, its state
dict as Accelerate saves it, a teacher-forced batch with the official logits, and the official greedy samples.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import argen
from argen.cli import main
from argen.data.transforms import to_uint8
from argen.eval.npz import read_npz
from argen.io.checkpoint import CheckpointError
from argen.io.load import load_tokenizer
from argen.io.prologue_release import fold_prologue_ar, load_prologue_ar, load_prologue_tokenizer
from argen.sample import SamplingOptions, generate
from argen.serve.methods import load_methods

DATA = Path(__file__).parent / "data" / "prologue-ar"
META = json.loads((DATA / "config.json").read_text())
REFERENCE = load_file(DATA / "reference.safetensors")
VISUAL, PROLOGUE, Z_LEN = META["visual_codes"], META["prologue_codes"], META["prologue_length"]
SIZES = dict(
    prologue_length=Z_LEN, prologue_codes=PROLOGUE, grid=tuple(META["grid"]), rope_dims=META["rope_axes_dim"][0]
)


def converted() -> tuple:
    _, layout, model = load_prologue_ar(DATA, **SIZES)
    return layout, model


def test_the_converted_ar_gives_the_official_logits():
    layout, model = converted()
    idx, labels = REFERENCE["idx"], REFERENCE["labels"]
    prologue, visual = idx[:, :Z_LEN] - VISUAL, idx[:, Z_LEN + 1 :]  # official ids: visual, prologue (+V), EOS
    tensors = layout.training_tensors(visual.view(len(idx), *META["grid"]), labels, prologue)
    with torch.no_grad():
        logits = model(tensors["ids"], tensors["kinds"], layout.rope(model.config), tensors["mask"])
    official = REFERENCE["logits"]
    assert logits.shape == official.shape
    assert torch.allclose(logits, official, atol=2e-5, rtol=1e-5), (logits - official).abs().max()


@pytest.mark.parametrize("guided", [False, True])
def test_the_converted_ar_samples_the_official_greedy_ids(guided):
    layout, model = converted()
    options = SamplingOptions(greedy=True, guidance=META["guided_scale"] if guided else 1.0)
    generated = generate(model, layout, torch.tensor([0, 2]), options=options)
    official = REFERENCE["ids_guided" if guided else "ids_plain"]
    ours = torch.cat(
        [generated.prologue + VISUAL, torch.full((2, 1), VISUAL + PROLOGUE), generated.visual.flatten(1)], 1
    )
    assert torch.equal(ours, official)


def test_argen_convert_prologue_ar_writes_a_loadable_model(tmp_path, capsys):
    out = tmp_path / "converted"
    sizes = ["--prologue-length", str(Z_LEN), "--prologue-codes", str(PROLOGUE), "--grid", "4", "4"]
    assert main(["convert", "prologue-ar", str(DATA), str(out), *sizes, "--rope-dims", "12"]) == 0
    pipeline = argen.load(out)
    assert pipeline.layout.prologue_length == Z_LEN and pipeline.config.model.ffn == "geglu"
    assert main(["sample", "--model", str(out), "--greedy", "--count", "2", "--classes", "0,2", "--save-ids",
                 str(tmp_path / "ids.json"), "--out", str(tmp_path / "samples")]) == 0  # fmt: skip
    saved = json.loads((tmp_path / "ids.json").read_text())
    assert torch.equal(torch.tensor(saved["ids"]).flatten(1), REFERENCE["ids_plain"][:, Z_LEN + 1 :])
    assert torch.equal(torch.tensor(saved["prologue"]) + VISUAL, REFERENCE["ids_plain"][:, :Z_LEN])


def test_a_wrong_file_is_one_line_naming_the_key(tmp_path):
    state = load_file(DATA / "model.safetensors")
    del state["ar_model.layers.1.ffn.fc2.weight"]
    with pytest.raises(CheckpointError, match=r"ar_model.layers.1.ffn.fc2.weight is missing"):
        fold_prologue_ar(state, **SIZES)
    state = load_file(DATA / "model.safetensors")
    state["ar_model.layers.0.attn1.to_q.weight"] = state["ar_model.layers.0.attn1.to_q.weight"][:-1]
    with pytest.raises(CheckpointError, match=r"to_q.weight has shape \(63, 64\), expected \(64, 64\)"):
        fold_prologue_ar(state, **SIZES)
    save_file({"x": torch.zeros(1)}, tmp_path / "model.safetensors")
    assert main(["convert", "prologue-ar", str(tmp_path), str(tmp_path / "out")]) == 2


TOKENIZER = Path(__file__).parent / "data" / "prologue-tokenizer"
TOKENIZER_META = json.loads((TOKENIZER / "config.json").read_text())
TOKENIZER_REFERENCE = load_file(TOKENIZER / "reference.safetensors")
POST = Path(__file__).parent / "data" / "prologue-post-tokenizer"  # Prologue-Post: a separate prologue encoder
TOKENIZER_SIZES = dict(image_size=TOKENIZER_META["image_size"], patch_size=TOKENIZER_META["patch_size"],
                       rope_dims=tuple(TOKENIZER_META["rope_axes_dim"]))  # fmt: skip


def converted_tokenizer(folder: Path = TOKENIZER):
    return load_prologue_tokenizer(folder, **TOKENIZER_SIZES)[1]


@pytest.mark.parametrize("folder", [TOKENIZER, POST], ids=["prologue", "post"])
def test_the_converted_vit_tokenizer_encodes_and_decodes_as_the_official_one(folder):
    model = converted_tokenizer(folder)
    reference = load_file(folder / "reference.safetensors")
    assert model.post == (folder == POST)
    with torch.no_grad():
        tokens = model.encode_tokens(reference["images"])
        side = TOKENIZER_META["image_size"] // TOKENIZER_META["patch_size"]
        decoded = model.decode(reference["ids"].view(-1, side, side))
    official = reference["encoded"]  # [prologue ids, visual ids]
    assert torch.equal(tokens["prologue_ids"], official[:, : TOKENIZER_META["prologue_length"]])
    assert torch.equal(tokens["ids"].flatten(1), official[:, TOKENIZER_META["prologue_length"] :])
    assert torch.allclose(decoded, reference["decoded"], atol=2e-5, rtol=1e-5), (
        (decoded - reference["decoded"]).abs().max()
    )


def test_a_converted_pair_samples_images_serves_and_resamples_with_fixed_prologues(tmp_path):
    tokenizer, ar = tmp_path / "tokenizer", tmp_path / "ar"
    sizes = ["--image-size", "32", "--patch-size", "8", "--rope-dims", "10", "10", "12"]
    assert main(["convert", "prologue-tokenizer", str(TOKENIZER), str(tokenizer), *sizes]) == 0
    ar_sizes = ["--prologue-length", str(Z_LEN), "--prologue-codes", str(PROLOGUE), "--grid", "4", "4"]
    assert main(["convert", "prologue-ar", str(DATA), str(ar), *ar_sizes, "--rope-dims", "12", "--tokenizer",
                 str(tokenizer)]) == 0  # fmt: skip
    # The released pair, converted: the AR samples ids and decodes them with the tokenizer it records.
    out = tmp_path / "samples"
    assert main(["sample", "--model", str(ar), "--greedy", "--count", "2", "--classes", "0,2", "--out", str(out),
                 "--save-ids", str(tmp_path / "ids.json")]) == 0  # fmt: skip
    images = read_npz(out / "samples.npz").images
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    visual = torch.tensor(json.loads((tmp_path / "ids.json").read_text())["ids"])
    with torch.no_grad():
        expected = converted_tokenizer().decode(visual)
    assert np.abs(images.astype(float) - to_uint8(expected).permute(0, 2, 3, 1).numpy()).max() <= 1
    assert "prologue" in load_methods([f"prologue={ar}"])  # what `argen serve --checkpoints prologue=DIR` loads
    # Fixed-prologue resampling: a token cache of an image folder (prologue ids from the ViT), its prologues kept.
    for label in range(2):
        (tmp_path / "images" / f"c{label}").mkdir(parents=True)
        for n in range(3):
            pixels = np.random.default_rng(n + 3 * label).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / f"c{label}" / f"{n}.png")
    cache = tmp_path / "cache"
    assert main(["tokenize", "--tokenizer", str(tokenizer), "--data-dir", str(tmp_path / "images"), "--out",
                 str(cache)]) == 0  # fmt: skip
    assert main(["sample", "--model", str(ar), "--fixed-prologue", str(cache), "--count", "2", "--columns", "3",
                 "--out", str(tmp_path / "fixed")]) == 0  # fmt: skip
    assert (tmp_path / "fixed" / "fixed-prologue.png").is_file()


def test_the_vit_tokenizer_trains_with_the_one_trainer_alone_and_in_prologue_stage_1(tmp_path):
    vit = ["data.name=digits", "data.image_size=16", "data.channels=1", "model.image_size=16", "model.in_channels=1",
           "model.architecture=vit", "model.patch_size=4", "model.vit_dim=32", "model.vit_layers=1",
           "model.vit_heads=1", "model.vit_decoder_dim=32", "model.vit_decoder_layers=1", "model.vit_decoder_heads=1",
           "model.vit_rope_dims=[10,10,12]", "model.codebook_size=32", "model.codebook_dim=6", "train.steps=2",
           "train.batch_size=8", "train.log_every=1"]  # fmt: skip
    prologue = ["model.prologue_tokens=4", "model.prologue_codebook_size=8", "model.prologue_codebook_dim=6",
                "prologue.prior.dim=32", "prologue.prior.n_head=2", "prologue.prior.n_layer=1",
                "prologue.prior.multiple_of=16"]  # fmt: skip
    for name, extra in (("plain", []), ("prologue", prologue)):
        assert main(["tokenizer", "train", *vit, *extra, "--out", str(tmp_path / name)]) == 0
        records = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        assert len(records) == 2 and all(math.isfinite(record["tokenizer_loss"]) for record in records)
        assert ("ar_prologue_loss" in records[0]) == (name == "prologue")
    tokenizer, _ = load_tokenizer(tmp_path / "prologue" / "checkpoint")
    tokens = tokenizer.encode_tokens(torch.zeros(2, 1, 16, 16))
    assert tokens["ids"].shape == (2, 4, 4) and tokens["prologue_ids"].shape == (2, 4)
    # Prologue-Post: the plain ViT frozen, a separate prologue encoder trained on its outputs.
    post = ["model.vit_prologue_dim=32", "model.vit_prologue_layers=1", "model.vit_prologue_heads=1",
            f"prologue.visual_tokenizer={tmp_path / 'plain' / 'checkpoint'}", "prologue.freeze_visual=true",
            "loss.restart_dead_codes_every=0"]  # fmt: skip
    assert main(["tokenizer", "train", *vit, *prologue, *post, "--out", str(tmp_path / "post")]) == 0
    trained, _ = load_tokenizer(tmp_path / "post" / "checkpoint")
    plain, _ = load_tokenizer(tmp_path / "plain" / "checkpoint")
    assert trained.post and torch.equal(trained.decoder.layers[0].attention.wo.weight,
                                        plain.decoder.layers[0].attention.wo.weight)  # fmt: skip
