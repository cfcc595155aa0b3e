"""`videofiles`: UCF-101-format video files read through PyAV, per batch (argen.data.video_files)."""

import dataclasses

import pytest
import torch
from video_fixture import CLASSES, STEP, moving_square, write_ucf, write_video

from argen.config import DataConfig, VideoDataConfig
from argen.data import DataError, load_dataset
from argen.data.video import load_video_dataset
from argen.data.video_files import VideoFileDataset


def config(root, split="train", split_file="ucfTrainTestlist/trainlist01.txt", **video):
    return DataConfig(
        name="videofiles",
        path=str(root),
        split=split,
        image_size=16,
        channels=1,
        video=VideoDataConfig(**{"frames": 5, "stride": 2, "split_file": split_file, **video}),
    )


def column_of_square(frames: torch.Tensor) -> torch.Tensor:
    """The brightness-weighted column of each frame (T, 1, H, W) in [-1, 1]."""
    weights = (frames[:, 0] + 1).sum(1)  # (T, W)
    return (weights * torch.arange(frames.shape[-1])).sum(1) / weights.sum(1)


def test_ucf_split_files_labels_and_clips(tmp_path):
    root = write_ucf(tmp_path / "ucf")
    train = load_video_dataset(config(root))
    assert isinstance(train, VideoFileDataset) and train.class_names == CLASSES
    assert len(train) == 4 and train.labels.tolist() == [0, 0, 1, 1]
    batch = train.batch(torch.arange(4))
    assert batch["images"].shape == (4, 5, 1, 16, 16) and batch["labels"].tolist() == [0, 0, 1, 1]
    assert batch["readable"].all()
    # Class 0's square is in the top half, class 1's in the bottom half.
    top = (batch["images"][..., :8, :] + 1).sum((1, 2, 3, 4))
    bottom = (batch["images"][..., 8:, :] + 1).sum((1, 2, 3, 4))
    assert (top[:2] > bottom[:2]).all() and (bottom[2:] > top[2:]).all()
    # Stride 2: the square moves 2 * STEP source pixels (STEP at 16 of 32 pixels) from clip frame to frame.
    moves = column_of_square(batch["images"][0]).diff()
    assert torch.allclose(moves, torch.full_like(moves, STEP), atol=0.3)
    test = load_video_dataset(config(root, "test"))  # the test split reads testlist01.txt beside trainlist01.txt
    assert len(test) == 2 and test.labels.tolist() == [0, 1]
    assert test.files[0].decode() == "Jump/v_Jump_g03_c01.avi"
    frames = load_dataset(config(root))  # an image tokenizer's view: every frame of every clip
    assert len(frames) == 20 and frames.batch(torch.tensor([0, 4, 19]))["images"].shape == (3, 1, 16, 16)
    assert torch.equal(frames.batch(torch.tensor([7]))["images"][0], batch["images"][1, 2])


def test_without_split_file_every_video_file_of_every_class_folder(tmp_path):
    root = write_ucf(tmp_path / "ucf")
    write_video(root / "Run" / "extra.mp4", moving_square(9, row=20))
    dataset = load_video_dataset(config(root, split_file=""))
    assert dataset.class_names == CLASSES  # ucfTrainTestlist holds no video: not a class
    assert len(dataset) == 7 and dataset.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert dataset.batch(torch.tensor([3]))["images"].shape == (1, 5, 1, 16, 16)  # extra.mp4 sorts first


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mkv"])
def test_other_containers_read_as_avi_does(tmp_path, suffix):
    root = tmp_path / "videos"
    write_video(root / "Jump" / f"a{suffix}", moving_square(12, row=4))
    dataset = load_video_dataset(config(root, split_file=""))
    assert len(dataset) == 1 and dataset.files[0].decode() == f"Jump/a{suffix}"
    clip = dataset.batch(torch.tensor([0]))["images"][0]
    assert clip.shape == (5, 1, 16, 16)
    moves = column_of_square(clip).diff()
    assert torch.allclose(moves, torch.full_like(moves, STEP), atol=0.3)


def test_corrupt_and_short_files_are_skipped_with_a_warning_or_an_error(tmp_path):
    root = write_ucf(tmp_path / "ucf")
    (root / "Jump" / "v_Jump_g01_c01.avi").write_bytes(b"not a video")
    write_video(root / "Run" / "v_Run_g01_c01.avi", moving_square(6, row=20))  # 9 frames needed
    dataset = load_video_dataset(config(root))
    with pytest.warns(UserWarning) as warned:
        batch = dataset.batch(torch.arange(4))
    assert batch["readable"].tolist() == [False, True, False, True]
    assert batch["labels"].tolist() == [0, 0, 1, 1]  # each bad one replaced by the next readable video
    messages = [str(warning.message) for warning in warned]
    assert len(messages) == 2
    assert "v_Jump_g01_c01.avi: unreadable video, skipped (1 so far in this process): FFmpeg cannot" in messages[0]
    assert "v_Run_g01_c01.avi: unreadable video, skipped (2 so far in this process): too short: 3 of" in messages[1]
    strict = load_video_dataset(dataclasses.replace(config(root), on_bad_image="error"))
    with pytest.raises(DataError, match=r"v_Jump_g01_c01.avi: unreadable video \(FFmpeg cannot decode"):
        strict.batch(torch.tensor([0]))


def test_split_file_errors_name_the_line(tmp_path):
    root = write_ucf(tmp_path / "ucf")
    lists = root / "ucfTrainTestlist"
    (lists / "trainlist02.txt").write_text("Jump/v_Jump_g01_c01.avi 2\n")
    with pytest.raises(DataError, match=r"trainlist02.txt:1: label 2 but Jump is class 1 in classInd.txt"):
        load_video_dataset(config(root, split_file="ucfTrainTestlist/trainlist02.txt"))
    (lists / "trainlist02.txt").write_text("Swim/v_Swim_g01_c01.avi\n")
    with pytest.raises(DataError, match=r"trainlist02.txt:1: expected `<class>/<video> \[label\]` with a known"):
        load_video_dataset(config(root, split_file="ucfTrainTestlist/trainlist02.txt"))
    with pytest.raises(DataError, match="split_file: .*trainlist09.txt does not exist"):
        load_video_dataset(config(root, split_file="trainlist09.txt"))
    with pytest.raises(DataError, match="name it as UCF-101 does"):
        load_video_dataset(config(root, split_file="ucfTrainTestlist/classInd.txt"))


def test_random_temporal_starts_are_seeded_and_only_in_training(tmp_path):
    """With video.random_start a training clip starts at a random frame (where its square has moved further right),
    drawn from the torch RNG the trainer seeds per batch: the same seed, the same starts; evaluation starts at 0."""
    root = write_ucf(tmp_path / "ucf", frames=20)  # 20 frames: a 5-frame clip at stride 2 may start at 0 to 11
    settings = config(root, random_start=True)
    train = load_video_dataset(settings, training=True)
    evaluation = load_video_dataset(settings)
    first_columns = []
    for seed in range(6):
        torch.manual_seed(seed)
        clips = train.batch(torch.arange(4))["images"]
        torch.manual_seed(seed)
        assert torch.equal(clips, train.batch(torch.arange(4))["images"])  # seeded: resumable
        first_columns += [float(column_of_square(clip)[0]) for clip in clips]
    fixed = column_of_square(evaluation.batch(torch.tensor([0]))["images"][0])[0]
    assert min(first_columns) >= float(fixed) - 0.3  # never before frame 0
    assert max(first_columns) > float(fixed) + 2 * STEP  # some clips start later in their video
    assert len({round(column) for column in first_columns}) > 3
