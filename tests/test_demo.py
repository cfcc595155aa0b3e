"""`argen demo`: the shipped Fashion-MNIST checkpoints give every method's numbers, files and a report that
renders; `--train` builds the same set from scratch."""

import json
import re
from pathlib import Path

import pytest

from argen.cli import main
from argen.catalog import COMPONENTS, METHODS, SHIPPED, shipped_checkpoints
from argen.demo import run_demo
from argen.io.checkpoint import file_checksum

# Forward passes per image on the 16x16 grid: 256 raster steps; PAR-4x 4 initial + 63 groups; PAR-16x 16 + 15;
# CTF adds its refiner pass; a prologue adds 16 tokens and the separator. The combinations decode their prologue
# 4 at a time, then 16 groups of 16 tokens or coarse labels (no sequential initial tokens), then CTF's refiner:
# fewer steps than either PAR model alone.
STEPS = {
    "1x raster": 256,
    "PAR-4x": 67,
    "PAR-16x": 31,
    "CTF": 257,
    "Prologue": 273,
    "Prologue+PAR-16x": 21,
    "Prologue+CTF+PAR-16x": 22,
}


@pytest.mark.slow
def test_demo_with_shipped_checkpoints_renders_report(tmp_path, capsys, dump_dom):
    if shipped_checkpoints() is None:
        pytest.fail(f"{SHIPPED} must hold the checkpoints {', '.join(COMPONENTS)}")
    assert main(["demo", "--out", str(tmp_path), "--per-class", "3"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"tokenizer: PSNR [23]\d\.\d\d dB", printed)
    assert set(STEPS) == {method.name for method in METHODS}
    for method, steps in STEPS.items():  # one row per method with its step count
        assert re.search(rf"^{re.escape(method)}\s+{steps}\s", printed, re.MULTILINE), method
    index = tmp_path / "report" / "index.html"
    dom = dump_dom(index)
    assert 'data-images-ok="true"' in dom
    assert dom.count("<table>") >= 2


def test_shipped_checkpoints_fit_the_size_budget():
    size = sum(path.stat().st_size for path in SHIPPED.parent.rglob("*") if path.is_file())
    assert size <= 48 * 2**20, f"checkpoints/ holds {size / 2**20:.1f} MB, over the 48 MB budget"


def _strings(value):
    if isinstance(value, dict):
        yield from (text for item in value.values() for text in _strings(item))
    elif isinstance(value, list):
        yield from (text for item in value for text in _strings(item))
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("config", sorted(SHIPPED.parent.glob("*/*/config.json")), ids=lambda path: path.parent.name)
def test_shipped_checkpoints_carry_no_machine_path_and_their_own_hash(config):
    """scripts/ship.py cuts the trainer's absolute paths and records the weights' sha256 as shipped, which loading
    checks (a changed tokenizer file is refused)."""
    meta = json.loads(config.read_text())
    assert not [text for text in _strings(meta) if Path(text).is_absolute()]
    assert meta["shipped_sha256"] == file_checksum(config.parent / "model.safetensors")


@pytest.mark.slow
def test_demo_train_builds_every_component_from_scratch(tmp_path, capsys):
    # A tiny schedule: every trainer runs a few steps on a few hundred Fashion-MNIST images.
    result = run_demo(tmp_path, train=True, per_class=2, progress=False, train_scale=0.01)
    printed = capsys.readouterr().out
    assert "minutes on 2 cores" in printed.splitlines()[0]
    for name in COMPONENTS:
        assert (tmp_path / "train" / "checkpoints" / name / "config.json").is_file(), name
    assert {row["method"]: row["steps"] for row in result["methods"]} == STEPS
    assert (tmp_path / "report" / "index.html").is_file()
