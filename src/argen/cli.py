"""The `argen` command line: argen.cli_arguments parses (it imports no torch), then argen.commands runs the chosen
command; the library loads only then, so `argen --help` and `argen --version` answer at once."""

from __future__ import annotations

import sys

from argen import cli_arguments


class _CommandNames(dict):
    """The handler of every command is its own name: argen.commands.HANDLERS maps it to what runs it."""

    def __missing__(self, name: str) -> str:
        return name


def build_parser():
    """Every command's arguments (argen.cli_arguments)."""
    return cli_arguments.build_parser(_CommandNames(), __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = cli_arguments.parse(parser, list(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    # The one import that waits for a command: it loads torch and the library (hundreds of ms to seconds).
    from argen import commands

    return commands.run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
