"""Output paths checked before any work starts (a light module: the command line checks them while parsing, before
torch or a model loads)."""

from __future__ import annotations

import os
from pathlib import Path


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
