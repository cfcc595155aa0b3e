"""`argen demo` on the shipped Fashion-MNIST checkpoints: numbers, files, and a report that renders."""

import re

import pytest

from argen.cli import main
from argen.demo import shipped_checkpoints


@pytest.mark.slow
def test_demo_with_shipped_checkpoints_renders_report(tmp_path, capsys, dump_dom):
    if shipped_checkpoints() is None:
        pytest.fail("checkpoints/fmnist32 must hold tokenizer, ar and classifier checkpoints")
    assert main(["demo", "--out", str(tmp_path), "--per-class", "3"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"tokenizer: PSNR 2\d\.\d\d dB", printed)
    assert re.search(r"class_accuracy\s+0\.\d+", printed)
    index = tmp_path / "report" / "index.html"
    dom = dump_dom(index)
    assert 'data-images-ok="true"' in dom
    assert dom.count("<table>") >= 2
