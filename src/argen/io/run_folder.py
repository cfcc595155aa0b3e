"""One writer per run folder: `own_folder(path)` holds an exclusive lock on `path/.argen-lock` while a command
writes there (train, tokenizer train, tokenize, sample, data pack), so a second command into the same folder stops
with one line instead of interleaving its checkpoints and logs with the first.

The lock is an `flock` on the file, which the kernel drops when the holder dies, so a killed run never leaves the
folder locked; the file's text (pid, host, command, start) names the holder in the refusal, and a file left by a
holder that died is reported when the next run takes the folder over. Under torchrun only rank 0 locks (the ranks
of one run share its folder).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".argen-lock"


class FolderInUse(ValueError):
    """Another process is writing the run folder."""


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']}, `{holder['command']}` since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


@contextmanager
def own_folder(folder: str | Path, command: str = "") -> Iterator[Path]:
    """Create `folder` if needed and hold it for this process; a folder it created and left empty is removed."""
    folder = Path(folder)
    if int(os.environ.get("RANK", "0")) != 0:
        yield folder
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise FolderInUse(
                f"{folder} is being written by another argen process ({holder}); wait for it to end "
                "or choose another output folder"
            ) from None
        # The holder before us may have removed the file between our open and our lock: lock the file on disk.
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    handle.seek(0)
    left = handle.read().strip()
    if left:
        print(f"argen: {folder}: taking over from {_holder(left)}, which ended without releasing it", file=sys.stderr)
    handle.seek(0)
    handle.truncate()
    handle.write(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": command or "argen",
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
    )
    handle.flush()
    try:
        yield folder
    finally:
        path.unlink(missing_ok=True)
        handle.close()  # drops the lock
        if created and not any(folder.iterdir()):
            folder.rmdir()
