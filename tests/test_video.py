"""Video: 3D layouts (1x, PAR-4x, PAR-16x), decoding, datasets, GIF/strip files, metrics and the CLI end to end."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from argen.cli import main
from argen.config import DataConfig, GPTConfig, LayoutConfig, VideoDataConfig
from argen.data import DataError, load_dataset
from argen.data.datasets import synthetic_images
from argen.data.video import bounce, load_video_dataset, load_video_folder, moving_sprites
from argen.eval.features import FeatureExtractor
from argen.eval.video import evaluate_videos
from argen.io.video import read_gif, save_gif, save_strip
from argen.layout import Layout
from argen.model import Transformer
from argen.sample import SamplingOptions, generate

GRID = (3, 8, 8)
VIDEO_LAYOUTS = {
    "1x": dict(grid=GRID),
    "par-4x": dict(grid=GRID, order="region", parallel=4),
    "par-16x": dict(grid=GRID, order="region", parallel=16),
    "par-4x-time-regions": dict(grid=(2, 4, 4), order="region", parallel=8, regions=(2, 2, 2)),
}
VOCAB = 12


def video_layout(name: str) -> Layout:
    return Layout(LayoutConfig(**VIDEO_LAYOUTS[name]), VOCAB)


# ------------------------------------------------------------------------------------------------
# layout and decoding


@pytest.mark.parametrize("name", list(VIDEO_LAYOUTS))
def test_3d_layout_covers_every_position_once_in_k_plus_n_over_k_minus_1_steps(name):
    layout = video_layout(name)
    count, k = math.prod(layout.grid), layout.parallel
    coordinates = [tuple(int(c) for c in row) for row in layout.generated_coords.tolist()]
    assert sorted(coordinates) == list(itertools.product(*(range(size) for size in layout.grid)))
    assert layout.num_steps == (count if k == 1 else k + count // k - 1)
    if k > 1:  # a parallel group: one token per region, all at the same place inside their regions
        group = layout.generated_coords[layout.steps[k].output_start : layout.steps[k].output_end].long()
        block = torch.tensor(layout.grid) // torch.tensor(layout.regions)
        inside, region = group % block, group // block
        assert len(group) == k and bool((inside == inside[0]).all())
        assert len({tuple(row) for row in region.tolist()}) == k


def test_default_video_regions_split_each_frame_and_keep_time_outermost():
    layout = video_layout("par-16x")
    assert layout.regions == (1, 4, 4)
    frames = layout.generated_coords[:, 0]
    assert bool((frames[1:] >= frames[:-1]).all())  # frame after frame


def test_one_frame_video_layout_is_the_image_layout():
    image = Layout(LayoutConfig(grid=(8, 8), order="region", parallel=4), VOCAB)
    video = Layout(LayoutConfig(grid=(1, 8, 8), order="region", parallel=4), VOCAB)
    assert torch.equal(image.visual_order, video.visual_order) and torch.equal(image.mask, video.mask)
    assert torch.equal(image.coords, video.coords[:, 1:]) and not video.coords[:, 0].any()
    assert image.steps == video.steps


def tiny_model(layout: Layout) -> Transformer:
    torch.manual_seed(0)
    config = GPTConfig(dim=48, n_layer=2, n_head=2, multiple_of=16, vocab_size=layout.vocab_size, num_classes=4)
    model = Transformer(config, n_transition=layout.n_transition)
    for parameter in model.parameters():
        nn.init.normal_(parameter, std=0.3)  # sharp logits: ties in the argmax are unlikely
    return model.eval()


@pytest.mark.parametrize("name", list(VIDEO_LAYOUTS))
def test_cached_greedy_decoding_equals_the_teacher_forced_argmax(name):
    layout = video_layout(name)
    model = tiny_model(layout)
    labels = torch.tensor([0, 3])
    options = SamplingOptions(greedy=True, dtype="fp32")  # exactly the fp32 teacher-forced argmax
    generated = generate(model, layout, labels, options=options).visual  # (B, T, H, W)
    assert generated.shape == (2, *layout.grid)
    tensors = layout.training_tensors(generated, labels)
    with torch.no_grad():
        logits = model(tensors["ids"], tensors["kinds"], layout.rope(model.config), tensors["mask"])
    targets = tensors["targets"]
    assert torch.equal(logits.argmax(-1)[targets >= 0], targets[targets >= 0])


# ------------------------------------------------------------------------------------------------
# datasets


def sprites(count=40, size=6, seed=0):
    return synthetic_images(count, size, channels=1, seed=seed)  # class c: a box of brightness 80 + 175 c / 9


def test_bounce_reflects_at_both_borders():
    assert bounce(np.array(0.0), np.array(3.0), 6, 4).tolist() == [0, 3, 2, 1, 4, 1]
    assert bounce(np.array(2.0), np.array(-1.0), 4, 4).tolist() == [2, 1, 0, 1]


def test_moving_sprites_stay_inside_the_canvas_and_follow_the_seed():
    images, labels = sprites()
    videos, corners = moving_sprites(images, labels, frames=12, canvas=16, objects=1, speed=3.0, seed=5)
    assert videos.shape == (40, 12, 1, 16, 16) and corners.shape == (40, 1, 12, 2)
    assert corners.min() >= 0 and corners.max() <= 16 - 6
    # Nothing is clipped: every frame holds the whole sprite.
    masses = videos.reshape(40, 12, -1).astype(np.int64).sum(-1)
    assert np.array_equal(masses, np.repeat(images.reshape(40, -1).astype(np.int64).sum(-1)[:, None], 12, 1))
    assert (np.abs(np.diff(corners, axis=2)).sum(-1) > 0).any()  # they move
    again, _ = moving_sprites(images, labels, frames=12, canvas=16, objects=1, speed=3.0, seed=5)
    other, _ = moving_sprites(images, labels, frames=12, canvas=16, objects=1, speed=3.0, seed=6)
    assert np.array_equal(videos, again) and not np.array_equal(videos, other)


def test_every_object_of_a_video_has_the_video_class():
    images, labels = sprites(count=60)
    videos, _ = moving_sprites(images, labels, frames=3, canvas=16, objects=3, speed=2.0, seed=0)
    for video, label in zip(videos, labels):
        assert set(np.unique(video).tolist()) <= {0, 80 + (int(label) * 175) // 9}
    with pytest.raises(DataError, match="do not fit"):
        moving_sprites(images, labels, frames=3, canvas=4)


def test_moving_dataset_by_name_splits_and_frames():
    config = DataConfig(
        name="moving-synthetic", image_size=16, limit=20, video=VideoDataConfig(frames=4, sprite_size=6, seed=1)
    )
    train = load_video_dataset(config)
    assert train.videos.shape == (20, 4, 1, 16, 16) and train.videos.dtype == torch.uint8
    assert torch.equal(train.videos, load_video_dataset(config).videos)
    test = load_video_dataset(DataConfig(**{**config.__dict__, "split": "test"}))
    assert not torch.equal(train.videos, test.videos)
    batch = train.batch(torch.tensor([0, 3]))
    assert batch["images"].shape == (2, 4, 1, 16, 16) and batch["images"].min() >= -1
    frames = load_dataset(config)  # the tokenizer's view: every frame, labelled with its video's class
    assert frames.images.shape == (80, 1, 16, 16) and torch.equal(frames.labels[:4], train.labels[:1].repeat(4))
    with pytest.raises(DataError, match="image dataset"):
        load_video_dataset(DataConfig(name="moving-videofolder"))


def write_frames(folder, count, size=(10, 12), value=100):
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(np.full(size[::-1], value + index, dtype=np.uint8)).save(folder / f"{index:03d}.png")


def test_video_folder_of_frame_folders_and_gifs(tmp_path):
    write_frames(tmp_path / "jump" / "clip-a", 5)
    gif = np.random.default_rng(0).integers(0, 256, size=(4, 1, 9, 9), dtype=np.uint8)
    (tmp_path / "run").mkdir()
    save_gif(gif[None], tmp_path / "run" / "clip-b.gif")
    videos, labels, classes = load_video_folder(tmp_path, frames=4, size=8, channels=1, on_bad_video="error")
    assert videos.shape == (2, 4, 1, 8, 8) and labels.tolist() == [0, 1] and classes == ("jump", "run")
    dataset = load_video_dataset(
        DataConfig(name="videofolder", path=str(tmp_path), image_size=8, channels=3, video=VideoDataConfig(frames=3))
    )
    assert dataset.videos.shape == (2, 3, 3, 8, 8)


@pytest.mark.parametrize(
    "problem, message",
    [
        ("short", "3 frames, fewer than data.video.frames=4"),
        ("sizes", "all frames of a video need one size"),
        ("unreadable", "unreadable frame"),
        ("empty", "no frame images"),
    ],
)
def test_video_folder_errors_name_the_bad_video(tmp_path, problem, message):
    write_frames(tmp_path / "good" / "clip", 4)
    bad = tmp_path / "bad" / "clip"
    if problem == "short":
        write_frames(bad, 3)
    elif problem == "sizes":
        write_frames(bad, 4)
        Image.fromarray(np.zeros((7, 7), dtype=np.uint8)).save(bad / "002.png")
    elif problem == "unreadable":
        write_frames(bad, 4)
        (bad / "001.png").write_bytes(b"not a png")
    else:
        bad.mkdir(parents=True)
    with pytest.raises(DataError, match=message) as error:
        load_video_folder(tmp_path, frames=4, size=8, channels=1, on_bad_video="error")
    assert str(bad) in str(error.value)
    with pytest.warns(UserWarning, match="skipped 1 bad video"):
        videos, labels, _ = load_video_folder(tmp_path, frames=4, size=8, channels=1)
    assert len(videos) == 1 and labels.tolist() == [1]


def test_video_folder_without_classes_or_videos(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        load_video_folder(tmp_path, frames=2, size=8, channels=1)
    (tmp_path / "empty-class").mkdir()
    with pytest.raises(DataError, match="no usable videos"):
        load_video_folder(tmp_path, frames=2, size=8, channels=1)


# ------------------------------------------------------------------------------------------------
# files


def test_gif_and_strip_round_trip_frame_count_and_size(tmp_path):
    videos = torch.randint(0, 256, (3, 5, 1, 6, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    read = read_gif(save_gif(videos[:1], tmp_path / "one.gif"))
    assert read.shape == (5, 1, 6 + 4, 7 + 4)  # one video in a grid: 2-pixel border
    assert np.array_equal(read[:, :, 2:-2, 2:-2], videos[0].numpy())  # grey GIFs are lossless
    grid = read_gif(save_gif(videos, tmp_path / "grid.gif", columns=3, scale=2), channels=3)
    assert grid.shape == (5, 3, 2 * (6 + 4), 2 * (3 * 9 + 2))
    with Image.open(save_strip(videos, tmp_path / "strip.png")) as strip:
        assert strip.size == (5 * 9 + 2, 3 * 8 + 2)  # frames left to right, a row per video
    with pytest.raises(ValueError, match="uint8 videos"):
        save_gif(videos[0], tmp_path / "bad.gif")


# ------------------------------------------------------------------------------------------------
# metrics


class BrightnessNetwork(nn.Module):
    """A stand-in extractor for moving synthetic boxes: the brightest pixel names the class, and the box's
    centre of mass (scaled) is the feature vector, so consecutive frames of one video are close."""

    def features(self, images):
        grey = (images[:, 0] + 1) * 127.5  # (B, H, W) in [0, 255]
        brightness = grey.flatten(1).amax(1)
        classes = 80 + torch.arange(10) * 175 // 9
        logits = -(brightness[:, None] - classes[None]).abs()
        rows = torch.arange(grey.shape[1], dtype=torch.float32)
        mass = grey.sum((1, 2)).clamp_min(1)
        centre = torch.stack([(grey.sum(2) * rows).sum(1) / mass, (grey.sum(1) * rows).sum(1) / mass], -1)
        return {"pool": torch.cat([centre, brightness[:, None] / 10], -1), "logits": logits}


def test_video_metrics_separate_real_videos_from_shuffled_frames():
    def videos(seed):
        config = DataConfig(
            name="moving-synthetic",
            image_size=16,
            limit=200,
            video=VideoDataConfig(frames=6, sprite_size=6, speed=1.0, seed=seed),
        )
        dataset = load_video_dataset(config)
        return dataset.videos.permute(0, 1, 3, 4, 2).numpy(), dataset.labels.numpy()

    extractor = FeatureExtractor(BrightnessNetwork(), "brightness", "none", channels=1)
    real, labels = videos(0)
    other, _ = videos(1)
    permutation = np.random.default_rng(0).permutation(real.shape[0] * real.shape[1])
    shuffled = real.reshape(-1, *real.shape[2:])[permutation].reshape(real.shape)
    genuine = evaluate_videos(real, other, extractor, labels)
    mixed = evaluate_videos(shuffled, other, extractor, labels, bootstrap=50)
    accuracy = mixed["video_class_accuracy"]  # the bootstrap std of a share is close to the binomial one
    binomial = np.sqrt(accuracy * (1 - accuracy) / len(labels))
    assert 0.7 * binomial < mixed["video_class_accuracy_bootstrap_std"] < 1.3 * binomial
    assert mixed["frame_fid_bootstrap_std"] > 0 and "frame_fid_bootstrap_std" not in genuine
    assert genuine["video_class_accuracy"] == 1.0 and mixed["video_class_accuracy"] < 0.5
    assert mixed["temporal_distance_gap"] > 3 * genuine["real_temporal_distance"]
    assert abs(genuine["temporal_distance_gap"]) < 0.1 * mixed["temporal_distance_gap"]
    assert genuine["frame_fid"] < 1.0 and genuine["frames"] == 6 and genuine["extractor"] == "brightness"
    with pytest.raises(ValueError, match="one length"):
        evaluate_videos(real[:, :3], other, extractor)


# ------------------------------------------------------------------------------------------------
# command line, end to end


def test_cli_video_end_to_end(tmp_path, capsys):
    data = [
        "data.name=moving-synthetic",
        "data.limit=48",
        "data.image_size=16",
        "data.video.frames=3",
        "data.video.sprite_size=6",
    ]
    tokenizer = [
        "model.image_size=16",
        "model.ch=16",
        "model.ch_mult=[1,2]",
        "model.num_res_blocks=1",
        "model.z_channels=8",
        "model.codebook_size=16",
        "model.codebook_dim=4",
        "train.steps=2",
        "train.batch_size=16",
    ]
    assert main(["tokenizer", "train", "--out", str(tmp_path / "tok"), *data, *tokenizer]) == 0
    assert (
        main(
            [
                "tokenize",
                "--tokenizer",
                str(tmp_path / "tok" / "checkpoint"),
                "--out",
                str(tmp_path / "cache"),
                "--limit",
                "48",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["grid"] == [3, 8, 8] and manifest["count"] == 48
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
                "train.batch_size=8",
                "train.sample_every=2",
            ]
        )
        == 0
    )
    assert read_gif(tmp_path / "ar" / "samples" / "step-0000002.gif").shape[0] == 3  # in-training samples
    samples = tmp_path / "samples"
    assert main(["sample", "--model", str(tmp_path / "ar" / "checkpoint"), "--count", "4", "--out", str(samples)]) == 0
    assert read_gif(samples / "samples.gif").shape[0] == 3 and (samples / "samples.png").is_file()
    assert json.loads((samples / "sampling.json").read_text())["steps"] == 4 + 3 * 8 * 8 // 4 - 1
    real = tmp_path / "real.npz"
    assert (
        main(
            [
                "video",
                "make-dataset",
                "--tokenizer",
                str(tmp_path / "tok" / "checkpoint"),
                "--count",
                "30",
                "--out",
                str(real),
                "data.video.speed=1",
            ]
        )
        == 0
    )
    assert real.with_suffix(".gif").is_file()
    from argen.config import ClassifierConfig
    from argen.eval.features import Classifier, save_classifier

    torch.manual_seed(0)
    classifier = save_classifier(
        tmp_path / "classifier", Classifier(ClassifierConfig(image_size=16, widths=(8, 16), feature_dim=16))
    )
    metrics = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                "video",
                str(samples / "videos.npz"),
                "--real",
                str(real),
                "--classifier",
                str(classifier),
                "--bootstrap",
                "5",
                "--out",
                str(metrics),
            ]
        )
        == 0
    )
    result = json.loads(metrics.read_text())
    assert result["videos"] == 4 and result["real_videos"] == 30 and result["frames"] == 3
    assert 0 <= result["video_class_accuracy"] <= 1 and result["frame_fid"] > 0
    assert result["frame_fid_bootstrap_std"] > 0 and "video_class_accuracy_bootstrap_std" in result
    assert (
        main(
            [
                "report",
                "--out",
                str(tmp_path / "report"),
                "--metrics",
                str(metrics),
                "--media",
                f"PAR-4x={samples / 'samples.gif'}",
            ]
        )
        == 0
    )
    assert ".gif" in (tmp_path / "report" / "index.html").read_text()
    assert main(["eval", str(samples / "videos.npz"), "--ref", str(real), "--classifier", str(classifier)]) == 2
    assert "argen eval video" in capsys.readouterr().err
