"""Hostile and careless input, case by case: each gives exit code 2, one line on stderr that says what was wrong,
and writes nothing (no output folder, no checkpoint lost)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from argen.cli import main
from argen.data.idx import write_idx

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64"
CONFIG_MODEL = ["--preset", "GPT-T", "model.vocab_size=32"]


class Evil:
    """A class a pickle would instantiate: loading must refuse it."""


def prepare(case: str, tmp: Path) -> dict[str, str]:
    """Files some cases read, made in `tmp`; returned as {name: path} for the argument templates."""
    files = {"tmp": str(tmp)}
    if case == "yaml-syntax":
        (tmp / "bad.yaml").write_text("train:\n  steps: [1, 2\n")
    if case in ("convert-random-bytes", "convert-empty", "convert-pickle"):
        path = tmp / "source.pt"
        if case == "convert-random-bytes":
            path.write_bytes(np.random.default_rng(0).bytes(4096))
        elif case == "convert-empty":
            path.write_bytes(b"")
        else:
            torch.save({"model": Evil()}, path)
    if case == "truncated-weights":
        shutil.copytree(SHIPPED / "ar-1x", tmp / "ar-1x")
        weights = tmp / "ar-1x" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    if case == "altered-refiner":
        shutil.copytree(SHIPPED / "ctf-refiner", tmp / "ctf-refiner")
        weights = load_file(str(tmp / "ctf-refiner" / "model.safetensors"))
        table = weights["fine_to_coarse"].clone()
        other = int((table != table[0]).nonzero()[0])  # swap code 0 with a code of another cluster
        table[[0, other]] = table[[other, 0]]
        save_file({**weights, "fine_to_coarse": table}, str(tmp / "ctf-refiner" / "model.safetensors"))
    if case in (
        "nan-output-row",
        "inf-class-embedding",
        "nan-tokenizer-decoder",
        "altered-shipped-tokenizer",
        "config-null",
        "config-without-dim",
        "grid-edited",
    ):
        for folder in ("ar-1x", "tokenizer"):  # the AR names its tokenizer as ../tokenizer
            shutil.copytree(SHIPPED / folder, tmp / folder)
        ar, tokenizer = tmp / "ar-1x", tmp / "tokenizer"
        if case in ("nan-output-row", "inf-class-embedding"):
            key, value = (
                ("output.weight", float("nan"))
                if case == "nan-output-row"
                else ("cls_embedding.embedding_table.weight", float("inf"))
            )
            edit_weights(ar, lambda weights: weights[key][3].fill_(value))
        if case in ("nan-tokenizer-decoder", "altered-shipped-tokenizer"):
            key = next(key for key in load_file(str(tokenizer / "model.safetensors")) if key.startswith("decoder."))
            change = float("nan") if case == "nan-tokenizer-decoder" else 0.01
            edit_weights(tokenizer, lambda weights: weights[key].add_(change))
        if case in ("config-null", "config-without-dim", "grid-edited"):
            meta = json.loads((ar / "config.json").read_text())
            if case == "config-null":
                meta["config"] = None
            elif case == "config-without-dim":
                del meta["config"]["model"]["dim"]
            else:
                meta["config"]["layout"]["grid"] = [8, 8]
            (ar / "config.json").write_text(json.dumps(meta))
    if case == "empty-npz":
        np.savez(tmp / "empty.npz", np.zeros((0, 64, 64, 1), np.uint8))
    if case == "labels-outside-the-classes":
        write_idx(tmp / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
        write_idx(tmp / "train-labels-idx1-ubyte.gz", np.array([0, 1, 200, 3], np.uint8))
    if case in ("out-is-a-file", "out-under-a-file"):
        (tmp / "file").write_text("not a folder")
    return files


def edit_weights(folder: Path, edit) -> None:
    weights = load_file(str(folder / "model.safetensors"))
    edit(weights)
    save_file(weights, str(folder / "model.safetensors"))


SAMPLE = ["sample", "--model", str(SHIPPED / "ar-1x"), "--out", "{tmp}/out"]
COPIED = ["sample", "--model", "{tmp}/ar-1x", "--out", "{tmp}/out"]  # the shipped 1x and its tokenizer, edited
# name, arguments ({tmp} is the case's folder), what the message must say
CASES = [
    (
        "batch-size-0",
        ["train", *CONFIG_MODEL, "--out", "{tmp}/out", "train.batch_size=0"],
        "train.batch_size must be an integer >= 1",
    ),
    (
        "batch-size-negative",
        ["train", *CONFIG_MODEL, "--out", "{tmp}/out", "train.batch_size=-4"],
        "train.batch_size must be an integer >= 1",
    ),
    (
        "grad-accum-0",
        ["train", *CONFIG_MODEL, "--out", "{tmp}/out", "train.grad_accum=0"],
        "train.grad_accum must be an integer >= 1",
    ),
    (
        "precision-fp8",
        ["train", *CONFIG_MODEL, "--out", "{tmp}/out", "train.precision=fp8"],
        "train.precision must be one of fp32, bf16, auto",
    ),
    ("steps-0", ["train", *CONFIG_MODEL, "--out", "{tmp}/out", "train.steps=0"], "train.steps must be"),
    ("unknown-key", ["train", *CONFIG_MODEL, "--out", "{tmp}/out", "train.stepz=3"], "stepz"),
    (
        "yaml-syntax",
        ["train", *CONFIG_MODEL, "--config", "{tmp}/bad.yaml", "--out", "{tmp}/out"],
        "bad.yaml is not valid YAML",
    ),
    (
        "missing-data-dir",
        ["tokenizer", "train", "--preset", "VQ-CPU-32", "--data-dir", "{tmp}/does-not-exist", "--out", "{tmp}/out"],
        "does-not-exist does not exist",
    ),
    (
        "labels-outside-the-classes",
        [
            "eval",
            "ref",
            "--classifier",
            str(SHIPPED / "classifier"),
            "--data-dir",
            "{tmp}",
            "--split",
            "train",
            "--out",
            "{tmp}/out/ref.npz",
        ],
        "labels must lie in [0, 10)",
    ),
    (
        "convert-random-bytes",
        ["convert", "llamagen", "{tmp}/source.pt", "{tmp}/out", "--preset", "GPT-B"],
        "never unpickles code",
    ),
    (
        "convert-empty",
        ["convert", "llamagen", "{tmp}/source.pt", "{tmp}/out", "--preset", "GPT-B"],
        "not a readable PyTorch checkpoint",
    ),
    (
        "convert-pickle",
        ["convert", "llamagen", "{tmp}/source.pt", "{tmp}/out", "--preset", "GPT-B"],
        "holds an object of",
    ),
    (
        "convert-override-after-option",
        ["convert", "llamagen", "{tmp}/missing.pt", "{tmp}/out", "--preset", "GPT-B", "model.n_layer=2"],
        "missing.pt does not exist",
    ),
    (
        "truncated-weights",
        ["sample", "--model", "{tmp}/ar-1x", "--tokenizer", str(SHIPPED / "tokenizer"), "--out", "{tmp}/out"],
        "truncated or not a safetensors file",
    ),
    ("count-0", [*SAMPLE, "--count", "0"], "--count must be >= 1"),
    ("batch-0", [*SAMPLE, "--batch", "0"], "--batch must be >= 1"),
    ("temperature-0", [*SAMPLE, "--temperature", "0"], "temperature must be > 0"),
    ("temperature-negative", [*SAMPLE, "--temperature", "-1"], "temperature must be > 0"),
    ("class-outside-the-model", [*SAMPLE, "--classes", "3,12"], "class labels must be integers in [0, 10)"),
    ("classes-not-numbers", [*SAMPLE, "--classes", "shirt"], "--classes must be comma-separated integers"),
    (
        "another-tokenizer",
        [*SAMPLE, "--tokenizer", str(SHIPPED / "prologue-tokenizer")],
        "was trained on the tokens of the tokenizer with sha256",
    ),
    (
        "ctf-without-refiner",
        ["sample", "--model", str(SHIPPED / "ctf-ar"), "--out", "{tmp}/out"],
        "predicts CTF coarse labels",
    ),
    (
        "altered-refiner",
        ["sample", "--model", str(SHIPPED / "ctf-ar"), "--refiner", "{tmp}/ctf-refiner", "--out", "{tmp}/out"],
        "is not the one it was trained with",
    ),
    ("nan-output-row", [*COPIED], "tensor output.weight holds 128 NaN or infinite value(s)"),
    ("inf-class-embedding", [*COPIED], "tensor cls_embedding.embedding_table.weight holds 128 NaN or infinite"),
    ("nan-tokenizer-decoder", [*COPIED], "NaN or infinite value(s)"),
    ("altered-shipped-tokenizer", [*COPIED], "weights were changed after it was shipped"),
    ("config-null", [*COPIED], "must hold an object with 'kind' and a 'config' object"),
    ("config-without-dim", [*COPIED], "config.model does not state dim"),
    ("grid-edited", [*COPIED], "lays out [8, 8] token grids but its tokenizer"),
    ("refine-option-without-refiner", [*SAMPLE, "--refine-temperature", "2"], "they need --refiner"),
    ("threads-0", ["--threads", "0", "train", *CONFIG_MODEL, "--out", "{tmp}/out"], "--threads must be >= 1"),
    (
        "empty-npz",
        [
            "eval",
            "{tmp}/empty.npz",
            "--ref",
            str(SHIPPED / "reference.npz"),
            "--classifier",
            str(SHIPPED / "classifier"),
        ],
        "holds no images",
    ),
    ("out-is-a-file", [*SAMPLE[:-2], "--out", "{tmp}/file"], "is a file"),
    (
        "out-under-a-file",
        ["tokenize", "--tokenizer", str(SHIPPED / "tokenizer"), "--out", "{tmp}/file/cache"],
        "is not a writable folder",
    ),
]


def written(folder: Path) -> list[Path]:
    """The files under `folder`, but the caches of weights files' sha256 (ckpt.checkpoint_checksum) beside them."""
    return sorted(path for path in folder.rglob("*") if not path.name.endswith(".sha256"))


@pytest.mark.parametrize("case, arguments, message", CASES, ids=[case[0] for case in CASES])
def test_hostile_input_gives_one_line_and_writes_nothing(case, arguments, message, tmp_path, capsys):
    files = prepare(case, tmp_path)
    before = written(tmp_path)
    try:
        code = main([argument.format(**files) for argument in arguments])
    except SystemExit as exit:  # argparse's own refusals (an output that cannot be written)
        code = exit.code
    error = capsys.readouterr().err.strip()
    assert code == 2, error
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert message in error, error
    assert "weights_only=False" not in error
    assert written(tmp_path) == before  # nothing written, nothing lost
