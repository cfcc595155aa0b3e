"""`argen demo` on the shipped Fashion-MNIST checkpoints: numbers, files, and a report that renders."""

import re

import pytest

from argen.cli import main
from argen.demo import COMPONENTS, SHIPPED, shipped_checkpoints


@pytest.mark.slow
def test_demo_with_shipped_checkpoints_renders_report(tmp_path, capsys, dump_dom):
    if shipped_checkpoints() is None:
        pytest.fail(f"{SHIPPED} must hold the checkpoints {', '.join(COMPONENTS)}")
    assert main(["demo", "--out", str(tmp_path), "--per-class", "3"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"tokenizer: PSNR [23]\d\.\d\d dB", printed)
    # One row per method with its step count (16x16 tokens: 256, 67 and 31 steps) and a speed-up over 1x.
    for method, steps in (("1x raster", 256), ("PAR-4x", 67), ("PAR-16x", 31)):
        assert re.search(rf"^{re.escape(method)}\s+{steps}\s", printed, re.MULTILINE), method
    index = tmp_path / "report" / "index.html"
    dom = dump_dom(index)
    assert 'data-images-ok="true"' in dom
    assert dom.count("<table>") >= 2
