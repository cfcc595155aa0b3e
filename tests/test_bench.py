"""`argen bench sample`: the JSON contract (values are machine-dependent; only their consistency is checked)."""

import json

import pytest

from argen.cli import main

KEYS = {"steps", "ms_per_step_min", "ms_per_step_median", "images_per_s", "tokens_per_s", "bytes_per_step",
        "bandwidth_fraction"}


@pytest.mark.parametrize("parallel, steps", [(1, 16), (4, 4 + 16 // 4 - 1)])
def test_bench_sample_json(capsys, parallel, steps):
    assert main(["bench", "sample", "--preset", "GPT-T", "--random-weights", "--grid", "4", "--batch", "2",
                 "--cfg", "2", "--parallel", str(parallel), "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert KEYS <= set(result)
    assert result["steps"] == steps and result["rows"] == 4
    assert result["ms_per_step_min"] <= result["ms_per_step_median"]
    assert result["bandwidth_fraction"] == pytest.approx(result["bound_ms_per_step"] / result["ms_per_step_median"])


def test_bench_needs_a_model_or_random_weights(capsys):
    assert main(["bench", "sample", "--preset", "GPT-T"]) == 2
    assert "--random-weights" in capsys.readouterr().err


@pytest.mark.parametrize("pause, repeats, windows", [(0.0, 3, 0), (0.2, 5, 1), (0.3, 4, 2)])
def test_other_load_is_read_over_windows_of_half_a_second(monkeypatch, pause, repeats, windows):
    # The CPU counters tick every 10 ms, so short repeats are pooled into windows of >= 0.5 s and a shorter tail is
    # not read: 0.2 s repeats give one window of 3 repeats, 0.3 s ones two of 2, instant ones none (no load).
    import time

    import torch

    from argen import bench

    reads = []

    class Recorder(bench.OtherLoad):
        def stop(self):
            reads.append(self.elapsed())
            return 0.0

    monkeypatch.setattr(bench, "OtherLoad", Recorder)
    seconds, busiest = bench._timed(lambda: time.sleep(pause), torch.device("cpu"), warmup=0, repeats=repeats)
    assert len(seconds) == repeats and busiest == (0.0 if windows else None)
    assert len(reads) == windows and all(window >= bench.LOAD_WINDOW_SECONDS for window in reads)
