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
