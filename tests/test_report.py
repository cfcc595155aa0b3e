"""The HTML report: files on disk, and a real headless Chromium that must render every image."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from argen.eval.report import (
    Grid,
    Media,
    Plot,
    ReportError,
    Series,
    Table,
    Text,
    quality_plot,
    read_jsonl,
    training_curves,
    write_report,
)


def write_log(path: Path) -> Path:
    lines = [
        json.dumps({"step": step, "tokenizer_loss": 1.0 / step, "lr": 1e-3, "images_per_s": 100.0})
        for step in range(1, 21)
    ]
    path.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n")
    return path


def make_sections(tmp_path: Path) -> list:
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, size=(16, 16), dtype=np.uint8)) for _ in range(3)]
    gif = tmp_path / "video.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    rows = [
        {"method": "raster", "step": 100, "wall_time_s": 10.0, "fid": 30.0},
        {"method": "raster", "step": 200, "wall_time_s": 20.0, "fid": 20.0},
        {"method": "PAR-4", "step": 100, "wall_time_s": 4.0, "fid": 33.0},
        {"method": "PAR-4", "step": 200, "wall_time_s": 8.0, "fid": 21.5},
    ]
    return [
        Text("About", "Samples & metrics <for> a tiny run.\n\nSecond paragraph."),
        Grid("Samples", rng.integers(0, 256, size=(10, 1, 8, 8), dtype=np.uint8), columns=5, caption="class 0-9"),
        Table("Metrics", [{"model": "GPT-T", "fid": 12.3456789, "is": 4.2}, {"model": "GPT-S", "fid": 9.0}]),
        training_curves(write_log(tmp_path / "log.jsonl")),
        quality_plot(rows, "fid", x="step", group="method"),
        quality_plot(rows, "fid", x="wall_time_s", group="method", title="FID vs wall time"),
        Media("Video sample", gif),
    ]


def test_report_files_and_html(tmp_path):
    index = write_report(tmp_path / "report", make_sections(tmp_path), title="Run <1>")
    folder = index.parent
    page = index.read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 5  # grid, 3 plots, gif
    for name in images:
        assert "/" not in name and (folder / name).is_file()  # relative links, files next to the page
        with Image.open(folder / name) as picture:
            assert picture.width > 0
    assert images[-1].endswith(".gif")
    assert "Run &lt;1&gt;" in page and "Samples &amp; metrics &lt;for&gt;" in page  # escaped text
    assert page.count("<table>") == 1 and "<td>12.35</td>" in page and "<th>is</th>" in page
    with Image.open(folder / images[0]) as grid:  # 5 x 2 grid of 8 px images, padding 2, scale 2
        assert grid.size == ((5 * 10 + 2) * 2, (2 * 10 + 2) * 2)


def test_report_helpers_and_errors(tmp_path):
    log = write_log(tmp_path / "log.jsonl")
    assert len(read_jsonl(log)) == 20
    curves = training_curves(log)
    assert [s.label for s in curves.series] == ["tokenizer_loss"] and len(curves.series[0].x) == 20
    plot = quality_plot([{"step": 2, "fid": 1.0}, {"step": 1, "fid": 3.0}], "fid")
    assert list(plot.series[0].x) == [1, 2] and list(plot.series[0].y) == [3.0, 1.0]
    (tmp_path / "bad.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ReportError, match="bad.jsonl:2"):
        read_jsonl(tmp_path / "bad.jsonl")
    with pytest.raises(ReportError, match="no loss keys"):
        training_curves([{"step": 1, "lr": 0.1}])
    with pytest.raises(ReportError, match="must be an existing"):
        write_report(tmp_path / "r", [Media("missing", tmp_path / "nothing.gif")])
    with pytest.raises(ValueError, match="uint8"):
        write_report(tmp_path / "r", [Grid("floats", np.zeros((2, 1, 4, 4), dtype=np.float32))])
    write_report(tmp_path / "r", [Plot("log", [Series("a", [1, 2, 3], [1.0, 10.0, 100.0])], log_y=True)])


def test_report_renders_in_headless_chromium(tmp_path, dump_dom):
    index = write_report(tmp_path / "report", make_sections(tmp_path))
    dom = dump_dom(index)
    assert 'data-images-ok="true"' in dom, dom[:500]
    assert 'data-images-count="5"' in dom
    assert dom.count("<table>") == 1 and "<td>GPT-S</td>" in dom
    # The check can fail: a missing image file turns it false.
    next(index.parent.glob("*.gif")).unlink()
    assert 'data-images-ok="false"' in dump_dom(index)
