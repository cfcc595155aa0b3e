"""docs/your-data.md cannot rot: its pipeline block runs, command by command in its order, on a tiny MNIST-like IDX
dataset (scikit-learn's digits at 28x28) with tiny schedules; only `argen serve`, which never returns, is skipped
(its arguments are still parsed by tests/test_readme.py)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from argen.cli import main
from argen.data.idx import write_idx

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your-data.md"
# What the test changes so the whole path takes seconds: each command's own tiny settings, appended (the last of
# two equal options or overrides wins).
TINY = {
    ("tokenizer", "train"): ["train.steps=2", "train.batch_size=8", "train.checkpoint_every=2"],
    ("eval", "train-classifier"): ["train.steps=2", "train.batch_size=16", "train.checkpoint_every=2"],
    ("tokenizer", "eval"): ["--count", "32"],
    ("train",): ["train.steps=2", "train.batch_size=8", "train.checkpoint_every=2", "model.n_layer=1"],
    ("sample",): ["--count", "6", "--batch", "6"],
}


def pipeline_block() -> str:
    text = PAGE.read_text()
    found = re.search(r"<!-- your-data: pipeline -->\n```bash\n(.*?)\n```", text, flags=re.S)
    assert found, f"{PAGE.name} has no block marked <!-- your-data: pipeline -->"
    return found.group(1)


def tiny_mnist(folder: Path) -> None:
    """IDX files as MNIST ships them: digits (8x8, 0-16) upscaled to 28x28, 300 training and 60 test images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images * 15.9, np.ones((3, 3))).astype(np.uint8)  # 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    labels = digits.target.astype(np.uint8)
    for prefix, part in (("train", slice(0, 300)), ("t10k", slice(300, 360))):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images[part])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels[part])


@pytest.mark.slow
def test_the_your_data_page_runs_from_files_to_scores(tmp_path, monkeypatch, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    tiny_mnist(data)
    for name in ("configs", "checkpoints"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    variables = {"DATA": str(data), "HOLDOUT": "60", "G": "1.5"}
    commands, assigned = [], set()
    for line in pipeline_block().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if re.fullmatch(r"[A-Z]+=\S+", line):
            assigned.add(line.split("=")[0])  # the page's value; the test's own is in `variables`
            continue
        commands.append(shlex.split(re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], line)))
    assert assigned == set(variables)
    ran = []
    for command in commands:
        assert command[0] == "argen", command
        arguments = command[1:]
        if arguments[0] == "serve":
            continue
        if "--bootstrap" in arguments:  # a bootstrap of a 6-sample FID says nothing: drop the option and its value
            index = arguments.index("--bootstrap")
            arguments = arguments[:index] + arguments[index + 2 :]
        key = next((key for key in TINY if tuple(arguments[: len(key)]) == key), None)
        code = main([*arguments, *TINY.get(key, [])])
        assert code == 0, (arguments, capsys.readouterr().err[-2000:])
        ran.append(arguments[0])
    assert ran.count("train") == 1 and ran.count("sample") == 2 and ran.count("eval") == 5
    manifest = json.loads((tmp_path / "runs" / "mnist-cache" / "manifest.json").read_text())
    assert manifest["count"] == 240 and manifest["holdout"]["images"] == 60  # the last 60 kept aside
    scores = json.loads((tmp_path / "runs" / "mnist-validation" / "cfg1.5" / "metrics.json").read_text())
    assert scores["reference"] == f"60 idx at {data} train images after the first 240, 64x64"
