"""Feature extractors (classifier, Inception-v3 from a local file), reference statistics, evaluate, classifier task."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from argen.config import ClassifierConfig, ClassifierRunConfig, DataConfig, TrainConfig
from argen.eval.features import (
    Classifier,
    ClassifierExtractor,
    ClassifierFeatureMaps,
    FeatureError,
    FeatureExtractor,
    load_classifier,
    match_channels,
    save_classifier,
    to_unit_images,
)
from argen.eval.inception import InceptionE, InceptionExtractor, InceptionV3
from argen.eval.metrics import MetricError
from argen.eval.npz import read_npz
from argen.eval.reference import ReferenceStatistics, compute_reference, evaluate
from argen.io.checkpoint import CheckpointError
from argen.train.classifier_task import ClassifierTask, random_shift, train_classifier

TINY = ClassifierConfig(image_size=8, in_channels=1, widths=(8, 16), feature_dim=12, num_classes=10)


def tiny_classifier(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(TINY).eval()


def digits_nhwc(digits_dataset) -> np.ndarray:
    return digits_dataset.images.permute(0, 2, 3, 1).numpy()  # uint8 (N, 8, 8, 1)


# ------------------------------------------------------------------------------------------------
# image conversion


def test_images_convert_from_uint8_nhwc_and_float_nchw():
    uint8 = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 1, 1, 3).repeat(2, 1, 3, 1)  # (2, 1, 3, 3)
    converted = to_unit_images(uint8)  # (2, 3, 1, 3)
    assert converted.shape == (2, 3, 1, 3)
    assert converted[0, :, 0, 0].tolist() == [-1.0, 1.0, pytest.approx(128 / 127.5 - 1, abs=1e-6)]
    assert torch.equal(to_unit_images(converted), converted)
    with pytest.raises(FeatureError, match=r"\[-1, 1\]"):
        to_unit_images(torch.full((1, 3, 4, 4), 255.0))
    with pytest.raises(FeatureError, match="NHWC"):
        to_unit_images(np.zeros((1, 3, 4, 4), dtype=np.uint8))
    with pytest.raises(FeatureError, match="4 dims"):
        to_unit_images(np.zeros((4, 4, 3), dtype=np.uint8))


def test_channels_are_repeated_or_turned_into_luma():
    grey = torch.rand(2, 1, 4, 4)
    assert torch.equal(match_channels(grey, 3), grey.expand(-1, 3, -1, -1))
    rgb = torch.stack([torch.full((4, 4), 1.0), torch.zeros(4, 4), torch.zeros(4, 4)])[None]
    assert torch.allclose(match_channels(rgb, 1), torch.full((1, 1, 4, 4), 0.299))


# ------------------------------------------------------------------------------------------------
# the project classifier


def test_classifier_shapes_and_feature_maps():
    model = tiny_classifier()
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    maps = model.feature_maps(images)
    assert [tuple(m.shape) for m in maps] == [(3, 8, 4, 4), (3, 16, 2, 2)]
    features = model.features(images)
    assert features["pool"].shape == (3, 12) and features["logits"].shape == (3, 10)
    assert torch.equal(model(images), features["logits"])
    assert model(torch.rand(3, 1, 16, 16)).shape == (3, 10)  # other sizes are resized
    with pytest.raises(FeatureError, match=r"\(B, 1, H, W\)"):
        model(torch.rand(3, 3, 8, 8))


def test_classifier_feature_maps_drive_the_perceptual_loss():
    from argen.tokenizer.lpips import FeatureDistance, perceptual_loss

    distance = FeatureDistance(ClassifierFeatureMaps(tiny_classifier()))
    target = torch.rand(2, 1, 8, 8) * 2 - 1
    reconstruction = target.clone().requires_grad_(True)
    assert float(perceptual_loss(distance, reconstruction, target).detach()) == pytest.approx(0.0, abs=1e-6)
    moved = (target + 0.5 * torch.randn_like(target)).requires_grad_(True)
    value = perceptual_loss(distance, moved, target)
    value.backward()
    assert float(value.detach()) > 0 and moved.grad.abs().sum() > 0


def test_classifier_checkpoint_round_trip_and_checksum(tmp_path, digits_dataset):
    model = tiny_classifier()
    directory = save_classifier(tmp_path / "classifier", model)
    loaded = load_classifier(directory)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    extractor = ClassifierExtractor.from_checkpoint(directory, batch_size=7)
    expected = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    assert extractor.checksum == expected
    assert extractor.describe() == {"extractor": "cnn", "checksum": expected}
    images = digits_nhwc(digits_dataset)[:20]
    batched = extractor.features(images)
    whole = ClassifierExtractor.from_checkpoint(directory, batch_size=100).features(images)
    assert batched["pool"].shape == (20, 12) and batched["logits"].shape == (20, 10)
    assert np.allclose(batched["pool"], whole["pool"], atol=1e-5)
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.allclose(extractor.features(floats)["logits"], batched["logits"], atol=1e-5)
    rgb = np.repeat(images, 3, axis=-1)  # RGB grey images become the same luma
    assert np.allclose(extractor.features(rgb)["logits"], batched["logits"], atol=1e-4)


def test_batches_leave_gradients_enabled_for_the_caller(digits_dataset):
    extractor = FeatureExtractor(tiny_classifier(), "tiny-cnn", "0" * 64, channels=1, batch_size=16)
    states = [torch.is_grad_enabled() for _ in extractor.batches(digits_nhwc(digits_dataset)[:40])]
    assert states == [True, True, True]


def test_classifier_checkpoint_errors(tmp_path):
    directory = save_classifier(tmp_path / "classifier", tiny_classifier())
    other = ClassifierConfig(image_size=8, widths=(8, 32), feature_dim=12)
    save_classifier(tmp_path / "wider", Classifier(other))
    (tmp_path / "wider" / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_classifier(tmp_path / "wider")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_classifier(tmp_path)


def test_random_shift_moves_images_and_follows_the_seed():
    images = torch.full((50, 1, 5, 5), -1.0)
    images[:, :, 2, 2] = 1.0  # one bright pixel in the centre: a shift of <= 2 keeps it inside
    assert torch.equal(random_shift(images, 0), images)
    torch.manual_seed(3)
    shifted = random_shift(images, 2)
    torch.manual_seed(3)
    assert torch.equal(random_shift(images, 2), shifted)
    assert torch.equal((shifted == 1).flatten(1).sum(1), torch.ones(50, dtype=torch.long))
    assert torch.equal((shifted == -1).flatten(1).sum(1), torch.full((50,), 24))
    positions = {tuple(index.tolist()) for index in (shifted[:, 0] == 1).nonzero()[:, 1:]}
    assert len(positions) > 10  # 25 possible offsets


def test_classifier_trains_with_the_trainer(tmp_path):
    config = ClassifierRunConfig(
        model=TINY,
        data=DataConfig(name="digits", image_size=8, channels=1),
        train=TrainConfig(
            steps=80, batch_size=64, lr=1e-2, log_every=10, checkpoint_every=60, out_dir=str(tmp_path / "run")
        ),
        shift=1,
    )
    directory = train_classifier(config, progress=False)
    extractor = ClassifierExtractor.from_checkpoint(directory)
    assert extractor.name == "digits-cnn"
    from argen.data import load_dataset

    dataset = load_dataset(config.data, training=False)
    logits = extractor.features(dataset.images.permute(0, 2, 3, 1))["logits"]
    accuracy = float((logits.argmax(axis=1) == dataset.labels.numpy()).mean())
    assert accuracy > 0.6  # chance is 0.1


def test_classifier_task_rejects_unknown_modules():
    task = ClassifierTask(tiny_classifier(), shift=1)
    batch = {"images": torch.zeros(2, 1, 8, 8), "labels": torch.tensor([0, 1])}
    loss, logs = task.loss("classifier", task.modules(), batch, 0)
    assert loss.ndim == 0 and 0.0 <= logs["accuracy"] <= 1.0
    with pytest.raises(KeyError, match="classifier"):
        task.loss("discriminator", task.modules(), batch, 0)


# ------------------------------------------------------------------------------------------------
# Inception-v3 (FID layout) from a local file


def random_inception_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    network = InceptionV3()
    state = {}
    for key, value in network.state_dict().items():  # He-initialised convolutions keep the signal alive
        if key.endswith("conv.weight"):
            state[key] = torch.nn.init.kaiming_normal_(torch.empty_like(value), nonlinearity="relu")
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn_like(value) * 0.01
        else:
            state[key] = value.clone()
    return state


def test_inception_layout_matches_pytorch_fid():
    network = InceptionV3()
    # torchvision documents 27,161,264 parameters with the aux head and 1000 classes; FID's network has no
    # aux head (3,326,696) and 1008 classes (+16,392).
    assert sum(p.numel() for p in network.parameters()) == 27_161_264 - 3_326_696 + 8 * 2048 + 8
    shapes = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7a.branch3x3_2.conv.weight"] == (320, 192, 3, 3)
    assert shapes["Mixed_7c.branch3x3dbl_3b.bn.running_var"] == (384,)
    assert shapes["fc.weight"] == (1008, 2048)
    assert not any(key.startswith("AuxLogits") for key in shapes)


def test_inception_blocks_pool_like_tensorflow():
    torch.manual_seed(0)
    average, maximum = InceptionE(8, pool="average").eval(), InceptionE(8, pool="max").eval()
    maximum.load_state_dict(average.state_dict())
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        assert average(x).shape == (1, 2048, 4, 4)
        assert not torch.allclose(average(x)[:, -192:], maximum(x)[:, -192:])
        assert torch.equal(average(x)[:, :-192], maximum(x)[:, :-192])
    from argen.eval.inception import _average_pool

    assert torch.equal(_average_pool(torch.ones(1, 1, 3, 3)), torch.ones(1, 1, 3, 3))  # padding not counted


def test_inception_loads_from_safetensors_and_pth(tmp_path):
    state = random_inception_state()
    safetensors_path, pth_path = tmp_path / "inception.safetensors", tmp_path / "pt_inception.pth"
    save_file(state, str(safetensors_path))
    # Old ports have no num_batches_tracked buffers; they must still load.
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, pth_path)
    from_safetensors = InceptionExtractor.from_file(safetensors_path, batch_size=2)
    from_pth = InceptionExtractor.from_file(pth_path, batch_size=2)
    for key in ("Mixed_6d.branch1x1.conv.weight", "Mixed_7c.branch_pool.bn.running_var", "fc.bias"):
        assert torch.equal(from_safetensors.network.state_dict()[key], state[key])
        assert torch.equal(from_pth.network.state_dict()[key], state[key])
    assert from_pth.checksum == hashlib.sha256(pth_path.read_bytes()).hexdigest() != from_safetensors.checksum
    assert from_pth.name == "inception-v3"
    images = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 1), dtype=np.uint8)  # grey -> RGB
    features = from_safetensors.features(images)
    assert features["pool"].shape == (2, 2048)
    assert features["logits"].shape == (2, 1008)
    assert features["spatial"].shape == (2, 7 * 17 * 17)
    assert np.isfinite(features["pool"]).all() and not np.allclose(features["pool"][0], features["pool"][1])


def test_inception_refuses_wrong_files(tmp_path):
    state = random_inception_state()
    state["Mixed_5b.branch_pool.weight"] = state.pop("Mixed_5b.branch_pool.conv.weight")
    save_file(state, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys: Mixed_5b.branch_pool.conv.weight"):
        InceptionExtractor.from_file(tmp_path / "renamed.safetensors")
    with pytest.raises(CheckpointError, match="never downloaded"):
        InceptionExtractor.from_file(tmp_path / "absent.pth")
    torch.save({"model": FeatureExtractor}, tmp_path / "pickled.pth")  # code, not tensors
    with pytest.raises(CheckpointError, match="never unpickles code"):
        InceptionExtractor.from_file(tmp_path / "pickled.pth")


# ------------------------------------------------------------------------------------------------
# reference statistics and evaluate


def test_reference_round_trip_and_self_evaluation(tmp_path, digits_dataset):
    extractor = FeatureExtractor(tiny_classifier(), "tiny-cnn", "0" * 64, channels=1, batch_size=100)
    images = digits_nhwc(digits_dataset)[:400]
    labels = digits_dataset.labels.numpy()[:400]
    capped = compute_reference(images, extractor, max_features=300, seed=1)
    assert capped.count == 400 and capped.features.shape == (300, 12)
    assert np.array_equal(capped.features, compute_reference(images, extractor, max_features=300, seed=1).features)
    reference = compute_reference([images[:150], images[150:]], extractor)  # batches of any size
    assert reference.count == 400 and reference.features.shape == (400, 12)
    assert reference.spatial_mu is None
    pool = extractor.features(images)["pool"]
    assert np.allclose(reference.mu, pool.mean(axis=0), atol=1e-5)
    assert np.allclose(reference.sigma, np.cov(pool.astype(np.float64), rowvar=False), atol=1e-5)
    path = reference.save(tmp_path / "reference.npz")
    loaded = ReferenceStatistics.load(path)
    assert (loaded.extractor, loaded.checksum, loaded.count) == ("tiny-cnn", "0" * 64, 400)
    assert np.array_equal(loaded.sigma, reference.sigma) and np.array_equal(loaded.features, reference.features)
    result = evaluate(images, loaded, extractor, labels=labels, splits=4)
    assert abs(result["fid"]) < 1e-6
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    assert result["samples"] == 400 and result["reference_samples"] == 400
    assert result["extractor"] == "tiny-cnn" and result["checksum"] == "0" * 64
    logits = extractor.features(images)["logits"]
    assert result["class_accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    assert 1.0 <= result["inception_score"] <= 10.0
    shifted = evaluate(images[::-1][:200], loaded, extractor)
    assert shifted["fid"] > 0 and "class_accuracy" not in shifted
    # Shipped references may store the precision/recall features in fp16 (scripts/ship.py): read back as fp32.
    compact = dataclasses.replace(reference, features=reference.features.astype(np.float16))
    half = ReferenceStatistics.load(compact.save(tmp_path / "compact.npz"))
    assert half.features.dtype == np.float32 and np.allclose(half.features, reference.features, rtol=1e-3)
    assert evaluate(images, half, extractor)["precision"] == 1.0


def test_real_samples_script_writes_a_split_as_a_sample_batch(tmp_path, digits_dataset):
    # scripts/real_samples.py: real images scored as samples give the metrics' floor at that sample count.
    script = [sys.executable, "scripts/real_samples.py", "--dataset", "digits", "--split", "train", "--image-size", "8"]
    out = tmp_path / "real.npz"
    done = subprocess.run(
        [*script, "--skip", "100", "--count", "30", "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    batch = read_npz(out)
    assert np.array_equal(batch.images, digits_nhwc(digits_dataset)[100:130])
    assert np.array_equal(batch.labels, digits_dataset.labels.numpy()[100:130])
    too_many = subprocess.run(
        [*script, "--skip", str(len(digits_dataset) - 5), "--count", "30", "--out", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
    )
    assert too_many.returncode == 2 and "fewer than --count 30" in too_many.stderr


def test_evaluate_refuses_another_extractor(tmp_path, digits_dataset):
    images = digits_nhwc(digits_dataset)[:50]
    extractor = FeatureExtractor(tiny_classifier(), "tiny-cnn", "a" * 64, channels=1)
    reference = compute_reference(images, extractor)
    other = FeatureExtractor(tiny_classifier(seed=1), "tiny-cnn", "b" * 64, channels=1)
    with pytest.raises(MetricError, match="recompute the reference"):
        evaluate(images, reference, other)
    np.savez(tmp_path / "adm.npz", mu=np.zeros(2), sigma=np.eye(2))
    with pytest.raises(MetricError, match="not an argen reference"):
        ReferenceStatistics.load(tmp_path / "adm.npz")


def test_spatial_statistics_give_sfid(tmp_path):
    class Spatial(torch.nn.Module):
        def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            flat = images.flatten(1)
            return {"pool": flat[:, :6], "logits": flat[:, :3], "spatial": flat[:, 6:12]}

    extractor = FeatureExtractor(Spatial(), "spatial", "c" * 64, channels=1)
    images = np.random.default_rng(0).integers(0, 256, size=(200, 4, 4, 1), dtype=np.uint8)
    reference = ReferenceStatistics.load(compute_reference(images, extractor).save(tmp_path / "reference.npz"))
    assert reference.spatial_sigma.shape == (6, 6)
    result = evaluate(images, reference, extractor)
    assert abs(result["sfid"]) < 1e-6 and abs(result["fid"]) < 1e-6
    assert evaluate(images[:100] // 2, reference, extractor)["sfid"] > 1.0
