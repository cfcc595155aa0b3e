"""The one training loop: exact resume, accumulation == data parallel split, non-finite losses, atomic saves."""

import dataclasses
import json
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from argen.config import TrainConfig
from argen.io import checkpoint as ckpt
from argen.train.trainer import Task, Trainer, TrainingError, learning_rate


class DigitsTask(Task):
    """A small MLP classifier with dropout, so resuming must restore randomness too."""

    def __init__(self, poison_step: int | None = None):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
        self.poison_step = poison_step

    def modules(self):
        return {"model": self.model}

    def loss(self, name, modules, batch, step):
        loss = nn.functional.cross_entropy(modules[name](batch["images"]), batch["labels"])
        if step == self.poison_step:
            loss = loss * float("nan")
        return loss, {"accuracy": 0.0}


@dataclass
class RunConfig:
    train: TrainConfig


def make_trainer(dataset, out_dir, poison_step=None, num_workers=0, **overrides):
    config = TrainConfig(
        **{
            "steps": 12,
            "batch_size": 32,
            "lr": 1e-2,
            "log_every": 1,
            "checkpoint_every": 4,
            "seed": 3,
            "out_dir": str(out_dir),
            **overrides,
        }
    )
    return Trainer(
        DigitsTask(poison_step), dataset, config, RunConfig(config), "test", progress=False, num_workers=num_workers
    )


def weights(trainer):
    return {k: v.clone() for k, v in trainer.modules["model"].state_dict().items()}


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_and_resumed_run_equals_uninterrupted(digits_dataset, tmp_path, workers):
    # Random crops and flips: the augmentations, too, must not depend on the workers or on the resume.
    augmented = dataclasses.replace(digits_dataset, flip=True, crop_min=0.8)
    full = make_trainer(augmented, tmp_path / "full")
    full_losses = [h["model_loss"] for h in full.fit().history]

    first = make_trainer(augmented, tmp_path / "split", num_workers=workers)
    first_losses = [h["model_loss"] for h in first.fit(stop_after=6).history]
    assert first.step == 6
    first.save()
    second = make_trainer(augmented, tmp_path / "split", num_workers=workers)
    second_losses = [h["model_loss"] for h in second.fit().history]
    assert first_losses + second_losses == full_losses
    for key, value in weights(full).items():
        assert torch.equal(value, weights(second)[key]), key


def test_gradient_accumulation_matches_one_big_batch(digits_dataset, tmp_path):
    one = make_trainer(digits_dataset, tmp_path / "one")
    accumulated = make_trainer(digits_dataset, tmp_path / "acc", grad_accum=2)
    # Dropout draws differ per micro-batch, so compare with dropout off.
    for trainer in (one, accumulated):
        trainer.modules["model"][3].p = 0.0
    one.fit(stop_after=3)
    accumulated.fit(stop_after=3)
    # Not bit-equal (different reduction order), but the same optimisation path.
    for key, value in weights(one).items():
        assert torch.allclose(value, weights(accumulated)[key], atol=1e-4), key


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(digits_dataset, tmp_path):
    trainer = make_trainer(digits_dataset, tmp_path, poison_step=5)
    with pytest.raises(TrainingError, match="non-finite loss at step 5.*Last good checkpoint"):
        trainer.fit()
    meta = ckpt.read_meta(tmp_path / "checkpoint", "test")
    assert meta["step"] == 4
    assert not any(p.name.startswith(".checkpoint.staging") for p in tmp_path.iterdir())


def test_checkpoint_holds_config_and_refuses_other_config(digits_dataset, tmp_path):
    make_trainer(digits_dataset, tmp_path).fit(stop_after=4)
    meta = ckpt.read_meta(tmp_path / "checkpoint")
    assert meta["config"]["train"]["lr"] == 1e-2
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    with pytest.raises(TrainingError, match=r"different config \(train.weight_decay: 0.05 there, 0.5 here\)"):
        make_trainer(digits_dataset, tmp_path, weight_decay=0.5).fit()


def test_a_longer_schedule_extends_a_finished_run_and_the_log_has_each_step_once(digits_dataset, tmp_path):
    make_trainer(digits_dataset, tmp_path, steps=8).fit()
    extended = make_trainer(digits_dataset, tmp_path, steps=12)
    extended.fit()
    assert extended.step == 12 and ckpt.read_meta(tmp_path / "checkpoint")["config"]["train"]["steps"] == 12
    with pytest.raises(TrainingError, match="past train.steps=4"):
        make_trainer(digits_dataset, tmp_path, steps=4).fit()
    # An interrupted run logged steps 9 and 10 past its step-8 checkpoint; the resumed run logs them once.
    interrupted = make_trainer(digits_dataset, tmp_path / "interrupted", checkpoint_every=8)
    interrupted.fit(stop_after=10)
    make_trainer(digits_dataset, tmp_path / "interrupted", checkpoint_every=8).fit()
    logged = [json.loads(line)["step"] for line in (tmp_path / "interrupted" / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 13))


SWAP_MOVES = 5  # Trainer.save after its first checkpoint: rmtree staging, rmtree previous, 2 renames, rmtree previous


@pytest.mark.parametrize("crash_at", range(SWAP_MOVES))
def test_a_crash_at_any_point_of_the_checkpoint_swap_resumes_exactly(digits_dataset, tmp_path, monkeypatch, crash_at):
    full = make_trainer(digits_dataset, tmp_path / "full")
    full_losses = [h["model_loss"] for h in full.fit().history]

    run = tmp_path / "crashed"
    first = make_trainer(digits_dataset, run)
    first.fit(stop_after=4)  # the step-4 checkpoint, saved without interference
    moves = []

    def move(real):
        def wrapped(*args, **kwargs):
            moves.append(args)
            if len(moves) == crash_at + 1:
                raise KeyboardInterrupt("crash")  # what a kill leaves: the moves before this one done
            return real(*args, **kwargs)

        return wrapped

    import shutil
    from pathlib import Path

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "rmtree", move(shutil.rmtree))
        patch.setattr(Path, "rename", move(Path.rename))
        with pytest.raises(KeyboardInterrupt):  # steps 5 to 8, then the step-8 save crashes at move `crash_at`
            first.fit(resume=False, stop_after=8)
    resumed = make_trainer(digits_dataset, run)
    resumed_losses = [h["model_loss"] for h in resumed.fit().history]
    assert resumed_losses == full_losses[len(full_losses) - len(resumed_losses) :]
    # The step-8 folder is complete from the second move on: from then the run resumes at step 8, not step 4.
    assert len(resumed_losses) == (8 if crash_at == 0 else 4)
    for key, value in weights(full).items():
        assert torch.equal(value, weights(resumed)[key]), key
    assert not any(run.glob(".checkpoint.*"))


def test_batch_split_is_validated(digits_dataset, tmp_path):
    with pytest.raises(TrainingError, match="multiple of"):
        make_trainer(digits_dataset, tmp_path, grad_accum=3)


def test_warmup_cosine_schedule():
    config = TrainConfig(lr=1.0, steps=110, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(0.1)
    assert learning_rate(config, 9) == pytest.approx(1.0)
    assert learning_rate(config, 60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(config, 110) == pytest.approx(0.1)
    linear = TrainConfig(lr=1.0, schedule="linear", warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert learning_rate(linear, 60) == pytest.approx(0.1 + 0.9 * 0.5) and learning_rate(linear, 110) == 0.1


def test_init_from_starts_from_a_checkpoint_and_resume_overrides_it(digits_dataset, tmp_path):
    source = make_trainer(digits_dataset, tmp_path / "source")
    source.fit()
    tuned = make_trainer(digits_dataset, tmp_path / "tuned", init_from=str(source.checkpoint_dir))
    for key, value in weights(source).items():
        assert torch.equal(value, weights(tuned)[key]), key
    tuned.fit(stop_after=4)
    tuned.save()
    resumed = make_trainer(digits_dataset, tmp_path / "tuned", init_from=str(source.checkpoint_dir))
    resumed.resume()
    assert resumed.step == 4 and not torch.equal(weights(resumed)["1.weight"], weights(source)["1.weight"])
    with pytest.raises(ckpt.CheckpointError, match="no model.safetensors"):
        make_trainer(digits_dataset, tmp_path / "other", init_from=str(tmp_path / "missing"))


def test_ema_is_warmed_up_so_the_initial_weights_do_not_linger(digits_dataset, tmp_path):
    trainer = make_trainer(digits_dataset, tmp_path, ema_decay=0.999)
    start = weights(trainer)
    trainer.fit(stop_after=1)
    # The first update's decay is min(0.999, 1 / 10): the EMA is already 90 % the trained weights.
    for key, value in weights(trainer).items():
        assert torch.allclose(trainer.ema[key], 0.1 * start[key] + 0.9 * value, atol=1e-6), key
