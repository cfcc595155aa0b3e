"""FVD from a local Inception-I3D file (random weights here, in pytorch-i3d's key layout): the network's shapes,
deterministic features, FVD 0 for identical sets and more for others, the loader's refusals, and `argen eval video`
saying what FVD needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from argen.cli import main
from argen.eval.i3d import I3DFeatures, InceptionI3D, fvd, load_i3d
from argen.eval.npz import write_npz
from argen.eval.video import evaluate_videos
from argen.io.checkpoint import CheckpointError

CLASSIFIER = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64" / "classifier"


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    """Random I3D weights saved as a plain state dict, without BatchNorm's step counters (as the port's files)."""
    torch.manual_seed(0)
    state = {
        key: value for key, value in InceptionI3D().state_dict().items() if not key.endswith("num_batches_tracked")
    }
    for key, value in state.items():  # He-scaled convolutions, so that a signal survives the 20 layers
        if key.endswith("conv3d.weight"):
            value.normal_(0, (2 / value[0].numel()) ** 0.5)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
        elif key.endswith("running_mean"):
            value.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("i3d") / "rgb_imagenet.pt"
    torch.save(state, path)
    return path


def videos(seed: int, count: int = 6, frames: int = 17) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, frames, 32, 32, 1), dtype=np.uint8)


def test_the_network_has_i3ds_layout_and_gives_400_logits(i3d_file):
    network = load_i3d(i3d_file)
    state = network.state_dict()
    assert tuple(state["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(state["Mixed_5c.b3b.conv3d.weight"].shape) == (128, 832, 1, 1, 1)
    assert tuple(state["logits.conv3d.bias"].shape) == (400,)
    assert 12_000_000 < sum(value.numel() for value in network.parameters()) < 13_000_000
    assert network(torch.zeros(2, 3, 16, 64, 64)).shape == (2, 400)


def test_fvd_is_zero_for_a_set_with_itself_and_positive_against_another(i3d_file):
    features = I3DFeatures(load_i3d(i3d_file), "test", size=32)
    first = features.features(videos(1))
    assert first.shape == (6, 400) and np.array_equal(first, features.features(videos(1)))  # deterministic
    assert fvd(videos(1), videos(1), features) == pytest.approx(0.0, abs=1e-4)  # 6 samples of 400-d: sqrtm noise
    dark = videos(2) // 4
    assert fvd(videos(1), dark, features) > 0.1
    with pytest.raises(ValueError, match="FVD takes 16 frames per video, these have 4"):
        features.features(videos(1, frames=4))


def test_evaluate_videos_adds_fvd_when_given_i3d(i3d_file):
    from argen.eval.features import ClassifierExtractor

    classifier = ClassifierExtractor.from_checkpoint(CLASSIFIER)
    result = evaluate_videos(videos(1), videos(3), classifier, i3d=I3DFeatures(load_i3d(i3d_file), "sum", size=32))
    assert result["fvd"] > 0 and result["i3d_checksum"] == "sum" and "16 frames" in result["fvd_protocol"]


def test_the_loader_refuses_a_wrong_file_in_one_line(i3d_file, tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        load_i3d(tmp_path / "missing.pt")
    state = torch.load(i3d_file, weights_only=True)
    del state["Mixed_4b.b1b.conv3d.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(
        CheckpointError, match="not Inception-I3D in pytorch-i3d's layout: it lacks Mixed_4b.b1b.conv3d.weight"
    ):
        load_i3d(tmp_path / "partial.pt")
    state = torch.load(i3d_file, weights_only=True)
    state["logits.conv3d.bias"] = torch.zeros(101)
    torch.save(state, tmp_path / "ucf.pt")
    with pytest.raises(CheckpointError, match=r"logits.conv3d.bias \(101,\) \(expected \(400,\)\)"):
        load_i3d(tmp_path / "ucf.pt")


def test_eval_video_says_fvd_needs_i3d(tmp_path, capsys):
    classifier = CLASSIFIER
    for name, seed in (("samples", 1), ("real", 2)):
        write_npz(tmp_path / f"{name}.npz", videos(seed, frames=4), np.arange(6) % 10, video=True)
    assert (
        main(
            [
                "eval",
                "video",
                str(tmp_path / "samples.npz"),
                "--real",
                str(tmp_path / "real.npz"),
                "--classifier",
                str(classifier),
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    assert "no FVD: it needs Inception-I3D weights, --i3d FILE" in capsys.readouterr().err
    assert "fvd" not in json.loads((tmp_path / "m.json").read_text())
