"""What a run folder keeps between runs: the checkpoint swap (one complete checkpoint at every instant), the
rule a resumed run's config must follow, the random generators' state, and the log cut back to the checkpoint's
step. The trainer (argen.train.trainer) calls these; they know nothing of models or the loop."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from argen.config import ConfigError, from_dict, to_dict
from argen.io import checkpoint as ckpt

CHECKPOINT_DIR = "checkpoint"
# Settings that change how fast a run goes, not what it computes: a run resumes under other values.
RESUMABLE_UNDER_OTHER = ("train.steps", "data.num_workers")


class TrainingError(RuntimeError):
    """Training cannot go on (a checkpoint this run cannot resume, a non-finite loss, a bad batch split); the
    message says what to do."""


class CheckpointFolder:
    """`out_dir/checkpoint`, written by a swap: the whole new checkpoint goes into `.checkpoint.staging` (its
    trainer state last), the old one moves to `.checkpoint.previous`, the new one into place. At every instant at
    least one complete checkpoint exists among the three, and the newest of them is the latest saved step."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)

    @property
    def path(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    def _folder(self, role: str) -> Path:
        """The checkpoint folder itself (role "") or one of the swap's: "staging", "previous", "discarded"."""
        return self.path if not role else self.out_dir / f".{CHECKPOINT_DIR}.{role}"

    def write(self, fill: Callable[[Path], None]) -> Path:
        """`fill(folder)` writes a whole checkpoint into the staging folder (its trainer state last); then the swap."""
        final, staging, previous = self._folder(""), self._folder("staging"), self._folder("previous")
        shutil.rmtree(staging, ignore_errors=True)
        fill(staging)
        shutil.rmtree(previous, ignore_errors=True)
        if final.exists():
            final.rename(previous)
        staging.rename(final)
        shutil.rmtree(previous, ignore_errors=True)
        return final

    def restore_newest(self) -> None:
        """Move into place the complete folder (trainer state written, so all else was) of the highest step that
        a save, or a crash during one, left."""
        steps = {}
        for role in ("", "previous", "staging"):
            folder = self._folder(role)
            if (folder / ckpt.TRAINER_STATE_FILE).is_file():
                steps[folder] = int(ckpt.read_meta(folder).get("step", -1))
        newest = max(steps, key=lambda folder: (steps[folder], folder == self.path), default=None)
        if newest is not None and newest != self.path:
            # Out of the way first: until the rename, `newest` itself stays complete.
            if self.path.exists():
                discarded = self._folder("discarded")
                shutil.rmtree(discarded, ignore_errors=True)
                self.path.rename(discarded)
                shutil.rmtree(discarded)
            newest.rename(self.path)

    @property
    def complete(self) -> bool:
        return (self.path / ckpt.TRAINER_STATE_FILE).is_file()


def check_resumable(
    directory: Path, saved_config: dict[str, Any], run_config: Any, saved_step: int, steps: int
) -> None:
    """Refuse to resume a checkpoint written with another config (except a longer train.steps: extending a run),
    or one past this run's last step."""
    saved, wanted = _flatten(_with_defaults(saved_config, run_config)), _flatten(to_dict(run_config))
    differing = sorted(
        key
        for key in saved.keys() | wanted.keys()
        if saved.get(key) != wanted.get(key) and key not in RESUMABLE_UNDER_OTHER
    )
    if differing:
        raise TrainingError(
            f"{directory} was written with a different config ("
            + "; ".join(f"{key}: {saved.get(key)!r} there, {wanted.get(key)!r} here" for key in differing[:6])
            + "); use another train.out_dir, or the same settings (only "
            + " and ".join(RESUMABLE_UNDER_OTHER)
            + " may differ)"
        )
    if saved_step > steps:
        raise TrainingError(
            f"{directory} is at step {saved_step}, past train.steps={steps}; use another "
            "train.out_dir or a train.steps of at least that"
        )


def _with_defaults(saved: dict[str, Any], run_config: Any) -> dict[str, Any]:
    """The saved config with the defaults of keys added since it was written (so older runs resume);
    as saved when it no longer builds (then it differs, and resuming is refused)."""
    try:
        return to_dict(from_dict(type(run_config), saved))
    except (ConfigError, TypeError):
        return saved


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 3}} -> {"train.steps": 3}"""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def drop_log_after(path: Path, step: int) -> None:
    """Keep the log records of steps up to `step`: those after it were logged past the checkpoint a run resumes
    from, and the resumed run logs them again. A line a kill cut short is dropped too."""
    if not path.is_file():
        return

    def kept_record(line: str) -> bool:
        try:
            return json.loads(line).get("step", 0) <= step
        except json.JSONDecodeError:
            return False

    lines = path.read_text().splitlines(keepends=True)
    kept = [line if line.endswith("\n") else line + "\n" for line in lines if kept_record(line)]
    if kept != lines:
        ckpt.atomic_write(path, lambda tmp: tmp.write_text("".join(kept)))


def rng_state() -> dict[str, Any]:
    """Every random generator a step may draw from (torch, CUDA, numpy, Python), as tensors and numbers."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_rest": [int(position), int(has_gauss), float(cached_gauss)],
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    position, has_gauss, cached_gauss = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    random.setstate((3, tuple(int(x) for x in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
