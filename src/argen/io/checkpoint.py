"""Checkpoint directories: `config.json` + `model.safetensors` (+ `trainer_state.pt` to resume).

Every file is written to a temporary name in the same directory and renamed into place, so a crash
never leaves a half-written checkpoint. Loading checks the kind, the config and every shape and
refuses a mismatch with a message that says what differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from argen.io.paths import atomic_write, save_json  # noqa: F401 (part of this module's interface)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# What a checkpoint folder holds (config.json's "kind"); argen.io.load loads each
TOKENIZER_KIND, AR_KIND, REFINER_KIND, CLASSIFIER_KIND = "tokenizer", "ar", "refiner", "classifier"
TRAINER_STATE_FILE = "trainer_state.pt"


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed or does not fit the model."""


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """safetensors needs contiguous, unshared tensors; optionally cast floating tensors (fp16 shipping)."""
    tensors = {}
    for key, value in state_dict.items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp)))


def save_checkpoint(
    directory: str | Path,
    kind: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write config.json (kind + config + extra metadata) and model.safetensors atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(directory / WEIGHTS_FILE, state_dict, dtype)
    save_json(directory / CONFIG_FILE, {"kind": kind, "config": config, **(extra or {})})
    return directory


def read_meta(directory: str | Path, kind: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The parsed config.json of a checkpoint directory, optionally checking its kind."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{directory} is not an argen checkpoint: {CONFIG_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(meta, dict) or "kind" not in meta or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path} must hold an object with 'kind' and a 'config' object")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and meta["kind"] not in kinds:
        raise CheckpointError(f"{directory} holds a {meta['kind']!r} checkpoint; expected {' or '.join(kinds)}")
    return meta


def load_weights(directory: str | Path, file: str = WEIGHTS_FILE) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's weights file (model.safetensors, or e.g. its EMA weights)."""
    path = Path(directory) / file
    if not path.is_file():
        raise CheckpointError(f"{Path(directory)} has no {file}")
    return _read_safetensors(path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise CheckpointError(f"{path} is truncated or not a safetensors file ({error})") from error


def check_finite(state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Refuse weights holding NaN or infinity: they decode to silent garbage (one NaN row in an output layer makes
    every token the same), so the first such tensor is named instead."""
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{source}: tensor {key} holds {bad} NaN or infinite value(s) of {value.numel()}; "
                "the file is damaged or its training diverged"
            )


def load_state_into(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load that names every missing, unexpected, mis-shaped or non-finite tensor before touching weights."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: {tuple(state_dict[k].shape)} in {source}, {tuple(own[k].shape)} in the model"
        for k in own
        if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes[:8]))
    if problems:
        raise CheckpointError(f"{source} does not fit the model ({type(module).__name__}): " + " | ".join(problems))
    check_finite(state_dict, source)
    cast = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    module.load_state_dict(cast, strict=True)


def read_torch_file(path: str | Path) -> Any:
    """The contents of a torch `.pt`/`.pth` file, read without unpickling code (`weights_only=True`).

    Tensors, numbers, strings and containers only; the one class allowed besides is `argparse.Namespace`
    (a plain attribute bag), which LlamaGen's training checkpoints use for their run arguments.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f"an object of {found.group(1)}" if found else "data that is neither tensors nor plain containers"
        raise CheckpointError(
            f"{path} holds {what}; argen reads checkpoints with weights_only=True and never "
            "unpickles code (is it a corrupt file, or not a checkpoint?)"
        ) from error
    except (RuntimeError, EOFError) as error:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (empty, truncated or another format): "
            f"{' '.join(str(error).split())[:200] or type(error).__name__}"
        ) from error


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a user's weight file (`what` names it in messages): .safetensors, or a torch file holding a
    state dict (read with weights_only; a {"state_dict": ...} wrapper is opened). Nothing is downloaded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{what} file {path} does not exist; weights are never downloaded: give the path of a local copy"
        )
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    content = read_torch_file(path)
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if not isinstance(content, dict) or not all(isinstance(value, torch.Tensor) for value in content.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return content


def take_tensors(
    tensors: dict[str, torch.Tensor], wanted: dict[str, torch.Tensor], path: str | Path, layout: str
) -> dict[str, torch.Tensor]:
    """The `wanted` keys (name -> tensor of the expected shape) of a weight file's tensors, which may hold more (a
    classifier head, counters); one error names the missing or mis-shaped ones. `layout` names what the file is for."""
    missing = [key for key in wanted if key not in tensors]
    if missing:
        raise CheckpointError(
            f"{path} is not {layout}: it lacks {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''} (expected keys {next(iter(wanted))} ... "
            f"{list(wanted)[-1]})"
        )
    shapes = [
        f"{key} {tuple(tensors[key].shape)} (expected {tuple(value.shape)})"
        for key, value in wanted.items()
        if tensors[key].shape != value.shape
    ]
    if shapes:
        raise CheckpointError(f"{path} is not {layout}: " + "; ".join(shapes[:4]))
    return {key: tensors[key] for key in wanted}


def save_trainer_state(directory: str | Path, state: dict[str, Any]) -> None:
    atomic_write(Path(directory) / TRAINER_STATE_FILE, lambda tmp: torch.save(state, tmp))


def load_trainer_state(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / TRAINER_STATE_FILE
    if not path.is_file():
        return None
    return read_torch_file(path)


def file_checksum(path: str | Path) -> str:
    """sha256 of a file, to name exactly which weights produced a result."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _note(path: Path) -> Path:
    return path.with_name(f".{path.name}.sum")


def write_checked(path: Path, write: Callable[[Path], None]) -> None:
    """`atomic_write`, then a note beside the file (.NAME.sum: its size and sha256), so that a rerun which would
    reuse the file (a token-cache shard, a sampling part) can tell it from one damaged since."""
    atomic_write(path, write)
    atomic_write(_note(path), lambda tmp: tmp.write_text(f"{path.stat().st_size} {file_checksum(path)}\n"))


def is_intact(path: Path) -> bool:
    """True when `path` exists and matches the size and sha256 noted when `write_checked` wrote it."""
    try:
        size, digest = _note(path).read_text().split()
        return path.stat().st_size == int(size) and file_checksum(path) == digest
    except (OSError, ValueError):
        return False


def remove_checked(path: Path) -> None:
    """Remove a file written by `write_checked` and its note."""
    path.unlink(missing_ok=True)
    _note(path).unlink(missing_ok=True)


def checkpoint_checksum(directory: str | Path, file: str = WEIGHTS_FILE) -> str:
    """sha256 of a checkpoint's weights, read once: it is cached beside them (.model.safetensors.sha256) under the
    file's size and modification time, so a changed file is hashed again (VQ-16's weights are hundreds of MB)."""
    path = Path(directory) / file
    cache = path.with_name(f".{path.name}.sha256")
    stat = path.stat()
    stamp = f"{stat.st_size} {stat.st_mtime_ns}"
    try:
        cached_stamp, digest = cache.read_text().split("\n")[:2]
        if cached_stamp == stamp and len(digest) == 64:
            return digest
    except (OSError, ValueError):
        pass
    digest = file_checksum(path)
    try:
        atomic_write(cache, lambda tmp: tmp.write_text(f"{stamp}\n{digest}\n"))
    except OSError:  # a read-only checkpoint folder: hash it again next time
        pass
    return digest
