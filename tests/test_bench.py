"""`argen bench sample`: the JSON contract (values are machine-dependent; only their consistency is checked)."""

import json
from pathlib import Path

import pytest
import torch

from argen.cli import main

SHIPPED_1X = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64" / "ar-1x"

KEYS = {
    "steps",
    "ms_per_step_min",
    "ms_per_step_median",
    "images_per_s",
    "tokens_per_s",
    "bytes_per_step",
    "bandwidth_fraction",
    "dtype_path",
    "linear_path",
    "cpu_model",
    "cpu_cores",
    "threads",
    "isa",
    "torch_version",
}


@pytest.mark.parametrize("parallel, steps", [(1, 16), (4, 4 + 16 // 4 - 1)])
def test_bench_sample_json(capsys, parallel, steps):
    assert (
        main(
            [
                "bench",
                "sample",
                "--preset",
                "GPT-T",
                "--random-weights",
                "--grid",
                "4",
                "--batch",
                "2",
                "--cfg",
                "2",
                "--parallel",
                str(parallel),
                "--repeats",
                "1",
                "--dtype",
                "fp32",
                "--bandwidth-gbs",
                "30",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert KEYS <= set(result) and set(result["isa"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert (result["dtype_path"], result["linear_path"], result["bandwidth_measured"]) == ("fp32", "fp32", False)
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


def test_int8_bytes_per_step_count_one_byte_per_linear_weight():
    from argen.bench import bytes_per_step
    from argen.config import GPT_PRESETS, GPTConfig, LayoutConfig, preset
    from argen.layout import Layout
    from argen.model import Transformer

    config = preset(GPT_PRESETS, "GPT-T", GPTConfig)
    layout = Layout(LayoutConfig(grid=(4, 4)), config.vocab_size)
    model = Transformer(config)
    fp32, int8 = (bytes_per_step(model, layout, 1, name)["weights"] for name in ("fp32", "int8"))
    linear = sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))
    assert fp32 - int8 == pytest.approx(
        3 * linear
        - 2 * sum(module.weight.shape[0] for module in model.modules() if isinstance(module, torch.nn.Linear))
    )


def test_read_bandwidth_is_measured_once_per_cpu_and_threads_and_not_cached_when_busy(monkeypatch, tmp_path):
    from argen import machine

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []
    others = [0.0]

    def measure():
        measured.append(1)
        return 25.0, others[0]

    monkeypatch.setattr(machine, "measure_read_bandwidth_gbs", measure)
    assert machine.read_bandwidth_gbs() == machine.read_bandwidth_gbs() == 25.0 and len(measured) == 1
    cached = json.loads((tmp_path / "argen" / "bandwidth.json").read_text())
    assert list(cached) == [f"{machine.cpu_model()} | {torch.get_num_threads()} threads"]
    others[0] = 1.0
    with pytest.warns(RuntimeWarning, match="not cached"):
        assert machine.read_bandwidth_gbs(refresh=True) == 25.0
    assert len(measured) == 2


def test_bench_sample_counts_the_forward_passes_of_speculative_decoding():
    from argen.bench import run_sample_benchmark

    plain = run_sample_benchmark(model=SHIPPED_1X, batch=1, repeats=1, dtype="fp32", guidance=1.0)
    fast = run_sample_benchmark(model=SHIPPED_1X, batch=1, repeats=1, dtype="fp32", guidance=1.0, speculative=8)
    assert plain["forward_passes"] == plain["steps"] == 256 and fast["speculative"] == 8
    assert fast["forward_passes"] < 256 and fast["ms_per_pass_median"] > 0
