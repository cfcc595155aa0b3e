"""Prologue: the tokenizer's prologue head, stage-1 training (joint and Post), prologue ids in the token cache."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import argen
from tiny_tokenizer import tiny_tokenizer
from argen.cli import main
from argen.config import (
    ConfigError,
    DataConfig,
    GPTConfig,
    PrologueTrainConfig,
    TokenizerRunConfig,
    TrainConfig,
    VQConfig,
    VQLossConfig,
)
from argen.data import load_dataset
from argen.data.token_cache import TokenDataset
from argen.io.load import load_tokenizer
from argen.layout import PROLOGUE, SEPARATOR, VISUAL, Layout
from argen.model.transformer import Transformer
from argen.tokenizer.vq import VQModel
from argen.train import recipes
from argen.train.prologue_task import PRIOR, PrologueTask, prior_layout, resolve_prior_vocab
from argen.train.tokenizer_task import VQTask

VISUAL_ONLY = VQConfig(
    image_size=16,
    in_channels=1,
    ch=32,
    ch_mult=(1, 2),
    num_res_blocks=1,
    z_channels=16,
    codebook_size=32,
    codebook_dim=4,
)
TINY = dataclasses.replace(
    VISUAL_ONLY,
    prologue_tokens=4,
    prologue_codebook_size=16,
    prologue_codebook_dim=4,
    prologue_width=32,
    prologue_layers=1,
    prologue_heads=2,
)
TINY_PRIOR = GPTConfig(dim=32, n_layer=1, n_head=2, multiple_of=16, num_classes=1, class_dropout_prob=0.0, vocab_size=0)
PROLOGUE_ARGS = [
    "model.prologue_tokens=4",
    "model.prologue_codebook_size=16",
    "model.prologue_codebook_dim=4",
    "model.prologue_width=32",
    "model.prologue_layers=1",
    "model.prologue_heads=2",
    "prologue.prior.dim=32",
    "prologue.prior.n_layer=1",
    "prologue.prior.n_head=2",
    "prologue.prior.multiple_of=16",
]


def images(count=6, seed=0):
    return torch.rand(count, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def make_task(seed=0, visual_dropout=0.5):
    torch.manual_seed(seed)
    model = VQModel(TINY)
    layout = prior_layout(TINY)
    prior = Transformer(dataclasses.replace(TINY_PRIOR, vocab_size=layout.vocab_size))
    torch.nn.init.normal_(prior.output.weight, std=0.02)  # as if trained: a zero head passes no gradient
    config = PrologueTrainConfig(visual_dropout=visual_dropout)
    return PrologueTask(model, prior, layout, config, VQTask(model, VQLossConfig())), model, prior


def run_config(out_dir, steps=6, model=TINY, **prologue):
    return TokenizerRunConfig(
        model=model,
        loss=VQLossConfig(),
        prologue=PrologueTrainConfig(**{"prior": TINY_PRIOR, **prologue}),
        data=DataConfig(name="synthetic", image_size=16, channels=1, limit=64),
        train=TrainConfig(
            steps=steps, batch_size=16, lr=1e-3, weight_decay=0.0, log_every=1, checkpoint_every=3, out_dir=str(out_dir)
        ),
    )


def logged(out_dir, key):
    return [json.loads(line)[key] for line in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


def gradients(module, prefix=""):
    return {prefix + name: p.grad for name, p in module.named_parameters()}


# ------------------------------------------------------------------------------------------------
# the head


def test_ar_loss_reaches_queries_codebook_and_encoder_but_never_decoder_or_prior():
    task, model, prior = make_task()
    _, quantizer = model(images())
    dropped = torch.tensor([True, False, True, False, False, False])
    loss, logs = task.prior_cross_entropy(
        prior, quantizer.ids, quantizer.prologue.ids, dropped, quantizer.prologue.one_hot
    )
    loss.backward()
    grads = gradients(model)
    for name in (
        "prologue.queries",
        "prologue.quantize.codebook",
        "prologue.quantize.projection.weight",
        "prologue.feature_projection.weight",
        "encoder.conv_in.weight",
        "encoder.conv_out.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    untouched = [
        n for n, g in grads.items() if n.startswith(("decoder.", "post_quant_conv.", "quantize.", "quant_conv."))
    ]
    assert untouched and all(grads[n] is None for n in untouched)
    assert all(p.grad is None for p in prior.parameters())  # frozen for the tokenizer update
    assert set(logs) >= {"ar_loss", "ar_prologue_loss", "ar_visual_loss", "ar_token_accuracy"}


def test_straight_through_one_hot_is_hard_forward_and_soft_backward():
    _, model, _ = make_task()
    output = model(images())[1].prologue
    assert torch.equal(output.one_hot, torch.nn.functional.one_hot(output.ids, 16).float())
    assert output.one_hot.requires_grad and output.ids.shape == (6, 4) and int(output.ids.max()) < 16


def test_decoder_never_reads_prologue_ids():
    _, model, _ = make_task()
    batch = images()
    reconstruction, quantizer = model(batch)
    with torch.no_grad():  # other prologue weights give other prologue ids ...
        for parameter in model.prologue.parameters():
            parameter.normal_()
    changed_reconstruction, changed = model(batch)
    assert not torch.equal(quantizer.prologue.ids, changed.prologue.ids)
    assert torch.equal(reconstruction, changed_reconstruction)  # ... and the same images
    # Decoding equals that of the same weights without a prologue head (whose keys are exactly LlamaGen's).
    plain = VQModel(VISUAL_ONLY)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prologue.")})
    assert torch.equal(plain.decode(quantizer.ids), model.decode(quantizer.ids))
    assert not any(key.startswith("prologue.") for key in plain.state_dict())


@pytest.mark.parametrize("order", ["raster", "region"])
def test_prior_logits_are_masked_to_each_segment(order):
    layout = prior_layout(TINY)
    if order == "region":  # the mask follows any Layout, e.g. PAR's groups and transition slots
        layout = Layout(dataclasses.replace(layout.config, order="region", parallel=4), 32)
        assert layout.n_transition > 0
    allowed = layout.target_vocab_mask
    targets = layout.targets_index
    segments = layout.segments
    for slot, target in enumerate(targets.tolist()):
        if target < 0:
            assert allowed[slot].all()
            continue
        segment = layout.segment_of(target)
        expected = torch.zeros(layout.vocab_size, dtype=torch.bool)
        expected[segment.offset : segment.offset + segment.vocab] = True
        assert torch.equal(allowed[slot], expected), slot
    assert allowed[targets == segments[SEPARATOR].start].sum() == 1
    assert segments[PROLOGUE].vocab == 16 and segments[VISUAL].vocab == 32


def test_visual_dropout_replaces_every_visual_input_by_the_separator():
    task, model, prior = make_task(visual_dropout=1.0)
    seen = []
    prior.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    quantizer = model(images(2))[1]
    task.prior_cross_entropy(prior, quantizer.ids, quantizer.prologue.ids, torch.tensor([True, False]))
    ids = seen[0]  # (2, L)
    visual = task.visual_inputs
    assert (ids[0, visual] == task.separator_id).all()
    assert not (ids[1, visual] == task.separator_id).any()
    assert (ids[0, task.prologue_slots] < task.separator_id).all()


def test_config_is_validated():
    with pytest.raises(ConfigError, match="prologue_width=30 must be divisible"):
        VQModel(dataclasses.replace(TINY, prologue_width=30, prologue_heads=4))
    with pytest.raises(ConfigError, match="unconditional"):
        recipes.train_tokenizer(run_config("unused", prior=dataclasses.replace(TINY_PRIOR, num_classes=10)))
    with pytest.raises(ConfigError, match="needs model.prologue_tokens > 0"):
        recipes.train_tokenizer(run_config("unused", model=VISUAL_ONLY, visual_tokenizer="somewhere"))
    with pytest.raises(ConfigError, match="vocab_size=7 but the prior's layout needs 49"):
        resolve_prior_vocab(run_config("unused", prior=dataclasses.replace(TINY_PRIOR, vocab_size=7)))


# ------------------------------------------------------------------------------------------------
# stage-1 training


def test_joint_training_resumes_exactly(tmp_path):
    recipes.train_tokenizer(run_config(tmp_path / "full"), progress=False)
    recipes.train_tokenizer(run_config(tmp_path / "split", steps=3), progress=False)
    meta_path = tmp_path / "split" / "checkpoint" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["train"]["steps"] = 6  # the same run, asked to go further
    meta_path.write_text(json.dumps(meta))
    recipes.train_tokenizer(run_config(tmp_path / "split"), progress=False)
    for key in ("tokenizer_loss", "ar_loss", "prior_loss", "prior_ar_visual_loss"):
        assert logged(tmp_path / "split", key) == logged(tmp_path / "full", key), key
    assert logged(tmp_path / "full", "prior_loss")[-1] < logged(tmp_path / "full", "prior_loss")[0]
    full, _ = load_tokenizer(tmp_path / "full" / "checkpoint")
    split, _ = load_tokenizer(tmp_path / "split" / "checkpoint")
    for (key, a), b in zip(full.state_dict().items(), split.state_dict().values()):
        assert torch.equal(a, b), key
    priors = [
        torch.load(tmp_path / run / "checkpoint" / "trainer_state.pt")["modules"][PRIOR] for run in ("full", "split")
    ]
    assert priors[0].keys() == priors[1].keys() and all(torch.equal(priors[0][k], priors[1][k]) for k in priors[0])


def test_post_variant_trains_only_the_prologue_path(tmp_path):
    assert main(["tokenizer", "train", "--out", str(tmp_path / "visual"), *tiny_tokenizer(steps=1)]) == 0
    visual = tmp_path / "visual" / "checkpoint"
    post = run_config(tmp_path / "post", steps=2, visual_tokenizer=str(visual))
    recipes.train_tokenizer(post, progress=False)
    before, _ = load_tokenizer(visual)
    after, _ = load_tokenizer(tmp_path / "post" / "checkpoint")
    trained = after.state_dict()
    for key, value in before.state_dict().items():
        assert torch.equal(value, trained[key]), key  # the visual path is frozen
    assert "reconstruction_loss" not in json.loads((tmp_path / "post" / "log.jsonl").read_text().splitlines()[0])
    torch.manual_seed(0)
    fresh = VQModel(TINY)  # the run's initial model (train.seed=0)
    assert not torch.equal(fresh.state_dict()["prologue.queries"], trained["prologue.queries"])
    with pytest.raises(ConfigError, match="model.codebook_size: 32 in .*, 64 here"):
        recipes.train_tokenizer(
            run_config(
                tmp_path / "bad", model=dataclasses.replace(TINY, codebook_size=64), visual_tokenizer=str(visual)
            ),
            progress=False,
        )


def test_joint_fine_tuning_starts_from_a_visual_tokenizer(tmp_path):
    assert main(["tokenizer", "train", "--out", str(tmp_path / "visual"), *tiny_tokenizer(steps=1)]) == 0
    visual = tmp_path / "visual" / "checkpoint"
    start, _ = load_tokenizer(visual)
    joint = run_config(tmp_path / "joint", steps=1, visual_tokenizer=str(visual), freeze_visual=False)
    recipes.train_tokenizer(joint, progress=False)
    after, _ = load_tokenizer(tmp_path / "joint" / "checkpoint")
    trained = after.state_dict()
    changed = [key for key, value in start.state_dict().items() if not torch.equal(value, trained[key])]
    assert "encoder.conv_in.weight" in changed and "decoder.conv_out.weight" in changed  # everything trains
    # One step from the visual tokenizer's weights, not from a fresh model's.
    torch.manual_seed(0)
    fresh = VQModel(TINY).state_dict()["encoder.conv_in.weight"]
    moved = (trained["encoder.conv_in.weight"] - start.state_dict()["encoder.conv_in.weight"]).abs().max()
    assert moved < (trained["encoder.conv_in.weight"] - fresh).abs().max()
    with pytest.raises(ConfigError, match="leave train.init_from empty"):
        config = run_config(tmp_path / "both", visual_tokenizer=str(visual))
        recipes.train_tokenizer(
            dataclasses.replace(config, train=dataclasses.replace(config.train, init_from=str(visual)))
        )


def test_dead_prologue_codes_restart_onto_current_latents():
    torch.manual_seed(0)
    quantizer = VQModel(TINY).prologue.quantize
    latents = torch.nn.functional.normalize(torch.randn(40, TINY.prologue_codebook_dim), dim=-1)
    quantizer.record_usage(torch.tensor([3, 3, 5]))
    assert quantizer.restart_dead_codes(latents) == TINY.prologue_codebook_size - 2
    codes = torch.nn.functional.normalize(quantizer.codebook.detach(), dim=-1)
    dead = [k for k in range(TINY.prologue_codebook_size) if k not in (3, 5)]
    # Every restarted code is one of the latents, so each such latent now quantises to a code of its own.
    assert ((codes[dead] @ latents.t()).max(1).values > 1 - 1e-5).all()


def test_prologue_entropy_loss_rewards_spread_codes():
    torch.manual_seed(0)
    quantize = VQModel(TINY).prologue.quantize
    alike = quantize(torch.ones(8, 4, TINY.prologue_width))  # every latent the same: one code for all
    spread = quantize(torch.randn(8, 4, TINY.prologue_width) * 5)
    assert alike.usage < spread.usage and alike.entropy_loss > spread.entropy_loss
    with pytest.raises(ConfigError, match="prologue.entropy_weight must be >= 0"):
        recipes.train_tokenizer(run_config("unused", entropy_weight=-1.0))


def test_older_tokenizer_checkpoints_load_and_resume(tmp_path):
    shipped = Path(__file__).parents[1] / "checkpoints" / "fmnist32" / "tokenizer"
    model, config = load_tokenizer(shipped)  # written before the prologue options existed (strict load)
    assert model.prologue is None and config.model.prologue_tokens == 0
    plain = dataclasses.replace(run_config(tmp_path, steps=2, model=VISUAL_ONLY), prologue=PrologueTrainConfig())
    recipes.train_tokenizer(plain, progress=False)
    meta_path = tmp_path / "checkpoint" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["prologue"]  # as an older checkpoint has it
    meta["config"]["model"] = {k: v for k, v in meta["config"]["model"].items() if not k.startswith("prologue_")}
    meta_path.write_text(json.dumps(meta))
    recipes.train_tokenizer(plain, progress=False)  # resumes (nothing left to do) instead of refusing
    assert len(logged(tmp_path, "tokenizer_loss")) == 2


# ------------------------------------------------------------------------------------------------
# token cache and the class-conditional AR


def test_tokenize_writes_prologue_ids_and_an_ar_trains_on_them(tmp_path):
    run = tmp_path / "tokenizer"
    assert main(["tokenizer", "train", "--out", str(run), *tiny_tokenizer(steps=1), *PROLOGUE_ARGS]) == 0
    assert (
        main(["tokenize", "--tokenizer", str(run / "checkpoint"), "--out", str(tmp_path / "cache"), "--limit", "40"])
        == 0
    )
    cache = TokenDataset(tmp_path / "cache")
    prologue_ids = cache.column("prologue_ids")
    assert prologue_ids.shape == (40, 4) and int(prologue_ids.min()) >= 0 and int(prologue_ids.max()) < 16
    assert cache.manifest["prologue_length"] == 4 and cache.manifest["tokenizer"]["prologue_codebook_size"] == 16
    model, _ = load_tokenizer(run / "checkpoint")
    dataset = load_dataset(DataConfig(name="synthetic", image_size=16, channels=1, limit=40), training=False)
    with torch.no_grad():
        encoded = model.encode_tokens(dataset.batch(torch.arange(40))["images"])
    batch = cache.batch(torch.arange(40))
    assert torch.equal(encoded["prologue_ids"], batch["prologue_ids"]) and torch.equal(encoded["ids"], batch["ids"])
    assert torch.equal(encoded["ids"], model.encode(dataset.batch(torch.arange(40))["images"]))
    assert main(["probe", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "probe.json")]) == 0
    assert json.loads((tmp_path / "probe.json").read_text())["prologue"]["features"] == 4 * 16

    ar = tmp_path / "ar"
    assert (
        main(
            [
                "train",
                "--cache",
                str(tmp_path / "cache"),
                "--out",
                str(ar),
                "--preset",
                "GPT-T",
                "train.steps=2",
                "train.batch_size=8",
                "train.warmup_steps=0",
            ]
        )
        == 0
    )
    meta = json.loads((ar / "checkpoint" / "config.json").read_text())
    assert meta["config"]["layout"]["prologue_length"] == 4 and meta["config"]["layout"]["prologue_vocab"] == 16
    assert meta["config"]["model"]["vocab_size"] == 32 + 16 + 1
    pipeline = argen.load(ar / "checkpoint", tokenizer=run / "checkpoint")
    generated = pipeline.generate_ids([1, 2], generator=torch.Generator().manual_seed(0))
    assert generated.prologue.shape == (2, 4) and generated.visual.shape == (2, 8, 8)
    assert pipeline.decode(generated.visual).shape == (2, 1, 16, 16)
    # Fixed-prologue resampling through the CLI: a row per cache image (its reconstruction, then samples), with
    # split guidance and temperature.
    out = tmp_path / "resampled"
    assert (
        main(
            [
                "sample",
                "--model",
                str(ar / "checkpoint"),
                "--fixed-prologue",
                str(tmp_path / "cache"),
                "--count",
                "3",
                "--columns",
                "4",
                "--cfg",
                "2",
                "--cfg-schedule",
                "cosine",
                "--prologue-cfg",
                "1.5",
                "--prologue-temperature",
                "0.7",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from PIL import Image

    with Image.open(out / "fixed-prologue.png") as grid:
        assert grid.height * 4 > grid.width * 3 * 0.9  # 3 rows of 4 tiles
    kept = pipeline.generate_ids(
        [1, 1],
        forced={"prologue": prologue_ids[:2].long()},
        guidance={"prologue": 1.5, "visual": 2.0},
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(kept.prologue, prologue_ids[:2].long())


def test_torchrun_two_ranks_match_one_process(tmp_path, torchrun):
    common = [*tiny_tokenizer(), *PROLOGUE_ARGS, "train.lr=1e-3", "train.log_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARGEN_NO_PROGRESS": "1"}
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "argen.cli",
            "tokenizer",
            "train",
            "--out",
            str(tmp_path / "one"),
            *common,
            "train.grad_accum=2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [*torchrun(), "tokenizer", "train", "--out", str(tmp_path / "two"), *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr
    for key in ("tokenizer_loss", "ar_loss", "prior_loss"):
        assert logged(tmp_path / "two", key) == pytest.approx(logged(tmp_path / "one", key), rel=1e-4), key


def test_probe_separates_a_class_coded_prefix_from_noise(tmp_path):
    labels = torch.arange(200) % 4
    generator = torch.Generator().manual_seed(0)
    prologue = torch.randint(16, (200, 4), generator=generator)
    prologue[:, 2] = labels * 3  # one prologue position names the class
    tensors = {
        "ids": torch.randint(32, (200, 8, 8), generator=generator).to(torch.int16),
        "labels": labels,
        "prologue_ids": prologue.to(torch.int32),
    }
    save_file(tensors, str(tmp_path / "shard-00000.safetensors"))
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "format": "argen-token-cache-1",
                "count": 200,
                "grid": [8, 8],
                "prologue_length": 4,
                "tokenizer": {"codebook_size": 32, "prologue_codebook_size": 16},
                "shards": [{"file": "shard-00000.safetensors", "count": 200}],
            }
        )
    )
    assert main(["probe", "--cache", str(tmp_path), "--out", str(tmp_path / "probe.json")]) == 0
    result = json.loads((tmp_path / "probe.json").read_text())
    assert result["prologue"]["test_accuracy"] == 1.0 and result["first_visual"]["test_accuracy"] < 0.6
    assert result["test_images"] == 40 and result["prologue"]["features"] == 4 * 16
    assert result["first_visual"]["features"] == 4 * 32


def test_split_guidance_from_the_command_line_as_the_paper_sets_it(tmp_path):
    """A constant s_p < 1 on prologue tokens and a cosine ramp of power p on visual ones (--cfg-power)."""
    out = tmp_path / "samples"
    model = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64" / "prologue-ar"
    assert (
        main(
            [
                "sample",
                "--model",
                str(model),
                "--count",
                "2",
                "--cfg",
                "3",
                "--cfg-schedule",
                "cosine",
                "--cfg-power",
                "0.25",
                "--prologue-cfg",
                "0.7",
                "--dtype",
                "fp32",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    recorded = json.loads((out / "sampling.json").read_text())
    assert recorded["guidance"] == {"visual": 3.0, "prologue": 0.7}
    assert recorded["guidance_schedule"] == {"visual": "cosine", "prologue": "constant"}
    assert recorded["guidance_power"] == {"visual": 0.25, "prologue": 1.0}
