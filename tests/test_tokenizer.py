"""The VQ tokenizer: shapes, straight-through gradients, l2-normalised codes, LlamaGen key compatibility."""

import argparse
import fractions

import pytest
import torch

from argen.config import VQ_PRESETS, ConfigError, VQConfig, preset
from argen.io.checkpoint import load_state_into
from argen.io.convert import convert_llamagen_vq, load_llamagen_vq, read_llamagen_vq, vq_config_from_state
from argen.tokenizer.code_usage import USAGE_RECORD_LENGTH
from argen.tokenizer.vq import VQModel, VectorQuantizer


def tiny_config(**overrides) -> VQConfig:
    values = dict(
        image_size=16,
        in_channels=1,
        ch=8,
        ch_mult=(1, 2),
        num_res_blocks=1,
        z_channels=8,
        codebook_size=16,
        codebook_dim=4,
    )
    values.update(overrides)
    return VQConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(tiny_config(**overrides))


# ------------------------------------------------------------------------------------------------
# LlamaGen's VQModel key/shape table, written from the reference description (not from our code)


def llamagen_vq_table(
    in_channels=3,
    ch=128,
    ch_mult=(1, 1, 2, 2, 4),
    num_res_blocks=2,
    z_channels=256,
    codebook_size=16384,
    codebook_dim=8,
) -> dict[str, tuple[int, ...]]:
    table: dict[str, tuple[int, ...]] = {}

    def conv(name, out, inp, k):
        table[f"{name}.weight"], table[f"{name}.bias"] = (out, inp, k, k), (out,)

    def norm(name, channels):
        table[f"{name}.weight"], table[f"{name}.bias"] = (channels,), (channels,)

    def resnet(name, inp, out):
        norm(f"{name}.norm1", inp), conv(f"{name}.conv1", out, inp, 3)
        norm(f"{name}.norm2", out), conv(f"{name}.conv2", out, out, 3)
        if inp != out:
            conv(f"{name}.nin_shortcut", out, inp, 1)

    def attention(name, channels):
        norm(f"{name}.norm", channels)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", channels, channels, 1)

    def middle(name, channels):
        resnet(f"{name}.0", channels, channels)
        attention(f"{name}.1", channels)
        resnet(f"{name}.2", channels, channels)

    levels = len(ch_mult)
    conv("encoder.conv_in", ch, in_channels, 3)
    width = ch
    for level in range(levels):
        out = ch * ch_mult[level]
        for block in range(num_res_blocks):
            resnet(f"encoder.conv_blocks.{level}.res.{block}", width, out)
            width = out
            if level == levels - 1:
                attention(f"encoder.conv_blocks.{level}.attn.{block}", out)
        if level != levels - 1:
            conv(f"encoder.conv_blocks.{level}.downsample.conv", out, out, 3)
    middle("encoder.mid", width)
    norm("encoder.norm_out", width), conv("encoder.conv_out", z_channels, width, 3)
    conv("quant_conv", codebook_dim, z_channels, 1)
    table["quantize.embedding.weight"] = (codebook_size, codebook_dim)
    table["quantize.codebook_used"] = (65536,)
    conv("post_quant_conv", z_channels, codebook_dim, 1)
    width = ch * ch_mult[-1]
    conv("decoder.conv_in", width, z_channels, 3)
    middle("decoder.mid", width)
    for block_index, level in enumerate(reversed(range(levels))):
        out = ch * ch_mult[level]
        for block in range(num_res_blocks + 1):
            resnet(f"decoder.conv_blocks.{block_index}.res.{block}", width, out)
            width = out
            if level == levels - 1:
                attention(f"decoder.conv_blocks.{block_index}.attn.{block}", out)
        if level != 0:
            conv(f"decoder.conv_blocks.{block_index}.upsample.conv", out, out, 3)
    norm("decoder.norm_out", width), conv("decoder.conv_out", in_channels, width, 3)
    return table


def test_vq16_matches_llamagen_keys_shapes_and_parameter_count():
    table = llamagen_vq_table()
    assert len(table) == 344
    with torch.device("meta"):
        model = VQModel(preset(VQ_PRESETS, "VQ-16", VQConfig))
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert ours == table
    assert sum(p.numel() for p in model.parameters()) == 71_883_403
    assert sum(p.numel() for p in model.encoder.parameters()) == 29_298_176


def test_vq8_matches_llamagen_table():
    with torch.device("meta"):
        model = VQModel(preset(VQ_PRESETS, "VQ-8", VQConfig))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == llamagen_vq_table(ch_mult=(1, 2, 2, 4))


def write_llamagen_checkpoint(path, table, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weights = {key: torch.randn(shape, generator=generator) for key, shape in table.items()}
    weights["quantize.codebook_used"] = torch.randint(0, 16384, (65536,), generator=generator).float()
    # A LlamaGen training checkpoint also stores the run's arguments and step count.
    torch.save({"model": weights, "steps": 100, "args": argparse.Namespace(vq_model="VQ-16")}, path)
    return weights


@pytest.mark.slow
def test_llamagen_vq16_checkpoint_loads_strict(tmp_path):
    path = tmp_path / "vq_ds16_c2i.pt"
    weights = write_llamagen_checkpoint(path, llamagen_vq_table())
    model = load_llamagen_vq(path)
    assert model.config.ch_mult == (1, 1, 2, 2, 4) and model.config.codebook_size == 16384
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_llamagen_layout_checkpoint_converts_and_loads_strict(tmp_path):
    config = tiny_config(in_channels=3, ch_mult=(1, 2, 2), num_res_blocks=2)
    table = llamagen_vq_table(3, 8, (1, 2, 2), 2, 8, 16, 4)
    path = tmp_path / "vq.pt"
    weights = write_llamagen_checkpoint(path, table)
    state = read_llamagen_vq(path)
    assert vq_config_from_state(state, image_size=16) == config
    model = VQModel(config)
    load_state_into(model, state, str(path))
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.quantize.embedding.weight, weights["quantize.embedding.weight"])


def test_convert_accepts_raw_and_ddp_state_and_lists_unexpected_keys():
    state = tiny_model().state_dict()
    assert convert_llamagen_vq(state).keys() == state.keys()
    assert convert_llamagen_vq({f"module.{k}": v for k, v in state.items()}).keys() == state.keys()
    with pytest.raises(ValueError, match="unexpected key.*discriminator.main.0.weight.*ema.extra"):
        convert_llamagen_vq(
            {"model": {**state, "discriminator.main.0.weight": torch.zeros(1), "ema.extra": torch.zeros(1)}}
        )
    with pytest.raises(ValueError, match="non-empty state dict"):
        convert_llamagen_vq({"model": {}})


def test_reading_a_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": fractions.Fraction(1, 3)}, path)  # not on the allow-list
    with pytest.raises(ValueError, match="weights_only=True"):
        read_llamagen_vq(path)


# ------------------------------------------------------------------------------------------------
# encode / decode / forward


@pytest.mark.parametrize("channels", [1, 3])
def test_encode_decode_shapes(channels):
    model = tiny_model(in_channels=channels).eval()
    images = torch.rand(2, channels, 16, 16) * 2 - 1
    with torch.no_grad():
        ids = model.encode(images)
        assert ids.shape == (2, 8, 8) and ids.dtype == torch.long
        assert int(ids.min()) >= 0 and int(ids.max()) < 16
        assert model.decode(ids).shape == (2, channels, 16, 16)
        reconstruction, output = model(images)
        assert reconstruction.shape == images.shape
        assert torch.equal(output.ids, ids)
        # Decoding the ids equals the forward pass's reconstruction (straight-through values are the codes).
        assert torch.allclose(model.decode(ids), reconstruction, atol=1e-5)
        # Video-shaped inputs fold time into the batch.
        clips = images.view(1, 2, channels, 16, 16)
        assert torch.equal(model.encode(clips), ids.view(1, 2, 8, 8))
        assert torch.allclose(model.decode(ids.view(1, 2, 8, 8)), model.decode(ids).view(1, 2, channels, 16, 16))


def test_bad_inputs_are_refused_with_clear_messages():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"images must be \(B, 1, H, W\)"):
        model.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiples of 2"):
        model.encode(torch.zeros(1, 1, 15, 16))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 16\)"):
        model.decode(torch.full((1, 8, 8), 16))
    with pytest.raises(ValueError, match="integer tensor"):
        model.decode(torch.zeros(1, 8, 8))


def test_straight_through_gradient_reaches_the_encoder():
    model = tiny_model()
    reconstruction, output = model(torch.rand(2, 1, 16, 16) * 2 - 1)
    reconstruction.square().mean().backward()  # the reconstruction term only: no codebook/commit loss
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quant_conv.weight.grad.abs().sum() > 0
    assert model.quantize.embedding.weight.grad is None  # the codebook learns only from codebook_loss
    output.codebook_loss.backward()
    assert model.quantize.embedding.weight.grad.abs().sum() > 0


def test_codes_are_l2_normalised_and_ids_are_nearest_codes():
    model = tiny_model()
    codebook = model.codebook_vectors()
    assert torch.allclose(codebook.norm(dim=1), torch.ones(16), atol=1e-5)
    assert not codebook.requires_grad
    latents = torch.randn(3, 4, 5, 5)
    quantized, output = model.quantize(latents)
    assert torch.allclose(quantized.norm(dim=1), torch.ones(3, 5, 5), atol=1e-5)
    unit = torch.nn.functional.normalize(latents.permute(0, 2, 3, 1), dim=-1)
    assert torch.equal(output.ids, (unit @ codebook.t()).argmax(-1))  # nearest on the sphere = largest cosine
    assert torch.allclose(output.commit_loss, 0.25 * output.codebook_loss)
    plain = tiny_model(codebook_l2_norm=False)
    assert not torch.allclose(plain.codebook_vectors().norm(dim=1), torch.ones(16))


def test_quantizer_statistics_and_entropy_loss():
    quantizer = VectorQuantizer(4, 2, 0.25, entropy_weight=0.1, l2_norm=True)
    with torch.no_grad():
        quantizer.embedding.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]]))
    latents = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.0], [0.2, 5.0]]).t().reshape(1, 2, 2, 2)
    _, output = quantizer(latents)
    assert output.ids.flatten().tolist() == [0, 1, 0, 1]
    assert float(output.usage) == 0.5
    assert float(output.perplexity) == pytest.approx(2.0)
    entropy = output.entropy_loss.detach()
    assert torch.isfinite(entropy) and float(entropy) != 0.0


# ------------------------------------------------------------------------------------------------
# usage record and dead-code restarts


def test_usage_record_rolls_and_restarts_replace_only_dead_codes():
    quantizer = VectorQuantizer(8, 4, 0.25, 0.0, l2_norm=True)
    assert not quantizer.recent_usage().any()  # an empty record claims nothing
    quantizer.record_usage(torch.tensor([1, 2, 3]))
    quantizer.record_usage(torch.tensor([4, 5]))
    assert quantizer.codebook_used[-5:].tolist() == [1, 2, 3, 4, 5]
    assert quantizer.recent_usage(2).nonzero().flatten().tolist() == [4, 5]
    before = quantizer.embedding.weight.detach().clone()
    latents = torch.nn.functional.normalize(torch.randn(10, 4), dim=-1)
    torch.manual_seed(1)
    assert quantizer.restart_dead_codes(latents, window=2) == 6
    after = quantizer.embedding.weight.detach()
    assert torch.equal(after[[4, 5]], before[[4, 5]])
    dead = [0, 1, 2, 3, 6, 7]
    assert all(any(torch.allclose(after[c], row) for row in latents) for c in dead)
    # Deterministic given the global RNG.
    again = VectorQuantizer(8, 4, 0.25, 0.0, l2_norm=True)
    again.embedding.weight.data.copy_(before)
    again.record_usage(torch.tensor([1, 2, 3, 4, 5]))
    torch.manual_seed(1)
    again.restart_dead_codes(latents, window=2)
    assert torch.equal(again.embedding.weight, quantizer.embedding.weight)
    quantizer.record_usage(torch.arange(USAGE_RECORD_LENGTH + 5) % 8)
    assert quantizer.recent_usage().all()


def test_small_widths_use_fewer_groups_and_bad_widths_are_refused():
    model = tiny_model(ch=8)
    assert model.encoder.norm_out.num_groups == 8
    assert VQModel(tiny_config(ch=32, ch_mult=(1, 2))).encoder.norm_out.num_groups == 32
    with pytest.raises(ConfigError, match="multiples of 32"):
        VQModel(tiny_config(ch=48))
    with pytest.raises(ConfigError, match="in_channels must be 1 or 3"):
        VQModel(tiny_config(in_channels=2))
    with pytest.raises(ConfigError, match="divisible by the downsampling factor"):
        VQModel(tiny_config(image_size=15))
