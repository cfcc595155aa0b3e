"""The causal 3D VQ tokenizer (argen.tokenizer.causal_video) and the video path through it: UCF-101-format files
-> 3D tokenizer -> token cache of (1 + (T-1)/4, h, w) grids -> AR training -> sampled, decoded videos."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from video_fixture import write_ucf

import argen
from argen.cli import main
from argen.config import VQ_PRESETS, ConfigError, VQConfig, preset
from argen.tokenizer.causal_video import CausalVideoVQModel, inflate_from_image
from argen.tokenizer.vq import VQModel

TINY = VQConfig(
    image_size=16,
    ch=8,
    ch_mult=(1, 2, 2),
    num_res_blocks=1,
    z_channels=8,
    codebook_size=32,
    codebook_dim=4,
    temporal_downsample=4,
)


def features(model: CausalVideoVQModel, videos: torch.Tensor) -> torch.Tensor:
    """The latents before quantisation, (B, D, t, h, w)."""
    return model.quant_conv(model.encoder(videos.transpose(1, 2)))


@torch.no_grad()
def test_grid_shapes_17_frames_to_5_latent_frames():
    torch.manual_seed(0)
    model = CausalVideoVQModel(preset(VQ_PRESETS, "VQ3D-CPU-32", VQConfig)).eval()
    videos = torch.rand(1, 17, 1, 32, 32) * 2 - 1
    ids = model.encode(videos)
    assert ids.shape == (1, 5, 8, 8) and model.latent_frames(17) == 5 and model.latent_frames(1) == 1
    assert model.decode(ids).shape == (1, 17, 1, 32, 32)
    reconstruction, quantizer = model(videos)
    assert reconstruction.shape == videos.shape and quantizer.ids.shape == (1, 5, 8, 8)
    assert preset(VQ_PRESETS, "VQ3D-B", VQConfig).grid_size == 16  # 128 px -> (5, 16, 16)


@torch.no_grad()
def test_changing_frame_t_never_changes_earlier_latent_frames():
    torch.manual_seed(0)
    model = CausalVideoVQModel(TINY).eval()
    videos = torch.rand(2, 17, 1, 16, 16) * 2 - 1
    before = features(model, videos)
    for t in range(17):
        changed = videos.clone()
        changed[:, t] = torch.rand_like(changed[:, t])
        after = features(model, changed)
        first = -(-t // 4)  # frame t's latent frame: ceil(t / 4)
        assert torch.equal(before[:, :, :first], after[:, :, :first]), t
        assert not torch.equal(before[:, :, first], after[:, :, first]), t


@torch.no_grad()
def test_inflated_image_tokenizer_encodes_every_fourth_frame_as_the_image_tokenizer():
    torch.manual_seed(0)
    image = VQModel(dataclasses.replace(TINY, temporal_downsample=0)).eval()
    model = CausalVideoVQModel(TINY).eval()
    inflate_from_image(model, image.state_dict())
    videos = torch.rand(2, 9, 1, 16, 16) * 2 - 1
    ids = model.encode(videos)
    latents = features(model, videos)
    for j in range(3):  # latent frame j is frame 4j, encoded alone (the past taps are zero)
        assert torch.equal(ids[:, j], image.encode(videos[:, 4 * j]))
        assert torch.allclose(latents[:, :, j], image.quant_conv(image.encoder(videos[:, 4 * j])), atol=1e-5)
    with pytest.raises(ValueError, match="do not match the 3D tokenizer's keys"):
        inflate_from_image(CausalVideoVQModel(dataclasses.replace(TINY, num_res_blocks=2)), image.state_dict())


def test_refusals():
    model = CausalVideoVQModel(TINY)
    with pytest.raises(ValueError, match=r"encodes 1 \+ 4k frames \(1, 5, 9, ...\), got 16"):
        model.encode(torch.zeros(1, 16, 1, 16, 16))
    with pytest.raises(ConfigError, match="must be a power of 2"):
        CausalVideoVQModel(dataclasses.replace(TINY, temporal_downsample=3))
    with pytest.raises(ConfigError, match="needs 3 downsamplings"):
        CausalVideoVQModel(dataclasses.replace(TINY, temporal_downsample=8))
    with pytest.raises(ConfigError, match="not an image VQModel"):
        VQModel(TINY)


def test_ucf_files_through_an_inflated_3d_tokenizer_to_sampled_videos(tmp_path):
    root = write_ucf(tmp_path / "ucf", frames=12)
    data = [
        "data.name=videofiles",
        f"data.path={root}",
        "data.image_size=16",
        "data.video.frames=9",
        "data.video.split_file=ucfTrainTestlist/trainlist01.txt",
    ]
    model = [
        "model.image_size=16",
        "model.ch=8",
        "model.ch_mult=[1,2,2]",
        "model.num_res_blocks=1",
        "model.z_channels=8",
        "model.codebook_size=16",
        "model.codebook_dim=4",
        "train.steps=1",
        "train.batch_size=4",
    ]
    # An image tokenizer on the clips' frames, then the 3D tokenizer inflated from it.
    assert main(["tokenizer", "train", "--out", str(tmp_path / "image"), *data, *model]) == 0
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--out",
                str(tmp_path / "tok"),
                *data,
                *model,
                "model.temporal_downsample=4",
                f"model.inflate_from={tmp_path / 'image' / 'checkpoint'}",
                "data.num_workers=1",
            ]
        )
        == 0
    )
    assert (
        main(["tokenize", "--tokenizer", str(tmp_path / "tok" / "checkpoint"), "--out", str(tmp_path / "cache")]) == 0
    )
    assert (
        main(
            [
                "tokenizer",
                "eval",
                "--tokenizer",
                str(tmp_path / "tok" / "checkpoint"),
                "--out",
                str(tmp_path / "tok-eval"),
            ]
        )
        == 0
    )  # the test split: testlist01.txt's 2 clips
    metrics = json.loads((tmp_path / "tok-eval" / "metrics.json").read_text())
    assert (metrics["images"], metrics["frames"], metrics["tokens_per_item"]) == (2, 18, 3 * 4 * 4)  # PSNR per frame
    assert len(metrics["psnr_db_by_frame"]) == 9
    assert sum(metrics["psnr_db_by_frame"]) / 9 == pytest.approx(metrics["psnr_db"])
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["grid"] == [3, 4, 4] and manifest["count"] == 4  # 9 frames -> 3 latent frames
    assert (
        main(
            [
                "train",
                "--cache",
                str(tmp_path / "cache"),
                "--out",
                str(tmp_path / "ar"),
                "layout.order=region",
                "layout.parallel=4",
                "model.dim=32",
                "model.n_layer=1",
                "model.n_head=2",
                "model.multiple_of=16",
                "train.steps=2",
                "train.batch_size=4",
            ]
        )
        == 0
    )
    pipeline = argen.load(tmp_path / "ar" / "checkpoint")
    samples = pipeline.sample([0, 1], generator=torch.Generator().manual_seed(0))
    assert samples.visual.shape == (2, 3, 4, 4) and samples.images.shape == (2, 9, 1, 16, 16)
    # `argen sample` writes the videos, an animated GIF and a strip; the real test clips, read from the files,
    # become the real batch of `argen eval video`.
    assert (
        main(
            [
                "sample",
                "--model",
                str(tmp_path / "ar" / "checkpoint"),
                "--count",
                "4",
                "--batch",
                "2",
                "--out",
                str(tmp_path / "samples"),
            ]
        )
        == 0
    )
    assert {"videos.npz", "samples.gif", "samples.png"} <= {p.name for p in (tmp_path / "samples").iterdir()}
    assert (
        main(
            [
                "video",
                "make-dataset",
                "--tokenizer",
                str(tmp_path / "tok" / "checkpoint"),
                "--out",
                str(tmp_path / "real.npz"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "real.npz")["arr_0"].shape == (2, 9, 16, 16, 1)
