"""The `argen` command line: argen.commands parses (it imports no torch), then the chosen command's `run` loads
the library, so `argen --help` and `argen --version` answer at once. Errors argen expects (a bad config, a missing
file) print one line; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import os
import sys

from argen import commands


def build_parser():
    """Every command's arguments (argen.commands)."""
    return commands.build_parser()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = commands.parse(parser, list(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    _set_threads(args.threads)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("argen: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not _expected(error) or os.environ.get("ARGEN_DEBUG"):
            raise
        # One line: what was wrong and what to do (ARGEN_DEBUG=1 shows the traceback).
        print(f"argen: error: {' '.join(str(error).split()) or type(error).__name__}", file=sys.stderr)
        return 2


def _set_threads(threads: int | None) -> None:
    import torch  # the first heavy import of a command

    from argen.machine import other_argen_processes

    if threads is not None:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ and sys.stderr.isatty() and (others := other_argen_processes()):
        # Each process takes a thread per core: two of them fight over the cores and both run several times slower.
        print(
            f"argen: warning: another argen process is running (pid {others[0]}); with a thread per core each, "
            "both run several times slower: give each --threads N (N cores between them)",
            file=sys.stderr,
        )


def _expected(error: Exception) -> bool:
    """argen's own errors (ValueError subclasses: ConfigError, CheckpointError, DataError, ...; TrainingError) and
    the expected ones of files and formats."""
    from safetensors import SafetensorError

    from argen.train.run_state import TrainingError

    return isinstance(error, (ValueError, OSError, EOFError, TrainingError, SafetensorError))


if __name__ == "__main__":
    sys.exit(main())
