"""scripts/gpu_check.py runs its CPU fallback here (every check at tiny sizes, CUDA-only parts skipped), so the
script a GPU machine runs cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_fallback_passes_and_reports_every_check(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA machine runs the full check (scripts/gpu_check.sh), not this fallback")
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(tmp_path / "out.json")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["failed"] == [] and report["devices_agree"] == {"skipped": "no CUDA device"}
    assert (
        report["compiled_decoding"]["ids_equal"] == {"plain": True, "speculative": True}
        and report["ddp"]["ok"]
        and report["ddp"]["ranks"] == 2
    )
    assert report["speculative_decoding"]["ids_equal"] and report["speculative_decoding"]["passes"] <= 67
    assert [run["compiled"] for run in report["training"]] == [False, True]
    assert all(run["last_loss"] < run["first_loss"] for run in report["training"])
    parallel = {row["parallel"] for row in report["decode"]}
    assert parallel == {1, 4, 16} and all(row["ms_per_step"] > 0 for row in report["decode"])
    assert report["vq"]["images_per_s"] > 0 and json.loads(run.stdout) == report
