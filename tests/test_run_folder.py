"""One writer per run folder: a second argen command into a folder in use stops with one line and writes nothing;
a holder that was killed leaves nothing locked; a folder a failed command created is not left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from argen.cli import main
from argen.io.run_folder import LOCK_FILE, FolderInUse, own_folder

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "fmnist64"
HOLD = (
    "import sys, time; from argen.io.run_folder import own_folder\nwith own_folder(sys.argv[1], 'train'):\n"
    "    print('held', flush=True); time.sleep(600)"
)


def hold(folder: Path) -> subprocess.Popen:
    """Another process holding `folder`, as a training run would."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.mark.parametrize(
    "command",
    [
        ["sample", "--model", str(SHIPPED / "ar-par16"), "--count", "2", "--out", "{out}"],
        ["train", "--preset", "GPT-T", "model.vocab_size=32", "--out", "{out}"],
        ["tokenize", "--tokenizer", str(SHIPPED / "tokenizer"), "--limit", "8", "--out", "{out}"],
    ],
)
def test_a_second_writer_gets_one_line_and_writes_nothing(command, tmp_path, capsys):
    out = tmp_path / "run"
    holder = hold(out)
    try:
        code = main([argument.format(out=out) for argument in command])
        error = capsys.readouterr().err.strip()
        assert code == 2 and len(error.splitlines()) == 1, error
        assert f"{out} is being written by another argen process (pid {holder.pid} on " in error
        assert "`train` since" in error
        assert [path.name for path in out.iterdir()] == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_the_folder_free_and_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    holder = hold(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with own_folder(out, "sample"):
        assert f"taking over from pid {holder.pid}" in capsys.readouterr().err
        with pytest.raises(FolderInUse, match="`sample` since"):  # held again, now by us
            with own_folder(out):
                pass
    assert list(out.iterdir()) == []  # the lock file went with the run; the folder was the killed run's


def test_a_failed_command_leaves_no_folder_it_created_but_keeps_one_it_found(tmp_path):
    for folder, existed in ((tmp_path / "new", False), (tmp_path / "old", True)):
        if existed:
            folder.mkdir()
        with pytest.raises(RuntimeError), own_folder(folder):
            raise RuntimeError("the command failed")
        assert folder.exists() == existed


def test_sequential_runs_into_one_folder_are_fine(tmp_path, capsys):
    out = tmp_path / "samples"
    for _ in range(2):  # the second resumes/overwrites as before: the lock of the first was released
        assert main(["sample", "--model", str(SHIPPED / "ar-par16"), "--count", "2", "--out", str(out)]) == 0
    assert (out / "samples.npz").is_file() and not (out / LOCK_FILE).exists()
    assert "taking over" not in capsys.readouterr().err
