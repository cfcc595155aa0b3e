"""What the commands share: the parser (one-line errors, defaults in --help), argument types refused at parse time,
the option groups of several commands, and how a result is printed. Nothing here imports torch."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, NoReturn

from argen.io.paths import check_writable, save_json


class HelpWithDefaults(argparse.HelpFormatter):
    """--help lists each option's default after its text, unless the text already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one --help away) and every option's default in its --help."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpWithDefaults)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if kwargs.get("help") is None and kwargs.get("default") is not None and kwargs.get("default") is not False:
            kwargs["help"] = "(default: %(default)s)"  # argparse shows nothing for an option without a text
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def output_folder(text: str) -> Path:
    """An output folder argument, refused at parse time (before any work) when it cannot be written."""
    return _writable(text, folder=True)


def output_file(text: str) -> Path:
    """An output file argument, refused at parse time (before any work) when it cannot be written."""
    return _writable(text, folder=False)


def _writable(text: str, folder: bool) -> Path:
    try:
        check_writable(text, folder)
    except OSError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return Path(text)


def add_extractor(parser: argparse.ArgumentParser) -> None:
    """The feature extractor of FID and class accuracy (argen.eval.inception.load_extractor)."""
    parser.add_argument("--classifier", type=Path, help="project classifier checkpoint (offline default)")
    parser.add_argument("--inception", type=Path, help="local FID Inception-v3 weight file (never downloaded)")


def named_paths(items: list[str] | None, option: str) -> list[tuple[str, Path]]:
    """[NAME=]PATH items as (name, path); the name defaults to the parent folder's (or the file's) name."""
    named = []
    for item in items or []:
        name, _, path = item.rpartition("=")
        if not Path(path).exists():
            raise FileNotFoundError(f"{option} {path}: no such file")
        named.append((name or Path(path).parent.name or Path(path).stem, Path(path)))
    return named


def positive(**values: int | None) -> None:
    """Refuse an option below 1 (named as on the command line)."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def progress() -> bool:
    """Progress bars, unless ARGEN_NO_PROGRESS is set (logs of batch jobs)."""
    return os.environ.get("ARGEN_NO_PROGRESS", "") == ""


def print_json(result: dict[str, Any], out: Path | None = None) -> int:
    """Print a result as JSON, and write it to `out` when given; exit status 0."""
    print(json.dumps(result, indent=2))
    if out:
        save_json(out, result)
    return 0


def print_table(result: dict[str, Any], as_json: bool) -> int:
    """Print a flat result as aligned `key  value` lines, or as one JSON line; exit status 0."""
    if as_json:
        print(json.dumps(result))
    else:
        width = max(len(key) for key in result)
        print("\n".join(f"{key:<{width}}  {value}" for key, value in result.items()))
    return 0
