"""Decode precisions: int8 logits stay close to fp32 on a shipped model, the int8 model samples through
`argen.load`, and "auto" picks by instruction set and rows per step."""

from pathlib import Path

import pytest
import torch

import argen
from argen import precision
from argen.model.linear import int8_weights
from argen.precision import INT8_MAX_ROWS, inference_precision, resolve
from argen.sample import SamplingOptions

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pipeline():
    return argen.load(SHIPPED / "ar-1x", tokenizer=SHIPPED / "tokenizer")


def test_int8_logits_are_close_to_fp32_on_a_trained_model(pipeline):
    model, layout = pipeline.model, pipeline.layout
    labels = torch.arange(10)
    visual = pipeline.generate_ids(labels, torch.Generator().manual_seed(0), dtype="fp32").visual
    inputs = layout.training_tensors(visual, labels)
    rope = layout.rope(model.config)
    with torch.no_grad():
        exact = model(inputs["ids"], inputs["kinds"], rope, inputs["mask"])
        with int8_weights():
            quantised = model(inputs["ids"], inputs["kinds"], rope, inputs["mask"])
    # Measured on this model: max |difference| 5 % of the logits' spread, KL 2e-4 nats, argmax agreement 98.6 %.
    assert float((quantised - exact).abs().max()) < 0.1 * float(exact.std())
    log_exact, log_quantised = exact.log_softmax(-1), quantised.log_softmax(-1)
    assert float((log_exact.exp() * (log_exact - log_quantised)).sum(-1).mean()) < 2e-3
    assert float((quantised.argmax(-1) == exact.argmax(-1)).float().mean()) > 0.95


def test_int8_model_loads_and_samples_through_the_pipeline(pipeline):
    generator = torch.Generator().manual_seed(0)
    samples = pipeline.sample(list(range(10)), batch_size=5, generator=generator, dtype="int8", guidance=2.0)
    assert samples.visual.shape == (10, *pipeline.layout.grid) and samples.images.shape[0] == 10
    assert int(samples.visual.min()) >= 0 and int(samples.visual.max()) < pipeline.layout.grid_vocab
    greedy = {
        dtype: pipeline.generate_ids(list(range(10)), dtype=dtype, greedy=True).visual for dtype in ("fp32", "int8")
    }
    # Greedy sequences drift apart once one token differs; most of them still agree.
    assert float((greedy["fp32"] == greedy["int8"]).float().mean()) > 0.5


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_takes_int8_for_few_rows_then_bf16_where_packed_else_fp32(monkeypatch, bf16):
    monkeypatch.setattr(precision, "native_bf16", lambda: bf16)
    largest = INT8_MAX_ROWS[bf16]
    assert resolve("auto", 1, CPU) == resolve("auto", largest, CPU) == "int8"
    assert resolve("auto", largest + 1, CPU) == ("bf16" if bf16 else "fp32")
    assert resolve("auto", 1, CPU, compile=True) == ("bf16" if bf16 else "fp32")  # a compiled step has no int8
    assert resolve("fp32", 1, CPU) == "fp32" and resolve("auto", 1, torch.device("meta")) == "fp32"
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve("fp16", 1, CPU)


def test_precision_errors_are_clear():
    model = torch.nn.Linear(2, 2, device="meta")
    with pytest.raises(ValueError, match="int8 runs on a CPU only"):
        with inference_precision(model, "int8"):
            pass
    with pytest.raises(ValueError, match="cannot run a model whose weights are torch.bfloat16"):
        with inference_precision(torch.nn.Linear(2, 2).to(torch.bfloat16), "fp32"):
            pass
    with pytest.raises(ValueError, match="compiled step runs fp32 or bf16"):
        SamplingOptions(dtype="int8", compile=True)
