"""The machine a benchmark runs on: CPU model, cores, instruction sets, other processes' load, and its
measured read bandwidth.

The bandwidth is what `torch.sum` reaches over an array far larger than any cache, with this process's
threads, best of a few passes; it is measured once per CPU model and thread count and cached in
$XDG_CACHE_HOME/argen/bandwidth.json (default ~/.cache), and only when other processes left the machine
idle while it was measured.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch

from argen.precision import native_bf16

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
BANDWIDTH_ARRAY_BYTES = 512 * 2**20  # 16x a 32 MiB last-level cache
BANDWIDTH_PASSES = 5
BUSY_OTHERS = 0.2  # CPU cores used by other processes above which a timing is suspect (and not cached)


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, or None where /proc/stat does not exist."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    values = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def other_argen_processes() -> list[int]:
    """The pids of other running argen processes (the `argen` command or `python -m argen...`), from /proc."""
    found = []
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else ():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")[:3]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if int(entry.name) != os.getpid() and any(
            Path(word.decode(errors="replace")).name == "argen" or word.startswith(b"argen.") for word in words
        ):
            found.append(int(entry.name))
    return found


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class OtherLoad:
    """CPU cores used by other processes between start() and stop() (None if unmeasurable)."""

    def start(self) -> None:
        self.jiffies, self.own, self.wall = _cpu_jiffies(), _own_cpu_seconds(), time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.wall

    def stop(self) -> float | None:
        jiffies = _cpu_jiffies()
        if jiffies is None or self.jiffies is None:
            return None
        busy_seconds = (jiffies[0] - self.jiffies[0]) / os.sysconf("SC_CLK_TCK")
        own = _own_cpu_seconds() - self.own
        return max(busy_seconds - own, 0.0) / max(time.perf_counter() - self.wall, 1e-9)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    fields = {}
    for line in path.read_text().split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def isa_flags() -> dict[str, bool]:
    """Which of ISA_FLAGS the CPU reports (all False where /proc/cpuinfo does not exist)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return {flag: flag in flags for flag in ISA_FLAGS}


def describe() -> dict:
    """CPU model, cores, torch threads, ISA flags, the kernels torch dispatches to and its version."""
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "isa": isa_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_bf16": native_bf16(),
        "torch_version": torch.__version__,
    }


def _cache_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "argen" / "bandwidth.json"


def measure_read_bandwidth_gbs() -> tuple[float, float | None]:
    """(GB/s read by torch.sum over BANDWIDTH_ARRAY_BYTES, best pass; other processes' CPU cores meanwhile)."""
    data = torch.ones(BANDWIDTH_ARRAY_BYTES // 4)
    data.sum()  # page the array in
    load = OtherLoad()
    load.start()
    best = float("inf")
    for _ in range(BANDWIDTH_PASSES):
        begin = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - begin)
    return BANDWIDTH_ARRAY_BYTES / best / 1e9, load.stop()


def read_bandwidth_gbs(refresh: bool = False) -> float:
    """This machine's read bandwidth in GB/s, from the cache or measured (and cached when the machine was idle)."""
    path = _cache_file()
    key = f"{cpu_model()} | {torch.get_num_threads()} threads"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if key in cached and not refresh:
        return float(cached[key])
    gbs, others = measure_read_bandwidth_gbs()
    if others is not None and others > BUSY_OTHERS:
        warnings.warn(
            f"other processes used {others:.2f} CPU cores while the read bandwidth was measured "
            f"({gbs:.1f} GB/s); not cached",
            RuntimeWarning,
            stacklevel=2,
        )
        return gbs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**cached, key: gbs}, indent=1))
    return gbs
