"""The import graph of argen: no cycles, and argen modules imported at the top of a module, never inside a
function (so that a cycle cannot hide behind a late import)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
# `import argen` stays light: the package root loads the pipeline only when `argen.load` is called; a command
# module (argen.commands.*) and argen.cli import the library (and with it torch) only once a command runs, so
# `argen --help` and `--version` answer at once. Nothing imports a command module but its package (checked below),
# so no cycle can hide behind those late imports.
LATE_IMPORTS_ALLOWED = {"argen", "argen.cli"}
COMMAND_MODULES = "argen.commands."
# The README's architecture layers, from the foundation up; a module may import only its own layer and below.
# A module is placed by its longest matching prefix ("argen.model" covers argen.model.*).
LAYERS = {
    "foundation": [
        "argen",
        "argen.config",
        "argen.distributed",
        "argen.io",
        "argen.io.checkpoint",
        "argen.io.images",
        "argen.io.video",
        "argen.data.idx",
        "argen.data.transforms",
    ],
    "components": [
        "argen.model",
        "argen.tokenizer",
        "argen.layout",
        "argen.precision",
        "argen.sample",
        "argen.teacher_forcing",
        "argen.ctf",
        "argen.ctf.table",
        "argen.ctf.sample",
        "argen.data",
        "argen.eval",
    ],
    "loading": ["argen.io.load", "argen.io.convert", "argen.io.prologue_release"],
    "library": [
        "argen.catalog",
        "argen.pipeline",
        "argen.sampling_run",
        "argen.ctf.ceiling",
        "argen.ctf.cluster",
        "argen.ctf.redundancy",
        "argen.ctf.refinement",
        "argen.eval.distributed",
        "argen.data.tokenize",
        "argen.eval.tokenizer",
        "argen.eval.entropy_report",
        "argen.eval.report",
        "argen.train",
        "argen.machine",
        "argen.bench",
        "argen.live",
    ],
    "apps": ["argen.cli", "argen.commands", "argen.demo", "argen.serve"],
}


def layer(module: str) -> int:
    """The index in LAYERS of a module's layer (its longest matching prefix)."""
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS.values())
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of LAYERS; place it there (and in the README's architecture table)"
    return max(matches)[1]


def modules(source: Path = SOURCE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the argen package under `source`."""
    found = {}
    for path in sorted((source / "argen").rglob("*.py")):
        parts = path.relative_to(source).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> tuple[set[str], list[tuple[int, str]]]:
    """(argen modules imported at module level, [(line, module)] of argen imports inside functions)."""
    tree = ast.parse(path.read_text())
    top, late = set(), []

    def targets(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from argen.x import y` imports argen.x.y when that is a module, else a name of argen.x
            return [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            ]
        return []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            for target in targets(child):
                if target.split(".")[0] == "argen":
                    (late.append((child.lineno, target)) if in_function else top.add(target))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return top, late


def graph(source: Path = SOURCE) -> dict[str, set[str]]:
    """Module -> the argen modules it imports at its top. A package counts when a name is imported from it
    (`from argen.data import load_dataset`), not when one of its modules is: Python then runs the package's
    __init__ too, but a half-initialised package only fails a `from package import name`."""
    found = modules(source)
    return {
        name: {target for target in imports(path, set(found))[0] if target in found and target != name}
        for name, path in found.items()
    }


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(
                    " -> ".join(path[path.index(target) :] + [node, target])
                    if target in path
                    else f"{node} -> {target}"
                )
            elif target not in state:
                walk(target, path + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_imports_a_higher_layer():
    names = list(LAYERS)
    upward = [
        f"{module} ({names[layer(module)]}) imports {target} ({names[layer(target)]})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_no_library_module_imports_the_demo_or_the_command_line():
    """The catalog of shipped models is argen.catalog; the demo and the CLI are ends, never dependencies."""
    ends = {"argen.demo", "argen.cli", "argen.commands"}
    found = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if not module.startswith(("argen.cli", "argen.commands", "argen.demo", "argen.serve"))
        for target in targets & ends
    ]
    assert not found, "\n".join(found)


def test_argen_modules_are_imported_at_the_top():
    found = modules()
    late = [
        f"{path.relative_to(SOURCE)}:{line} imports {target}"
        for name, path in found.items()
        if name not in LATE_IMPORTS_ALLOWED and not name.startswith(COMMAND_MODULES)
        for line, target in imports(path, set(found))[1]
    ]
    assert not late, "function-local imports of argen modules:\n" + "\n".join(late)


def test_only_the_command_package_imports_a_command_module():
    """What lets a command module import the library late: it is an end that nothing else depends on (the command
    modules share only argen.commands.arguments and argen.commands.training, which import nothing late)."""
    shared = {"argen.commands.arguments", "argen.commands.training"}
    found = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in sorted(targets)
        if target.startswith(COMMAND_MODULES)
        and target not in shared
        and module != "argen.commands"
        and not (module, target) == ("argen.commands.evaluate", "argen.commands.tokenizer")
    ]
    assert not found, "\n".join(found)
    late = [name for name in shared for _ in imports(modules()[name], set(modules()))[1]]
    assert not late, f"late imports in the shared command modules: {late}"


def test_the_checker_sees_cycles_through_names_and_packages(tmp_path):
    """The graph holds what the tests above rely on: modules, names of modules and names of packages."""
    (tmp_path / "argen" / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from argen.b import x\n",
        "b.py": "import argen.sub.c\nx = 1\n",
        "sub/__init__.py": "from argen.a import x\n",
        "sub/c.py": "def f():\n    from argen import a\n",
    }
    for name, text in files.items():
        (tmp_path / "argen" / name).write_text(text)
    edges = graph(tmp_path)
    assert edges["argen.a"] == {"argen.b"} and edges["argen.b"] == {"argen.sub.c"}
    assert edges["argen.sub"] == {"argen.a"} and edges["argen.sub.c"] == set()
    assert imports(tmp_path / "argen" / "sub" / "c.py", set(modules(tmp_path)))[1] == [(2, "argen.a")]


@pytest.mark.parametrize("arguments", [["--version"], ["--help"], ["sample", "--help"]])
def test_help_and_version_load_no_torch(arguments):
    """`argen --help`, `--version` and a command's `--help` answer from the parser alone (startup in well under a
    second; measured in docs/status.md), so torch must not be imported on that path."""
    script = (
        "import sys\nfrom argen.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
    )
    assert run.stderr.strip().splitlines()[-1] == "False", run.stderr
