"""argen installed from its wheel (not the editable checkout): it imports, answers `--version`, and finds the shipped
models only where ARGEN_CHECKPOINTS points (the wheel carries no checkpoints; argen.catalog)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_install_runs_and_finds_the_shipped_models_through_argen_checkpoints(tmp_path):
    source = tmp_path / "source"  # a copy, so that the build writes nothing into the checkout
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source], check=True, timeout=300
    )
    wheel = next((tmp_path / "dist").glob("argen-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp_path / "site", wheel], check=True, timeout=300)

    def run(*arguments: str, **env: str) -> list[str]:
        environment = {k: v for k, v in os.environ.items() if k != "ARGEN_CHECKPOINTS"}
        environment.update(PYTHONPATH=str(tmp_path / "site"), **env)
        done = subprocess.run(
            [sys.executable, *arguments], capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    where = "import argen, argen.catalog as c; print(argen.__file__, c.shipped_checkpoints())"
    module, found = run("-c", where)
    assert Path(module).is_relative_to(tmp_path / "site") and found == "None"
    shipped = ROOT / "checkpoints" / "fmnist64"
    assert run("-c", where, ARGEN_CHECKPOINTS=str(shipped))[1] == str(shipped)
    assert run("-m", "argen.cli", "--version")[0] == "argen"
    assert (tmp_path / "site" / "argen" / "serve" / "static").is_dir()  # package data travels with the wheel
