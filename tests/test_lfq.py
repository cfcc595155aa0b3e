"""Lookup-free quantisation: ids and codes round-trip, straight-through gradients, MAGVIT-v2's entropy terms on
distributions whose entropies are known, the tokenizer (image and causal 3D) built on it end to end."""

from __future__ import annotations

import math

import pytest
import torch

from argen.cli import main
from argen.config import ConfigError, VQConfig
from argen.tokenizer.causal_video import CausalVideoVQModel
from argen.tokenizer.lfq import EXACT_ENTROPY_BITS, LookupFreeQuantizer, bits_to_ids, entropy_terms, ids_to_bits
from argen.tokenizer.vq import VQModel

TINY = dict(
    image_size=16,
    in_channels=1,
    ch=8,
    ch_mult=(1, 2),
    num_res_blocks=1,
    z_channels=8,
    quantizer="lfq",
    codebook_dim=6,
    codebook_size=64,
    entropy_weight=0.1,
)


def test_ids_and_codes_round_trip():
    ids = torch.arange(2**10)
    codes = ids_to_bits(ids, 10)
    assert set(codes.unique().tolist()) == {-1.0, 1.0} and torch.equal(bits_to_ids(codes), ids)
    assert torch.equal(ids_to_bits(torch.tensor([5]), 4), torch.tensor([[1.0, -1.0, 1.0, -1.0]]))  # bit i = channel i
    quantizer = LookupFreeQuantizer(10, 0.25, 0.0)
    assert torch.equal(quantizer.codebook(), codes) and torch.equal(quantizer.lookup(ids[:7]), codes[:7])


def test_the_forward_gives_signs_their_ids_and_straight_through_gradients():
    quantizer = LookupFreeQuantizer(6, commit_beta=0.25, entropy_weight=0.1)
    z = torch.randn(2, 6, 3, 3, requires_grad=True)
    quantized, output = quantizer(z)
    assert torch.equal(quantized.detach(), torch.where(z > 0, 1.0, -1.0))
    assert torch.equal(output.ids, bits_to_ids(quantized.detach().permute(0, 2, 3, 1)))
    weights = torch.randn_like(z)
    (quantized * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # the identity, straight through
    assert float(output.codebook_loss) == 0.0 and float(output.commit_loss.detach()) > 0
    z.grad = None
    output.commit_loss.backward()
    expected = 0.25 * 2 * (z - torch.where(z > 0, 1.0, -1.0)) / z.numel()
    torch.testing.assert_close(z.grad, expected.detach())


@pytest.mark.parametrize("bits", [4, EXACT_ENTROPY_BITS + 2])  # the exact batch term, and the bits' sum above
def test_entropy_terms_on_known_distributions(bits):
    log2 = math.log(2)
    undecided = torch.zeros(64, bits)  # every bit a coin: both terms are bits x log 2
    per_sample, batch = entropy_terms(undecided)
    assert per_sample.item() == pytest.approx(bits * log2, rel=1e-5) and batch.item() == pytest.approx(
        bits * log2, rel=1e-5
    )
    one_code = torch.full((64, bits), 0.5)  # all sure, all the same code: both zero
    assert max(entropy_terms(one_code)[0].item(), entropy_terms(one_code)[1].item()) < 1e-6
    every_code = ids_to_bits(torch.arange(2**4).repeat(4), 4) * 0.5  # sure, and spread evenly over 16 codes
    per_sample, batch = entropy_terms(every_code)
    assert per_sample.item() < 1e-6 and batch.item() == pytest.approx(4 * log2, rel=1e-5)


def test_lfq_tokenizers_encode_decode_and_refuse_a_codebook_that_is_not_two_to_the_bits():
    torch.manual_seed(0)
    model = VQModel(VQConfig(**TINY)).eval()
    images = torch.rand(3, 1, 16, 16) * 2 - 1
    reconstruction, output = model(images)
    ids = model.encode(images)
    assert ids.shape == (3, 8, 8) and int(ids.max()) < 64 and torch.equal(ids, output.ids)
    torch.testing.assert_close(model.decode(ids), reconstruction)  # ids -> codes reproduces the forward
    assert not any(key.startswith("quantize.embedding") for key in model.state_dict())  # no table
    video = CausalVideoVQModel(VQConfig(**{**TINY, "temporal_downsample": 2})).eval()
    clips = torch.rand(2, 5, 1, 16, 16) * 2 - 1
    assert video.encode(clips).shape == (2, 3, 8, 8)  # 1 + 4 frames -> 1 + 2 latent frames
    with pytest.raises(ConfigError, match="codebook_size 2 \\*\\* codebook_dim"):
        VQModel(VQConfig(**{**TINY, "codebook_size": 100}))
    with pytest.raises(ConfigError, match="model.quantizer must be vq"):
        VQModel(VQConfig(**{**TINY, "quantizer": "fsq"}))


def test_an_lfq_tokenizer_trains_and_its_codes_go_into_a_cache(tmp_path, capsys):
    overrides = [
        "data.name=digits",
        "data.image_size=16",
        "model.image_size=16",
        "model.ch=8",
        "model.ch_mult=[1,2]",
        "model.num_res_blocks=1",
        "model.z_channels=8",
        "model.quantizer=lfq",
        "model.codebook_dim=6",
        "model.codebook_size=64",
        "model.entropy_weight=0.1",
        "train.steps=4",
        "train.batch_size=16",
        "train.log_every=1",
        "train.checkpoint_every=4",
    ]
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--preset",
                "VQ-CPU-32",
                "--out",
                str(tmp_path / "tok"),
                "loss.restart_dead_codes_every=40",
                *overrides,
            ]
        )
        == 2
    )
    assert "has no code table to restart" in capsys.readouterr().err
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--preset",
                "VQ-CPU-32",
                "--out",
                str(tmp_path / "tok"),
                "loss.restart_dead_codes_every=0",
                *overrides,
            ]
        )
        == 0
    )
    log = (tmp_path / "tok" / "log.jsonl").read_text()
    assert '"entropy_loss"' in log and '"codebook_usage' in log
    assert (
        main(
            [
                "tokenize",
                "--tokenizer",
                str(tmp_path / "tok" / "checkpoint"),
                "--out",
                str(tmp_path / "cache"),
                "--limit",
                "64",
            ]
        )
        == 0
    )
    assert '"codebook_size": 64' in (tmp_path / "cache" / "manifest.json").read_text()
