"""A self-contained HTML report: `index.html` plus the PNG/GIF files it shows, side by side.

A report is a list of sections, each a small dataclass: `Text`, `Grid` (a sample grid), `Table`
(metric rows), `Plot` (line plots drawn with matplotlib's Agg renderer) and `Media` (an existing image
file such as a video GIF, copied next to the page). New features add sections; nothing else changes.
Links are relative, so the folder can be copied or zipped and opened without a server.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from matplotlib.figure import Figure

from argen.eval.npz import SampleBatch, read_samples
from argen.io.checkpoint import atomic_write
from argen.io.images import save_grid

MEDIA_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".webp")


class ReportError(ValueError):
    """A section that cannot be rendered; the message says which one and why."""


@dataclass
class Text:
    title: str
    body: str  # plain text; blank lines separate paragraphs


@dataclass
class Grid:
    """A grid of uint8 images (N, C, H, W), C in {1, 3}."""

    title: str
    images: np.ndarray | torch.Tensor
    columns: int = 8
    scale: int = 2  # nearest-neighbour enlargement, for tiny images
    caption: str = ""


@dataclass
class Table:
    """Rows of {column: value}; columns appear in the order they are first seen."""

    title: str
    rows: list[dict[str, Any]]
    caption: str = ""


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]


@dataclass
class Plot:
    title: str
    series: list[Series]
    x_label: str = "step"
    y_label: str = ""
    log_y: bool = False
    caption: str = ""


@dataclass
class Media:
    """An existing image file (PNG, GIF, JPEG, WebP), e.g. an animated video sample."""

    title: str
    path: str | Path
    caption: str = ""


Section = Union[Text, Grid, Table, Plot, Media]


# ------------------------------------------------------------------------------------------------
# building plots from logs and results


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-empty line."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}:{number} is not valid JSON: {error}") from error
        if not isinstance(record, dict):
            raise ReportError(f"{path}:{number} must be a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def training_curves(
    log: str | Path | list[dict[str, Any]],
    keys: Sequence[str] | None = None,
    title: str = "Training curves",
    x: str = "step",
    log_y: bool = False,
) -> Plot:
    """A plot of `keys` (default: every key ending in "_loss") against `x` from a trainer's JSONL log."""
    records = read_jsonl(log) if isinstance(log, (str, Path)) else log
    if keys is None:
        keys = sorted({k for r in records for k in r if k.endswith("_loss")})
    if not keys:
        raise ReportError(f"no loss keys to plot in {log if isinstance(log, (str, Path)) else 'the records'}")
    series = []
    for key in keys:
        points = [(r[x], r[key]) for r in records if _is_number(r.get(x)) and _is_number(r.get(key))]
        series.append(Series(key, [p[0] for p in points], [p[1] for p in points]))
    return Plot(title, series, x_label=x, y_label="value", log_y=log_y)


def quality_plot(
    rows: list[dict[str, Any]], metric: str, x: str = "step", group: str | None = None, title: str | None = None
) -> Plot:
    """`metric` against `x` (e.g. "step" or "wall_time_s"), one line per value of the `group` column."""
    lines: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if _is_number(row.get(x)) and _is_number(row.get(metric)):
            lines.setdefault(str(row.get(group, metric)) if group else metric, []).append((row[x], row[metric]))
    if not lines:
        raise ReportError(f"no rows have numeric {x!r} and {metric!r}")
    series = [Series(label, *zip(*sorted(points))) for label, points in lines.items()]
    return Plot(title or f"{metric} vs {x}", series, x_label=x, y_label=metric)


def analysis_sections(path: str | Path) -> list[Section]:
    """Sections of an analysis result: a JSON file (or every such file in a folder) with a "report" block.

    The block is {"title", "text", "tables": [{"title", "rows"}], "figures": [{"title", "file", "caption"}]},
    figure files relative to the JSON file (e.g. `argen analyze entropy` writes entropy.json beside its PNGs).
    """
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    blocks = []
    for file in files:
        try:
            content = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ReportError(f"{file} is not valid JSON: {error}") from error
        if isinstance(content, dict) and isinstance(content.get("report"), dict):
            blocks.append((file, content["report"]))
    if not blocks:
        raise ReportError(f'{path}: no JSON file with a "report" block (write one with `argen analyze`)')
    sections: list[Section] = []
    for file, block in blocks:
        title = str(block.get("title", file.stem))
        if block.get("text"):
            sections.append(Text(title, str(block["text"])))
        sections += [Table(table["title"], table["rows"]) for table in block.get("tables", [])]
        sections += [
            Media(figure["title"], file.parent / figure["file"], figure.get("caption", ""))
            for figure in block.get("figures", [])
        ]
    return sections


# ------------------------------------------------------------------------------------------------
# rendering


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "section"


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _caption(text: str) -> str:
    return f'<p class="caption">{html.escape(text)}</p>' if text else ""


def _image(name: str, alt: str) -> str:
    return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">'


def _render_plot(plot: Plot, path: Path) -> None:
    figure = Figure(figsize=(6.4, 3.8), dpi=100)  # no pyplot: no global figure state, Agg by file type
    axes = figure.add_subplot()
    for series in plot.series:
        axes.plot(
            list(series.x), list(series.y), marker="o" if len(series.x) < 30 else None, markersize=3, label=series.label
        )
    axes.set_title(plot.title)
    axes.set_xlabel(plot.x_label)
    axes.set_ylabel(plot.y_label)
    if plot.log_y:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if len(plot.series) > 1:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")


def _render_table(table: Table) -> str:
    columns: list[str] = []
    for row in table.rows:
        columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_format(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _render_section(section: Section, index: int, out_dir: Path) -> str:
    """The section's HTML; writes its image files into `out_dir`."""
    stem = f"{index:02d}-{_slug(section.title)}"
    if isinstance(section, Text):
        paragraphs = [p for p in section.body.split("\n\n") if p.strip()]
        content = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    elif isinstance(section, Grid):
        save_grid(section.images, out_dir / f"{stem}.png", columns=section.columns, scale=section.scale)
        content = _image(f"{stem}.png", section.title) + _caption(section.caption)
    elif isinstance(section, Table):
        content = _render_table(section) + _caption(section.caption)
    elif isinstance(section, Plot):
        _render_plot(section, out_dir / f"{stem}.png")
        content = _image(f"{stem}.png", section.title) + _caption(section.caption)
    elif isinstance(section, Media):
        source = Path(section.path)
        if source.suffix.lower() not in MEDIA_SUFFIXES or not source.is_file():
            raise ReportError(
                f"section {section.title!r}: {source} must be an existing {'/'.join(MEDIA_SUFFIXES)} file"
            )
        name = f"{stem}{source.suffix.lower()}"
        shutil.copyfile(source, out_dir / name)
        content = _image(name, section.title) + _caption(section.caption)
    else:
        raise ReportError(f"unknown section type {type(section).__name__}; use Text, Grid, Table, Plot or Media")
    return f'<section id="{stem}"><h2>{html.escape(section.title)}</h2>{content}</section>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: 0.3em; }
section { margin: 2em 0; }
img { max-width: 100%; min-width: 160px; height: auto; image-rendering: pixelated; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f4f4f4; }
.caption { color: #666; font-size: 0.9em; }
nav a { margin-right: 1em; }
"""

# After load, record on <body> whether every image decoded (naturalWidth > 0): headless checks read it.
_IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.every(function (image) { return image.complete && image.naturalWidth > 0; });
  document.body.setAttribute("data-images-ok", ok ? "true" : "false");
  document.body.setAttribute("data-images-count", String(images.length));
});
"""


def write_report(out_dir: str | Path, sections: Sequence[Section], title: str = "argen report") -> Path:
    """Write `out_dir/index.html` and its image files; returns the path of index.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = [_render_section(section, index, out_dir) for index, section in enumerate(sections)]
    links = " ".join(
        f'<a href="#{index:02d}-{_slug(s.title)}">{html.escape(s.title)}</a>' for index, s in enumerate(sections)
    )
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style><script>{_IMAGE_CHECK}</script></head>\n<body><h1>{html.escape(title)}</h1>"
        f"<nav>{links}</nav>\n" + "\n".join(rendered) + "\n</body></html>\n"
    )
    path = out_dir / "index.html"
    atomic_write(path, lambda temporary: temporary.write_text(page, encoding="utf-8"))
    return path


# What `report_from_files` shows, in this order: --metrics, --samples, --media, --log, --analysis.
REPORT_FILES = ("metrics", "samples", "media", "log", "analysis")


def report_from_files(
    out_dir: str | Path, title: str, text: str | None = None, **files: list[tuple[str, Path]]
) -> Path:
    """A report of named files (REPORT_FILES kinds): metrics JSONs as a table and plots, sample batches as grids
    (one row per class), media shown as they are, training logs as curves, analysis results as their blocks."""
    unknown = sorted(set(files) - set(REPORT_FILES))
    if unknown:
        raise ReportError(f"unknown report inputs {unknown}; known: {', '.join(REPORT_FILES)}")
    sections: list[Section] = [Text(title, text)] if text else []
    rows = [metrics_row(name, path) for name, path in files.get("metrics", [])]
    if rows:
        sections += metrics_sections(rows)
    sections += [sample_grid(name, read_samples(path)) for name, path in files.get("samples", [])]
    sections += [Media(f"Media: {name}", path) for name, path in files.get("media", [])]
    sections += [training_curves(path, title=f"Training curves: {name}") for name, path in files.get("log", [])]
    for _, path in files.get("analysis", []):
        sections += analysis_sections(path)
    if not sections:
        raise ValueError(f"nothing to report: give files of at least one kind ({', '.join(REPORT_FILES)})")
    return write_report(out_dir, sections, title=title)


def metrics_row(name: str, path: Path) -> dict[str, Any]:
    """A table row from a metrics JSON (`argen eval --out`), with steps and wall time from the sampling.json that
    `argen sample` wrote beside it."""
    row = {
        "name": name,
        **{
            key: value
            for key, value in json.loads(Path(path).read_text()).items()
            if isinstance(value, (int, float, str)) and not key.endswith("file")
        },
    }
    sampling = Path(path).parent / "sampling.json"
    if sampling.is_file():
        info = json.loads(sampling.read_text())
        row.update(
            steps=info["steps"], images_per_s=info["images_per_s"], wall_time_s=info["seconds"] / max(info["images"], 1)
        )
    return row


def sample_grid(name: str, batch: SampleBatch, columns: int = 10) -> Grid:
    """A grid of a sample batch: one row per class when it has labels."""
    images = batch.images.transpose(0, 3, 1, 2)
    if batch.labels is not None:  # up to `columns` samples of each class, class by class
        labels = batch.labels.tolist()
        images = images[
            [i for c in sorted(set(labels)) for i in [j for j, label in enumerate(labels) if label == c][:columns]]
        ]
    return Grid(f"Samples: {name}", images, columns=columns)


def metrics_sections(rows: list[dict[str, Any]]) -> list[Section]:
    """The metrics table and, for each metric two or more rows share, its plots against steps and wall time."""
    sections: list[Section] = [Table("Metrics", rows)]
    for metric in ("fid", "inception_score", "class_accuracy"):
        for axis in ("steps", "wall_time_s"):
            if sum(metric in row and axis in row for row in rows) >= 2:
                sections.append(quality_plot(rows, metric, x=axis, group="name"))
    return sections
