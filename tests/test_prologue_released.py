"""Prologue's released AR converted into the one Transformer gives the official code's logits and greedy samples.

tests/data/prologue-ar was made once with the official code (scripts/prologue_reference.py, commit 3b6db41 of
github.com/Zyriix/prologue): a tiny ARModel in the released models' configuration with random weights, its state
dict as Accelerate saves it, a teacher-forced batch with the official logits, and the official greedy samples.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import argen
from argen.cli import main
from argen.io.checkpoint import CheckpointError, load_state_into
from argen.io.load import build_ar
from argen.io.prologue_release import fold_prologue_ar
from argen.sample import SamplingOptions, generate

DATA = Path(__file__).parent / "data" / "prologue-ar"
META = json.loads((DATA / "config.json").read_text())
REFERENCE = load_file(DATA / "reference.safetensors")
VISUAL, PROLOGUE, Z_LEN = META["visual_codes"], META["prologue_codes"], META["prologue_length"]
SIZES = dict(
    prologue_length=Z_LEN, prologue_codes=PROLOGUE, grid=tuple(META["grid"]), rope_dims=META["rope_axes_dim"][0]
)


def converted() -> tuple:
    config, weights = fold_prologue_ar(load_file(DATA / "model.safetensors"), **SIZES)
    layout, model = build_ar(config, VISUAL)
    load_state_into(model, weights, "prologue-ar")
    return layout, model.eval()


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
