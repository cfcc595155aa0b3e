"""`argen report`: a self-contained HTML report of runs, samples and metrics."""

from __future__ import annotations

import argparse
from typing import Any

from argen.commands.arguments import named_paths, output_folder


def add(commands: Any) -> None:
    report = commands.add_parser("report", help="a self-contained HTML report of runs, samples and metrics")
    report.add_argument("--out", type=output_folder, default="runs/report")
    report.add_argument("--title", default="argen report")
    report.add_argument("--text", help="an introductory paragraph")
    report.add_argument(
        "--metrics",
        nargs="*",
        metavar="[NAME=]FILE.json",
        help="results of `argen eval --out` (with sampling.json beside: steps, time)",
    )
    report.add_argument("--samples", nargs="*", metavar="[NAME=]SAMPLES.npz", help="grids, a row per class")
    report.add_argument(
        "--media",
        nargs="*",
        metavar="[NAME=]FILE.gif",
        help="image files shown as they are, e.g. the samples.gif of video samples",
    )
    report.add_argument("--log", nargs="*", metavar="[NAME=]log.jsonl", help="training curves")
    report.add_argument(
        "--analysis",
        nargs="*",
        metavar="DIR|FILE.json",
        help="analysis results with a report block (e.g. `argen analyze entropy --out`)",
    )
    report.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.eval import report

    files = {kind: named_paths(getattr(args, kind), f"--{kind}") for kind in report.REPORT_FILES}
    print(f"report: {report.report_from_files(args.out, args.title, args.text, **files)}")
    return 0
