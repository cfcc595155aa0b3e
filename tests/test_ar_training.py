"""AR training through the one trainer and the CLI: pinned losses, resume, torchrun == one process, sampling."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import argen
from tiny_tokenizer import tiny_tokenizer
from argen.cli import main
from argen.config import ARRunConfig, GPTConfig, LayoutConfig, TrainConfig
from argen.data.token_cache import TokenCacheError, TokenDataset
from argen.io.load import ar_config_from_cache
from argen.train import recipes


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("ar")
    assert main(["tokenizer", "train", "--out", str(root / "tok"), *tiny_tokenizer(96)]) == 0
    assert main(["tokenize", "--tokenizer", str(root / "tok" / "checkpoint"), "--out", str(root / "cache")]) == 0
    return root / "cache"


def tiny_config(cache, out_dir, steps=6, **layout):
    dataset = TokenDataset(cache)
    config = ARRunConfig(
        model=GPTConfig(
            dim=32,
            n_layer=2,
            n_head=2,
            multiple_of=16,
            token_dropout_p=0.1,
            resid_dropout_p=0.1,
            ffn_dropout_p=0.1,
            class_dropout_prob=0.1,
        ),
        layout=LayoutConfig(**layout),
        cache=str(cache),
        train=TrainConfig(
            steps=steps, batch_size=16, lr=3e-3, log_every=1, checkpoint_every=3, seed=1, out_dir=str(out_dir)
        ),
    )
    return ar_config_from_cache(config, dataset)


def logged(out_dir, key="model_loss"):
    return [json.loads(line)[key] for line in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


def test_cache_limit_trains_on_the_first_samples_only(token_cache, tmp_path, monkeypatch):
    assert len(TokenDataset(token_cache, limit=40)) == 40
    with pytest.raises(TokenCacheError, match="limit=513, but .* holds 512 samples"):
        TokenDataset(token_cache, limit=513)
    # The held-out samples never reach training.
    read = []
    batch = TokenDataset.batch
    monkeypatch.setattr(TokenDataset, "batch", lambda self, indices: read.append(indices) or batch(self, indices))
    limited = dataclasses.replace(tiny_config(token_cache, tmp_path, steps=6), cache_limit=40)
    recipes.train_ar(limited, progress=False)
    assert int(torch.cat(read).max()) < 40 < len(torch.cat(read))  # 6 batches of 16 drawn from the first 40


def test_first_losses_pinned_and_start_at_uniform(token_cache, tmp_path):
    recipes.train_ar(tiny_config(token_cache, tmp_path, steps=3), progress=False)
    losses = logged(tmp_path)
    # The zero-initialised head starts at the uniform distribution over the 32 codes.
    assert losses[0] == pytest.approx(torch.log(torch.tensor(32.0)).item(), abs=1e-4)
    assert losses == pytest.approx([3.46574, 3.42130, 3.30664], rel=1e-4)


@pytest.mark.parametrize("option", ["activation_checkpointing", "compile"])
def test_activation_checkpointing_and_compile_train_the_same_model(token_cache, tmp_path, option):
    configs = {name: tiny_config(token_cache, tmp_path / name, steps=3) for name in ("plain", option)}
    setattr(configs[option].train, option, True)
    for config in configs.values():
        if option == "compile":  # compiled dropout draws its own random numbers
            config.model.token_dropout_p = config.model.resid_dropout_p = config.model.ffn_dropout_p = 0.0
        recipes.train_ar(config, progress=False)
    # Recomputed blocks replay their dropout draws; compiled kernels round differently.
    assert logged(tmp_path / option) == pytest.approx(logged(tmp_path / "plain"), rel=1e-4)
    record = json.loads((tmp_path / option / "log.jsonl").read_text().splitlines()[-1])
    assert record["tokens_per_s"] > 0 and record["model_tflops"] > 0 and record["peak_rss_gib"] > 0
    saved = argen.load(tmp_path / option / "checkpoint").model.state_dict()  # the plain model's keys
    assert saved.keys() == argen.load(tmp_path / "plain" / "checkpoint").model.state_dict().keys()


def test_auto_precision_trains_in_what_this_machine_runs_faster(token_cache, tmp_path):
    from argen.precision import training_precision

    config = tiny_config(token_cache, tmp_path, steps=2)
    config.train.precision = "auto"
    recipes.train_ar(config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {record["precision"] for record in records} == {training_precision("cpu")} <= {"fp32", "bf16"}


@pytest.mark.parametrize("layout", [{}, {"order": "region", "parallel": 4}])
def test_resume_equals_uninterrupted(token_cache, tmp_path, layout):
    recipes.train_ar(tiny_config(token_cache, tmp_path / "full", **layout), progress=False)
    recipes.train_ar(tiny_config(token_cache, tmp_path / "split", steps=3, **layout), progress=False)
    meta_path = tmp_path / "split" / "checkpoint" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["train"]["steps"] = 6
    meta_path.write_text(json.dumps(meta))
    recipes.train_ar(tiny_config(token_cache, tmp_path / "split", **layout), progress=False)
    assert logged(tmp_path / "split") == logged(tmp_path / "full")
    full = argen.load(tmp_path / "full" / "checkpoint").model.state_dict()
    split = argen.load(tmp_path / "split" / "checkpoint").model.state_dict()
    assert all(torch.equal(full[k], split[k]) for k in full)


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_torchrun_two_ranks_match_one_process(token_cache, tmp_path, sharding, torchrun):
    common = [
        "--cache",
        str(token_cache),
        "model.dim=32",
        "model.n_layer=2",
        "model.n_head=2",
        "model.multiple_of=16",
        "train.steps=4",
        "train.batch_size=16",
        "train.lr=3e-3",
        "train.log_every=1",
        "train.seed=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARGEN_NO_PROGRESS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "argen.cli", "train", "--out", str(tmp_path / "one"), *common, "train.grad_accum=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [
            *torchrun(),
            "train",
            "--out",
            str(tmp_path / "two"),
            *common,
            f"train.fsdp={str(sharding == 'fsdp').lower()}",
            "train.checkpoint_every=2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr
    assert logged(tmp_path / "two") == pytest.approx(logged(tmp_path / "one"), rel=1e-5)
    one = argen.load(tmp_path / "one" / "checkpoint").model.state_dict()
    two = argen.load(tmp_path / "two" / "checkpoint").model.state_dict()
    assert all(torch.allclose(one[k], two[k], atol=1e-5) for k in one)
    # Resuming the 2-rank run from its step-2 checkpoint (whole optimizer state) repeats steps 3 and 4.
    checkpoint = tmp_path / "two" / "checkpoint"
    meta = json.loads((checkpoint / "config.json").read_text())
    assert meta["step"] == 4
    (tmp_path / "resumed").mkdir()
    resumed = subprocess.run(
        [
            *torchrun(),
            "train",
            "--out",
            str(tmp_path / "resumed"),
            *common,
            f"train.fsdp={str(sharding == 'fsdp').lower()}",
            "train.checkpoint_every=2",
            "train.steps=2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    meta_path = tmp_path / "resumed" / "checkpoint" / "config.json"
    saved = json.loads(meta_path.read_text())
    saved["config"]["train"]["steps"] = 4
    meta_path.write_text(json.dumps(saved))
    again = subprocess.run(
        [
            *torchrun(),
            "train",
            "--out",
            str(tmp_path / "resumed"),
            *common,
            f"train.fsdp={str(sharding == 'fsdp').lower()}",
            "train.checkpoint_every=2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert logged(tmp_path / "resumed") == pytest.approx(logged(tmp_path / "two"), rel=1e-5)


@pytest.mark.skipif(
    not os.environ.get("ARGEN_TEST_RESTARTS"),
    reason="opt-in (ARGEN_TEST_RESTARTS=1): on a busy "
    "2-core machine the restarted gloo group sometimes fails to meet again (seen in 3 of 8 runs)",
)
def test_torchrun_restarts_a_killed_rank_and_the_run_ends_as_if_uninterrupted(token_cache, tmp_path, torchrun):
    common = [
        "--cache",
        str(token_cache),
        "model.dim=32",
        "model.n_layer=2",
        "model.n_head=2",
        "model.multiple_of=16",
        "train.steps=60",
        "train.batch_size=16",
        "train.lr=3e-3",
        "train.log_every=1",
        "train.seed=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARGEN_NO_PROGRESS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "argen.cli", "train", "--out", str(tmp_path / "one"), *common, "train.grad_accum=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    # Elastic (c10d) rendezvous, as across nodes: the restarted group meets again at the same endpoint.
    launcher = [argument.replace("--master_port=", "--rdzv-endpoint=127.0.0.1:") for argument in torchrun()]
    launcher[launcher.index("-m", 3) : launcher.index("-m", 3)] = ["--rdzv-backend=c10d", "--max-restarts=3"]
    run = subprocess.Popen(
        [*launcher, "train", "--out", str(tmp_path / "two"), *common, "train.checkpoint_every=2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "two" / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 5) and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    assert len(workers) == 2, "the two ranks should be running"
    os.kill(int(workers[-1]), signal.SIGKILL)  # rank 1 dies mid-run; torchrun restarts both from the checkpoint
    _, errors = run.communicate(timeout=240)
    assert run.returncode == 0, errors[-3000:]
    assert "exitcode: -9" in errors  # torchrun saw the killed rank (and restarted the group: the run went on)
    assert logged(tmp_path / "two") == pytest.approx(logged(tmp_path / "one"), rel=1e-5)


def test_cli_sample_pipeline_and_save_ids(token_cache, tmp_path):
    assert (
        main(
            [
                "train",
                "--cache",
                str(token_cache),
                "--out",
                str(tmp_path / "run"),
                "model.dim=32",
                "model.n_layer=2",
                "model.n_head=2",
                "model.multiple_of=16",
                "train.steps=2",
                "train.batch_size=16",
            ]
        )
        == 0
    )
    model_dir = tmp_path / "run" / "checkpoint"
    ids_file = tmp_path / "ids.json"
    assert (
        main(
            [
                "sample",
                "--model",
                str(model_dir),
                "--classes",
                "3,7",
                "--greedy",
                "--save-ids",
                str(ids_file),
                "--out",
                str(tmp_path / "samples"),
            ]
        )
        == 0
    )
    saved = json.loads(ids_file.read_text())
    assert saved["classes"] == [3, 7] and saved["grid"] == [8, 8]
    pipeline = argen.load(model_dir)
    greedy = pipeline.generate_ids([3, 7], greedy=True).visual
    assert greedy.tolist() == saved["ids"]
    assert (tmp_path / "samples" / "samples.png").is_file()
    images = pipeline([1, 2], generator=torch.Generator().manual_seed(0), output_type="np")
    assert images.shape == (2, 16, 16, 1) and images.dtype.name == "uint8"
    again = pipeline([1, 2], generator=torch.Generator().manual_seed(0), output_type="np")
    assert (images == again).all()
    saved_dir = pipeline.save_pretrained(tmp_path / "pipe")
    reloaded = argen.load(saved_dir)
    assert torch.equal(reloaded.generate_ids([3, 7], greedy=True).visual, greedy)
    with pytest.raises(ValueError, match=r"class labels must be integers in \[0, 10\)"):
        pipeline([10])
    with pytest.raises(ValueError, match="unknown sampling option"):
        pipeline.generate_ids([1], temprature=2.0)


def test_ema_weights_and_sample_grids(token_cache, tmp_path):
    config = tiny_config(token_cache, tmp_path, steps=4)
    config.train.ema_decay, config.train.sample_every = 0.5, 2
    recipes.train_ar(config, progress=False)
    assert all((tmp_path / "samples" / f"step-000000{step}.png").is_file() for step in (2, 4))
    raw = argen.load(tmp_path / "checkpoint").model.state_dict()
    ema = argen.load(tmp_path / "checkpoint", ema=True).model.state_dict()
    assert not torch.equal(raw["output.weight"], ema["output.weight"])
    # EMA with decay 1/2 sits between the start (zero head) and the trained head.
    assert ema["output.weight"].abs().sum() < raw["output.weight"].abs().sum()
    # Shipped with its EMA weights and the sampling settings chosen for it, which the pipeline then carries.
    shipped = tmp_path / "shipped"
    subprocess.run(
        [
            sys.executable,
            "scripts/ship.py",
            str(tmp_path / "checkpoint"),
            str(shipped),
            "--ema",
            "--cfg",
            "3",
            "--temperature",
            "0.9",
        ],
        check=True,
        cwd=Path(__file__).parents[1],
    )
    pipeline = argen.load(shipped)
    assert torch.equal(pipeline.model.state_dict()["output.weight"], ema["output.weight"])
    assert pipeline.tuned_sampling == {"guidance": 3.0, "temperature": 0.9}
    assert argen.load(pipeline.save_pretrained(tmp_path / "saved")).tuned_sampling == pipeline.tuned_sampling
    assert argen.load(tmp_path / "checkpoint").tuned_sampling == {}


def test_save_ids_without_tokenizer(token_cache, tmp_path):
    recipes.train_ar(tiny_config(token_cache, tmp_path / "run", steps=2), progress=False)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((tmp_path / "run" / "checkpoint" / name).read_bytes())
    meta = json.loads((bare / "config.json").read_text())
    meta.pop("tokenizer")
    (bare / "config.json").write_text(json.dumps(meta))
    ids_file = tmp_path / "ids.json"
    assert main(["sample", "--model", str(bare), "--classes", "1,2", "--greedy", "--save-ids", str(ids_file)]) == 0
    assert json.loads(ids_file.read_text())["grid"] == [8, 8]
    assert main(["sample", "--model", str(bare), "--classes", "1"]) == 2


def test_cli_sample_parallel_model_checks_k_and_saves_grid_order(token_cache, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--cache",
                str(token_cache),
                "--out",
                str(tmp_path / "run"),
                "model.dim=32",
                "model.n_layer=2",
                "model.n_head=2",
                "model.multiple_of=16",
                "train.steps=2",
                "train.batch_size=16",
                "layout.order=region",
                "layout.parallel=4",
            ]
        )
        == 0
    )
    model_dir = tmp_path / "run" / "checkpoint"
    ids_file = tmp_path / "ids.json"
    assert (
        main(
            [
                "sample",
                "--model",
                str(model_dir),
                "--parallel",
                "4",
                "--classes",
                "3,7",
                "--greedy",
                "--save-ids",
                str(ids_file),
                "--out",
                str(tmp_path / "samples"),
            ]
        )
        == 0
    )
    assert "parallel 4" in capsys.readouterr().out
    pipeline = argen.load(model_dir)
    greedy = pipeline.generate_ids([3, 7], greedy=True).visual  # (2, 8, 8) grid order
    assert json.loads(ids_file.read_text())["ids"] == greedy.tolist()
    sampling = json.loads((tmp_path / "samples" / "sampling.json").read_text())
    assert (sampling["steps"], sampling["parallel"], sampling["order"]) == (4 + 16 - 1, 4, "region")
    assert main(["sample", "--model", str(model_dir), "--parallel", "16", "--classes", "1"]) == 2
    assert "trained for 4 token(s) per step" in capsys.readouterr().err
