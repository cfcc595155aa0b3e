"""The README and docs/ stay true: their commands exist, their marked blocks run, their links resolve.

What is run and what is only checked, by an explicit rule:

- A fenced block preceded by the line `<!-- readme-test: run -->` is run: a ```python block in-process, a
  ```bash block one `argen` command at a time (in-process, exit status 0; any other command in it fails the
  test). Both run in a temporary folder that sees the repository's `checkpoints/` and `configs/`. Only cheap
  blocks carry the marker (loading the shipped checkpoints, `--print-config`).
- The block preceded by `<!-- readme-test: command-list -->` is the README's command list: it must name every
  command and subcommand of `argen` (so a new command must be listed), and `argen PATH --help` must succeed for
  each (so a renamed one fails).
- Every other `argen` command in a ```bash block of README.md or docs/*.md is parsed by the real argument
  parser, never run: its command, subcommand, options and choices must exist.
- Every relative link and image of README.md and docs/*.md must point to an existing file, and its #anchor,
  where it has one, to a heading of that file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from argen import cli, commands

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*readme-test:\s*(\S+)\s*-->$")
MARKERS = ("run", "command-list")
SEPARATORS = {"&&", "||", ";", "|"}


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: str | None  # from a `<!-- readme-test: ... -->` line right above the fence

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        start, language = index, lines[index][3:].strip()
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"{path.name}:{start + 1}: unclosed code fence"
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        found = MARKER.match(above.strip())
        blocks.append(
            Block(path, start + 1, language, "\n".join(lines[start + 1 : end]), found.group(1) if found else None)
        )
        index = end + 1
    return blocks


def prose(path: Path) -> str:
    """The file without its fenced blocks and inline code (where `[x](y)` and `# x` are not markdown)."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", path.read_text(), flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def shell_commands(text: str) -> list[list[str]]:
    """Each command of a bash block as a token list: continuation lines joined, comments dropped, `&&` split, and
    the block's own variables (`NAME=value` lines) put in for `$NAME`."""
    commands, variables = [], {}
    for line in text.replace("\\\n", " ").splitlines():
        assignment = re.fullmatch(r"([A-Z_]+)=(\S+)", line.split("#", 1)[0].strip())
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
            continue
        line = re.sub(r"\$([A-Z_]+)", lambda found: variables.get(found.group(1), found.group(0)), line)
        current: list[str] = []
        for token in shlex.split(line, comments=True):
            if token in SEPARATORS:
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [command for command in commands if command]


def argen_arguments(command: list[str]) -> list[str] | None:
    """The arguments of an `argen` (or `.venv/bin/argen`, `python -m argen.cli`, `torchrun -m argen.cli`) command."""
    if command[0] == "argen" or command[0].endswith("/argen"):
        return command[1:]
    for index in range(len(command) - 1):
        if command[index] == "-m" and command[index + 1] == "argen.cli":
            return command[index + 2 :]
    return None


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every runnable command of the parser, e.g. ("tokenizer", "train"), ("demo",)."""
    paths = set()
    for name, child in subcommands(parser).items():
        paths |= command_paths(child, (*prefix, name)) if subcommands(child) else {(*prefix, name)}
    return paths


def parse(arguments: list[str], where: object) -> tuple[str, ...]:
    """Parse with the real parser (nothing runs) and return the command path it selects."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            namespace = commands.parse(cli.build_parser(), arguments)
    except SystemExit:
        pytest.fail(f"{where}: `argen {shlex.join(arguments)}` does not parse:\n{errors.getvalue()}")
    return tuple(part for part in (namespace.command, getattr(namespace, "subcommand", None)) if part)


def all_blocks() -> list[Block]:
    return [block for path in DOCUMENTS for block in fenced_blocks(path)]


def marked(marker: str) -> list[Block]:
    return [block for block in all_blocks() if block.marker == marker]


# ------------------------------------------------------------------------------------------------
# markers and the CI command


def test_markers_are_known_and_sit_on_a_block():
    for path in DOCUMENTS:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            found = MARKER.match(line.strip())
            if found:
                assert found.group(1) in MARKERS, f"{path.name}:{number}: unknown marker {found.group(1)!r}"
                following = next((x for x in lines[number:] if x.strip()), "")
                assert following.startswith("```"), f"{path.name}:{number}: the marker is not above a code block"
    assert len([b for b in marked("command-list") if b.path == README]) == 1, "README needs one command list"


def test_readme_shows_the_command_that_ci_runs():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    command = ci[-1].strip()
    shown = [
        line.split("#")[0].strip()
        for block in fenced_blocks(README)
        if block.language == "bash"
        for line in block.text.splitlines()
    ]
    assert command in shown, f"README.md does not show .ci/run's command `{command}` as a command line"


# ------------------------------------------------------------------------------------------------
# commands


@pytest.mark.parametrize("path", DOCUMENTS, ids=[path.name for path in DOCUMENTS])
def test_every_argen_command_parses(path):
    count = 0
    for block in fenced_blocks(path):
        if block.language != "bash":
            continue
        for command in shell_commands(block.text):
            arguments = argen_arguments(command)
            if arguments is not None:
                parse(arguments, block)
                count += 1
    assert count or path != README


def test_command_list_names_every_command():
    (block,) = [b for b in marked("command-list") if b.path == README]
    listed = set()
    for command in shell_commands(block.text):
        arguments = argen_arguments(command)
        assert arguments is not None, f"{block}: the command list holds a command that is not argen: {command}"
        listed.add(parse(arguments, block))
    every = command_paths(cli.build_parser())
    assert not every - listed, f"{block}: commands missing from the README's list: {sorted(every - listed)}"
    assert listed <= every


def test_help_of_every_listed_command():
    (block,) = [b for b in marked("command-list") if b.path == README]
    paths = [()] + sorted({parse(argen_arguments(c), block) for c in shell_commands(block.text)})
    for path in paths:
        output = io.StringIO()
        with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
            cli.main([*path, "--help"])
        assert exit_info.value.code == 0, f"argen {' '.join(path)} --help failed"
        assert "usage: argen" in output.getvalue()


# ------------------------------------------------------------------------------------------------
# blocks marked `run`


@pytest.fixture
def repository_view(tmp_path, monkeypatch):
    """A scratch working directory whose checkpoints/ and configs/ are the repository's."""
    for name in ("checkpoints", "configs"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


RUN_BLOCKS = marked("run")


def test_there_are_blocks_to_run():
    assert {block.language for block in RUN_BLOCKS if block.path == README} >= {"python", "bash"}


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[str(block) for block in RUN_BLOCKS])
def test_marked_block_runs(block, repository_view):
    if block.language == "python":
        exec(compile(block.text, str(block), "exec"), {"__name__": "__readme__"})
        return
    assert block.language == "bash", f"{block}: only python and bash blocks can be run"
    for command in shell_commands(block.text):
        arguments = argen_arguments(command)
        assert arguments is not None, f"{block}: a run block may hold only argen commands, not {command}"
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(arguments)
        assert code == 0, f"{block}: `argen {shlex.join(arguments)}` exited with {code}"


# ------------------------------------------------------------------------------------------------
# links

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\[[^\]]+\]:\s*(\S+)", re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    result = set()
    for line in re.sub(r"^```.*?^```[^\n]*$", "", path.read_text(), flags=re.S | re.M).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        result.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return result


@pytest.mark.parametrize("path", DOCUMENTS, ids=[path.name for path in DOCUMENTS])
def test_relative_links_resolve(path):
    broken = []
    for match in LINK.finditer(prose(path)):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        file = (path.parent / file_part).resolve() if file_part else path
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{path.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)
