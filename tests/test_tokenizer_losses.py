"""Tokenizer losses (reconstruction, hinge GAN, perceptual) and the tokenizer training task."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from argen.config import ConfigError, DataConfig, TokenizerRunConfig, TrainConfig, VQConfig, VQLossConfig
from argen.io import checkpoint as ckpt
from argen.tokenizer.losses import (
    PatchDiscriminator,
    hinge_discriminator_loss,
    hinge_generator_loss,
    reconstruction_loss,
)
from argen.tokenizer.lpips import FeatureDistance, perceptual_loss
from argen.tokenizer.vq import VQModel
from argen.train.tokenizer_task import VQTask, psnr_db
from argen.train.trainer import Trainer


def test_reconstruction_losses_on_known_values():
    target = torch.zeros(1, 1, 1, 4)
    reconstruction = torch.tensor([1.0, -1.0, 2.0, 0.0]).view(1, 1, 1, 4)
    assert float(reconstruction_loss(reconstruction, target, "l1")) == pytest.approx(1.0)
    assert float(reconstruction_loss(reconstruction, target, "l2")) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="l1.*l2"):
        reconstruction_loss(reconstruction, target, "l3")
    with pytest.raises(ValueError, match="differ"):
        reconstruction_loss(reconstruction, target[..., :2], "l1")


def test_hinge_losses_on_known_inputs():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - real) = 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + fake) = 0, 1, 2 -> mean 1
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(0.5 * (5 / 6 + 1))
    assert float(hinge_generator_loss(fake)) == pytest.approx(1 / 3)
    # A perfectly separating discriminator (margins beyond 1) has zero loss.
    assert float(hinge_discriminator_loss(torch.full((4,), 3.0), torch.full((4,), -3.0))) == 0.0


def test_patch_discriminator_matches_llamagen_shape():
    with torch.device("meta"):
        discriminator = PatchDiscriminator()
        logits = discriminator(torch.empty(2, 3, 256, 256))
    assert sum(p.numel() for p in discriminator.parameters()) == 2_765_633
    weights = sorted({k.rsplit(".", 1)[0] for k in discriminator.state_dict()}, key=lambda k: int(k.split(".")[1]))
    assert weights == [f"main.{i}" for i in (0, 2, 3, 5, 6, 8, 9, 11)]
    assert logits.shape == (2, 1, 30, 30)
    small = PatchDiscriminator(in_channels=1, channels=8, layers=2)
    assert small(torch.randn(2, 1, 32, 32)).shape == (2, 1, 6, 6)
    side = VQLossConfig(disc_layers=2).disc_min_image_size
    assert small(torch.randn(2, 1, side, side)).shape == (2, 1, 1, 1)
    with pytest.raises(RuntimeError):
        small(torch.randn(2, 1, side - 1, side - 1))
    with pytest.raises(ValueError, match="layers >= 1"):
        PatchDiscriminator(layers=0)


class RandomFeatures(nn.Module):
    """A random conv net standing in for the Fashion-MNIST classifier."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(1, 4, 3, padding=1)
        self.second = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, images):
        first = torch.relu(self.first(images))
        return [first, self.second(first)]


def test_feature_distance_is_zero_for_equal_images_and_trains_only_the_input():
    torch.manual_seed(0)
    distance = FeatureDistance(RandomFeatures())
    images = torch.randn(2, 1, 8, 8)
    assert float(perceptual_loss(distance, images, images)) == pytest.approx(0.0, abs=1e-6)
    reconstruction = torch.randn(2, 1, 8, 8, requires_grad=True)
    value = perceptual_loss(distance, reconstruction, images)
    value.backward()
    assert float(value.detach()) > 0 and reconstruction.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in distance.network.parameters())
    assert not distance.train().network.training
    with pytest.raises(TypeError, match="list of feature tensors"):
        FeatureDistance(nn.Conv2d(1, 2, 1))(images, images)


# ------------------------------------------------------------------------------------------------
# the training task


def tiny_task(**loss_overrides) -> VQTask:
    torch.manual_seed(0)
    model = VQModel(
        VQConfig(
            image_size=8,
            in_channels=1,
            ch=8,
            ch_mult=(1, 2),
            num_res_blocks=1,
            z_channels=8,
            codebook_size=16,
            codebook_dim=4,
            entropy_weight=0.1,
        )
    )
    values = dict(
        disc_weight=0.5, disc_start=0, disc_layers=1, disc_channels=8, perceptual_weight=0.1, restart_dead_codes_every=1
    )
    values.update(loss_overrides)
    if values["perceptual_weight"] > 0:  # the distance is given here, not loaded from the named network
        values["perceptual_network"] = "random-features"
    distance = FeatureDistance(RandomFeatures()) if values["perceptual_weight"] > 0 else None
    return VQTask(model, VQLossConfig(**values), distance)


def test_task_losses_are_finite_and_update_both_groups_in_order():
    task = tiny_task()
    modules = task.modules()
    assert list(modules) == ["tokenizer", "discriminator"]
    batch = {"images": torch.rand(4, 1, 8, 8) * 2 - 1}
    loss, logs = task.loss("tokenizer", modules, batch, step=0)
    loss.backward()
    assert torch.isfinite(loss)
    for key in (
        "reconstruction_loss",
        "codebook_loss",
        "commit_loss",
        "entropy_loss",
        "perceptual_loss",
        "generator_adversarial_loss",
        "perplexity",
        "codebook_usage_batch",
        "psnr_db",
    ):
        assert key in logs and torch.isfinite(torch.tensor(logs[key])), key
    assert modules["tokenizer"].encoder.conv_in.weight.grad.abs().sum() > 0
    disc_loss, disc_logs = task.loss("discriminator", modules, batch, step=0)
    assert torch.isfinite(disc_loss) and disc_loss.requires_grad and "discriminator_hinge" in disc_logs
    used = round(logs["codebook_usage_batch"] * 16)
    logs = task.after_step(modules, step=0)
    # The record holds exactly this batch's ids: every code it did not choose is restarted.
    assert logs["restarted_codes"] == 16 - used and logs["codebook_usage"] == used / 16
    with pytest.raises(KeyError, match="unknown module"):
        task.loss("refiner", modules, batch, step=0)


def test_discriminator_is_idle_before_its_start_step():
    task = tiny_task(disc_start=5, perceptual_weight=0.0)
    modules = task.modules()
    batch = {"images": torch.rand(2, 1, 8, 8) * 2 - 1}
    _, logs = task.loss("tokenizer", modules, batch, step=4)
    assert "generator_adversarial_loss" not in logs
    loss, _ = task.loss("discriminator", modules, batch, step=4)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(float(p.grad.abs().sum()) == 0 for p in modules["discriminator"].parameters())


def test_task_config_errors():
    model = VQModel(VQConfig(image_size=8, ch=8, ch_mult=(1, 2), codebook_size=16, codebook_dim=4))
    with pytest.raises(ConfigError, match="needs loss.perceptual_network: lpips"):
        VQLossConfig(perceptual_weight=1.0)
    with pytest.raises(ConfigError, match="set loss.perceptual_network=lpips to use them"):
        VQLossConfig(lpips_vgg="vgg16.pth")
    with pytest.raises(ConfigError, match="needs the perceptual distance"):
        VQTask(model, VQLossConfig(perceptual_weight=1.0, perceptual_network="lpips"))
    # The run config checks its parts together: the discriminator against the image size.
    with pytest.raises(ConfigError, match="at least 12 pixels"):
        TokenizerRunConfig(
            model=model.config, loss=VQLossConfig(disc_weight=0.5, disc_layers=2), data=DataConfig(image_size=8)
        )
    with pytest.raises(ConfigError, match="loss.reconstruction"):
        VQLossConfig(reconstruction="huber")


def test_psnr_on_known_error():
    target = torch.zeros(1, 1, 2, 2)
    assert psnr_db(torch.full_like(target, 0.2), target) == pytest.approx(10 * torch.log10(torch.tensor(100.0)).item())


@dataclass
class RunConfig:
    train: TrainConfig


def train(dataset, out_dir, stop_after=None):
    task = tiny_task(perceptual_weight=0.0, disc_start=2, restart_dead_codes_every=2)
    config = TrainConfig(
        steps=4, batch_size=16, lr=1e-3, weight_decay=0.0, log_every=1, checkpoint_every=2, seed=1, out_dir=str(out_dir)
    )
    trainer = Trainer(task, dataset, config, RunConfig(config), "tokenizer", progress=False)
    return trainer, trainer.fit(stop_after=stop_after).history


def test_trainer_runs_the_task_and_resumes_exactly(digits_dataset, tmp_path):
    full, history = train(digits_dataset, tmp_path / "full")
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert "discriminator_hinge" not in history[1] and "discriminator_hinge" in history[2]
    assert "restarted_codes" in history[1] and "restarted_codes" not in history[0]
    _, first = train(digits_dataset, tmp_path / "split", stop_after=2)  # the checkpoint of step 2
    _, second = train(digits_dataset, tmp_path / "split")
    assert [h["tokenizer_loss"] for h in first + second] == [h["tokenizer_loss"] for h in history]
    saved = ckpt.load_weights(full.checkpoint_dir)
    model = VQModel(full.modules["tokenizer"].config)
    ckpt.load_state_into(model, saved)
    for key, value in full.modules["tokenizer"].state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
