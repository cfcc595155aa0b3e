"""LPIPS-VGG16 from local files in torchvision's and LlamaGen's key layouts: the distance's properties, its numbers
against an independent functional computation, the loader's refusals, and LlamaGen's VQ-16 recipe starting with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from argen.cli import main
from argen.io.checkpoint import CheckpointError
from argen.tokenizer.lpips import TAP_CHANNELS, VGG16_LAYERS, load_lpips, perceptual_loss

ROOT = Path(__file__).resolve().parents[1]


def random_vgg16(seed: int = 0) -> dict[str, torch.Tensor]:
    """VGG16 weights in torchvision's layout (features.N for the convolutions, a classifier head to be ignored),
    scaled so activations stay O(1) through 13 layers."""
    generator = torch.Generator().manual_seed(seed)
    state, index = {}, 0
    for layer in VGG16_LAYERS:
        if layer == "M":
            index += 1
            continue
        fan_in = layer[0] * 9
        weight = torch.randn(layer[1], layer[0], 3, 3, generator=generator)
        state[f"features.{index}.weight"] = weight * (2 / fan_in) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(layer[1], generator=generator) * 0.01
        index += 2
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's head: present in the file, not used
    return state


def random_linear(seed: int = 1) -> dict[str, torch.Tensor]:
    """lin0 ... lin4 as in LlamaGen's vgg.pth: non-negative per-channel weights (1, C, 1, 1)."""
    generator = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator) for k, c in enumerate(TAP_CHANNELS)}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lpips")
    torch.save(random_vgg16(), folder / "vgg16.pth")
    torch.save(random_linear(), folder / "vgg.pth")
    save_file(random_vgg16(), str(folder / "vgg16.safetensors"))
    return folder


def reference_lpips(first: torch.Tensor, second: torch.Tensor, vgg: dict, linear: dict) -> np.ndarray:
    """LPIPS written out from its definition, independently of argen's modules: functional convolutions over the
    raw tensors, then numpy for the normalisation, the weights and the averages."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(images):
        x, found, index = (images - shift) / scale, [], 0
        blocks = [2, 2, 3, 3, 3]  # convolutions per block; a tap after each block's last ReLU
        for block, count in enumerate(blocks):
            if block:
                x = F.max_pool2d(x, 2)
                index += 1
            for _ in range(count):
                x = F.relu(F.conv2d(x, vgg[f"features.{index}.weight"], vgg[f"features.{index}.bias"], padding=1))
                index += 2
            found.append(x.double().numpy())
        return found

    total = np.zeros(first.shape[0])
    for k, (a, b) in enumerate(zip(taps(first), taps(second))):
        a = a / (np.sqrt((a**2).sum(1, keepdims=True)) + 1e-10)
        b = b / (np.sqrt((b**2).sum(1, keepdims=True)) + 1e-10)
        weights = linear[f"lin{k}.model.1.weight"].double().numpy().reshape(1, -1, 1, 1)
        total += ((a - b) ** 2 * weights).sum(1).mean((1, 2))
    return total


def test_lpips_matches_its_definition_computed_independently(weight_files):
    lpips = load_lpips(weight_files / "vgg16.pth", weight_files / "vgg.pth")
    generator = torch.Generator().manual_seed(2)
    first, second = (torch.rand(3, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2))
    ours = lpips(first, second).double().numpy()
    expected = reference_lpips(first, second, random_vgg16(), random_linear())
    np.testing.assert_allclose(ours, expected, rtol=1e-4)
    # torchvision's file as safetensors gives the same network
    again = load_lpips(weight_files / "vgg16.safetensors", weight_files / "vgg.pth")
    torch.testing.assert_close(again(first, second), lpips(first, second))


def test_the_distance_is_zero_symmetric_positive_and_trains_the_reconstruction_only(weight_files):
    lpips = load_lpips(weight_files / "vgg16.pth", weight_files / "vgg.pth")
    generator = torch.Generator().manual_seed(3)
    image, other = (torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2))
    assert torch.allclose(lpips(image, image), torch.zeros(2), atol=1e-6)
    torch.testing.assert_close(lpips(image, other), lpips(other, image))
    assert bool((lpips(image, other) > 0).all())
    grey = image[:, :1]
    assert torch.allclose(lpips(grey, grey.expand(-1, 3, -1, -1)), torch.zeros(2), atol=1e-6)  # repeated to RGB
    reconstruction = other.clone().requires_grad_(True)
    target = image.clone().requires_grad_(True)
    perceptual_loss(lpips, reconstruction, target).backward()
    assert reconstruction.grad.abs().sum() > 0 and target.grad is None
    assert not any(parameter.requires_grad for parameter in lpips.parameters())


def test_the_taps_have_vgg16s_shapes(weight_files):
    lpips = load_lpips(weight_files / "vgg16.pth", weight_files / "vgg.pth")
    shapes = [tuple(tap.shape[1:]) for tap in lpips.taps(torch.zeros(1, 3, 64, 64))]
    assert shapes == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4)]


def test_the_loader_refuses_a_wrong_file_in_one_line(weight_files, tmp_path):
    with pytest.raises(CheckpointError, match=r"vgg16.pth is not LPIPS' linear layers \(vgg.pth\): it lacks lin0"):
        load_lpips(weight_files / "vgg16.pth", weight_files / "vgg16.pth")
    with pytest.raises(CheckpointError, match=r"vgg.pth is not torchvision's VGG16 state dict: it lacks features.0"):
        load_lpips(weight_files / "vgg.pth", weight_files / "vgg.pth")
    wrong = random_linear()
    wrong["lin2.model.1.weight"] = torch.rand(1, 128, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"lin2.model.1.weight \(1, 128, 1, 1\) \(expected \(1, 256, 1, 1\)\)"):
        load_lpips(weight_files / "vgg16.pth", tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="missing.pth does not exist; weights are never downloaded"):
        load_lpips(tmp_path / "missing.pth", weight_files / "vgg.pth")
    broken = random_linear()
    broken["lin0.model.1.weight"][0, 3] = float("nan")
    torch.save(broken, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="lin0.model.1.weight holds 1 NaN"):
        load_lpips(weight_files / "vgg16.pth", tmp_path / "nan.pth")


@pytest.mark.slow
def test_llamagens_vq16_recipe_trains_with_lpips_from_the_given_files(weight_files, tmp_path):
    """configs/imagenet256/vq16-tokenizer.yaml with the two files: its loss is LlamaGen's (L2 + 1.0 x LPIPS + codebook,
    commitment + PatchGAN), checked on a shrunken model and synthetic images for two steps."""
    out = tmp_path / "run"
    shrink = [
        "model.image_size=32",
        "model.ch=16",
        "model.ch_mult=[1,2]",
        "model.num_res_blocks=1",
        "model.z_channels=8",
        "model.codebook_size=64",
        "data.name=synthetic",
        "data.image_size=32",
        "data.limit=16",
        "train.batch_size=4",
        "train.steps=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "loss.disc_start=0",
        "loss.disc_layers=2",
        "loss.disc_channels=8",
        "train.precision=fp32",
    ]
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--preset",
                "VQ-16",
                "--config",
                str(ROOT / "configs" / "imagenet256" / "vq16-tokenizer.yaml"),
                "--out",
                str(out),
                f"loss.lpips_vgg={weight_files / 'vgg16.pth'}",
                f"loss.lpips_linear={weight_files / 'vgg.pth'}",
                *shrink,
            ]
        )
        == 0
    )
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in log if "perceptual_loss" in entry]
    assert len(steps) == 2 and all(entry["perceptual_loss"] > 0 for entry in steps)
    assert all("generator_adversarial_loss" in entry for entry in steps)
    saved = json.loads((out / "checkpoint" / "config.json").read_text())["config"]["loss"]
    assert saved["perceptual_network"] == "lpips" and saved["perceptual_weight"] == 1.0
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--preset",
                "VQ-16",
                "--config",
                str(ROOT / "configs" / "imagenet256" / "vq16-tokenizer.yaml"),
                "--out",
                str(tmp_path / "other"),
                *shrink,
            ]
        )
        == 2
    )  # without the files: one line that names them
