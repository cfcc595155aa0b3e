"""Output files: checked before any work starts, and written atomically (a light module: the command line checks
and writes with it without loading torch)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files get the mode the user's umask gives (mkstemp's temporary files are 0600): a shared dataset's caches and a
# team's checkpoints stay readable by the others.
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` then rename tmp to `path` (same directory, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(path: Path, data: Any) -> None:
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def check_writable(path: str | Path, folder: bool = True) -> None:
    """Refuse, before any work, an output that cannot be written: a folder (or, with folder=False, a file) whose
    nearest existing ancestor is not a writable folder, or a folder path that names a file. Creates nothing."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise FileExistsError(f"output folder {path} is a file; choose another path")
    if not folder and path.is_dir():
        raise IsADirectoryError(f"output file {path} is a folder; choose a file name")
    if not folder and path.is_file():
        if not os.access(path, os.W_OK):
            raise PermissionError(f"cannot write {path}: the file is read-only")
        return
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: {existing} is not a writable folder")
