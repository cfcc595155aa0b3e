"""Linear's cached inference weights: packed fp32 and bf16 equal the plain products, int8 stays within its
quantisation error, and every copy follows in-place weight updates and is never copied with the module."""

from copy import deepcopy as copy_module

import pytest
import torch
import torch.nn.functional as F

from argen.model.linear import INT8_MAX, Linear, int8_weights, quantize_int8

ROWS = [1, 4, 16, 33]


def random_layer(seed: int = 0) -> Linear:
    torch.manual_seed(seed)
    return Linear(96, 40)


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no oneDNN bf16 on this CPU")
@pytest.mark.parametrize("rows", ROWS)
def test_packed_bf16_linear_equals_bf16_product_and_follows_weight_updates(rows):
    layer = random_layer()
    x = torch.randn(rows, 1, 96)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        packed = layer(x)
        assert layer._derived[0][2] == "bf16" and packed.dtype == torch.bfloat16
        torch.testing.assert_close(packed, F.linear(x.bfloat16(), layer.weight.bfloat16()))
        layer.weight.mul_(2)  # an optimizer step or load_state_dict is an in-place update
        torch.testing.assert_close(layer(x), 2 * packed, atol=0.02, rtol=0.01)
    copy = copy_module(layer)
    assert copy._derived is None
    with torch.no_grad():
        expected = F.linear(x.bfloat16(), layer.weight.bfloat16())
        torch.testing.assert_close(copy.to(torch.bfloat16)(x.bfloat16()), expected)
    assert layer(x).dtype == torch.float32  # with gradients: the plain product, trainable
    assert layer(x).requires_grad


@pytest.mark.parametrize("rows", ROWS)
def test_packed_fp32_linear_equals_fp32_product_within_rounding(rows):
    layer = random_layer()
    x = torch.randn(2, rows, 96)
    with torch.no_grad():
        packed = layer(x)
        assert layer._derived[0][2] == "fp32" and packed.dtype == torch.float32
        # A different summation order only: within fp32 rounding of a 96-term dot product.
        torch.testing.assert_close(packed, F.linear(x, layer.weight), rtol=1e-5, atol=1e-5)
        layer.weight.mul_(2)
        torch.testing.assert_close(layer(x), 2 * packed, rtol=1e-5, atol=1e-5)
    assert copy_module(layer)._derived is None


def test_quantize_int8_is_per_output_channel_and_within_half_a_step():
    weight = torch.randn(40, 96) * torch.linspace(0.01, 3.0, 40)[:, None]  # channels of very different ranges
    weight[3] = 0.0  # an all-zero channel must not divide by zero
    values, scales = quantize_int8(weight)
    assert values.dtype == torch.int8 and scales.shape == (40,)
    assert int(values.abs().max()) == INT8_MAX
    error = (values.float() * scales[:, None] - weight).abs()
    assert bool((error <= scales[:, None] / 2 + 1e-7).all())
    assert bool((values[3] == 0).all())


@pytest.mark.parametrize("rows", ROWS)
def test_int8_linear_is_close_to_fp32_and_follows_weight_updates(rows):
    layer = random_layer()
    x = torch.randn(2, rows, 96)
    with torch.no_grad():
        exact = F.linear(x, layer.weight)
        with int8_weights():
            quantised = layer(x)
            assert layer._derived[0][2] == "int8" and quantised.dtype == torch.float32
            # Per-channel int8 weights (error <= scale / 2) and bf16 activations and scales (relative 2^-8):
            # a few thousandths of the output's spread.
            assert float((quantised - exact).abs().max()) < 0.01 * float(exact.abs().max())
            layer.weight.mul_(2)
            torch.testing.assert_close(layer(x), 2 * quantised, rtol=0.02, atol=0.02)
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight), rtol=1e-5, atol=1e-5)  # out of it: fp32
    with int8_weights():
        assert layer(x).requires_grad  # with gradients (training) the plain product, even inside the context
