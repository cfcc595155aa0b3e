"""Every YAML file in configs/ builds through the command that uses it, and its model can be instantiated.

A config is matched to its command by the RULES below (file-name suffix -> argen command line). The config is
merged exactly as that command merges it (`argen ... --config FILE --print-config`, which applies the preset,
the YAML and the command's own checks), and its model is built on the meta device (no memory, no weights).
A file that no rule matches fails, so a new kind of config needs a rule here. A file whose header comment shows
the command with `--preset NAME` (the ImageNet recipes) is built with that preset instead of the rule's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

from argen import cli
from argen.config import ARRunConfig, ConfigError, RefinerRunConfig, TokenizerRunConfig, build_run, from_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _tokenizer_models(config: TokenizerRunConfig) -> list[torch.nn.Module]:
    from argen.io.load import build_tokenizer
    from argen.model.transformer import Transformer
    from argen.train.prologue_task import resolve_prior_vocab

    models = [build_tokenizer(config.model)]  # an image tokenizer, or a causal 3D one
    if config.model.prologue_tokens > 0:  # Prologue stage 1 also trains its unconditional prior
        models.append(Transformer(resolve_prior_vocab(config).prologue.prior))
    return models


def _ar_models(config: ARRunConfig) -> list[torch.nn.Module]:
    from argen.io.load import build_ar

    # The token cache sets grid, vocabulary and classes at training time; the config's own values stand in.
    _, model = build_ar(config, config.model.vocab_size)
    return [model]


def _refiner_models(config: RefinerRunConfig) -> list[torch.nn.Module]:
    from argen.model.refiner import Refiner

    # The clusters table sets the coarse vocabulary at training time; a stand-in table of the preset's codes.
    return [Refiner(config.model, torch.arange(16384, device="cpu") % config.model.vocab_size)]


def _classifier_models(config: Any) -> list[torch.nn.Module]:
    from argen.eval.features import Classifier

    assert (config.data.image_size, config.data.channels) == (config.model.image_size, config.model.in_channels)
    return [Classifier(config.model)]


def _classifier_config() -> type:
    from argen.train.classifier_task import ClassifierRunConfig

    return ClassifierRunConfig


# suffix -> (the command that reads such a file, its run-config class, what builds its models)
RULES: dict[str, tuple[list[str], Callable[[], type], Callable[[Any], list[torch.nn.Module]]]] = {
    "-tokenizer.yaml": (["tokenizer", "train", "--preset", "VQ-CPU-32"], lambda: TokenizerRunConfig, _tokenizer_models),
    "-prologue.yaml": (["tokenizer", "train", "--preset", "VQ-CPU-32"], lambda: TokenizerRunConfig, _tokenizer_models),
    "-stage1.yaml": (["tokenizer", "train", "--preset", "VQ-CPU-32"], lambda: TokenizerRunConfig, _tokenizer_models),
    "-ar.yaml": (["train", "--preset", "GPT-S"], lambda: ARRunConfig, _ar_models),
    "-refiner.yaml": (["ctf", "train-refiner", "--preset", "GPT-S"], lambda: RefinerRunConfig, _refiner_models),
    "-classifier.yaml": (["eval", "train-classifier"], _classifier_config, _classifier_models),
}


def _rule(path: Path):
    matches = [suffix for suffix in RULES if path.name.endswith(suffix)]
    assert len(matches) == 1, (
        f"{path.name}: {len(matches)} rules match; add one to RULES in {__file__} (suffixes: {', '.join(RULES)})"
    )
    return RULES[matches[0]]


def _shipped_paths(data: Any) -> list[str]:
    """Every string value of the config that names a shipped checkpoint (checkpoints/...)."""
    if isinstance(data, dict):
        return [path for value in data.values() for path in _shipped_paths(value)]
    return [data] if isinstance(data, str) and data.startswith("checkpoints/") else []


def test_there_are_configs():
    assert CONFIGS, "no configs/*.yaml found"


@pytest.mark.parametrize("path", CONFIGS, ids=[str(path.relative_to(ROOT / "configs")) for path in CONFIGS])
def test_config_builds_and_its_model_instantiates(path, monkeypatch):
    command, config_class, build_models = _rule(path)
    header = re.search(r"^#\s*argen [^\n]*--preset (\S+)", path.read_text(), re.MULTILINE)
    if header:  # the preset the file's own command uses
        command = [*command[: command.index("--preset") + 1], header.group(1)]
    monkeypatch.chdir(ROOT)  # configs name repository paths (checkpoints/..., runs/...) relative to the root
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = cli.main([*command, "--config", str(path.relative_to(ROOT)), "--print-config"])
    assert code == 0, f"argen {' '.join(command)} --config {path.name} --print-config failed"
    merged = yaml.safe_load(output.getvalue())
    config = from_dict(config_class(), merged)
    with torch.device("meta"):
        models = build_models(config)
    assert all(sum(p.numel() for p in model.parameters()) > 0 for model in models)
    for shipped in _shipped_paths(merged):
        assert (ROOT / shipped).exists(), f"{path.name} names {shipped}, which is not in the repository"


def test_a_run_config_takes_the_preset_then_what_is_derived_then_the_yaml_then_the_overrides(tmp_path):
    """build_run's precedence: preset < derived (e.g. from the token cache) < YAML < key=value overrides."""
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  n_layer: 3\n  n_head: 4\n")

    def derive(config: ARRunConfig, explicit: dict) -> ARRunConfig:  # what a token cache would fix
        assert explicit["model"]["n_layer"] == 3  # derive sees the explicit settings (to find the cache)
        return dataclasses.replace(
            config, model=dataclasses.replace(config.model, n_layer=5, n_head=6, num_classes=7, vocab_size=64)
        )

    config = build_run(ARRunConfig, "GPT-B", path, ["model.n_head=2", "model.vocab_size=32"], derive)
    model = config.model
    assert model.dim == 768  # the preset's, set by nothing after it
    assert model.num_classes == 7  # derived over the preset's 1000
    assert model.n_layer == 3  # the YAML's over the derived 5
    assert model.n_head == 2 and model.vocab_size == 32  # the overrides' over the YAML's and the derived values


def test_a_text_field_takes_an_override_as_written_and_other_fields_its_yaml_value():
    """`--out yes` or `cache=007` are paths, not YAML's true and 7; numbers and lists still read as YAML."""
    config = build_run(
        ARRunConfig,
        overrides=[
            "cache=007",
            "train.out_dir=yes",
            "coarse_table=on",
            "train.lr=3e-4",
            "layout.grid=[4, 4]",
            "train.steps=12",
            "train.init_from=1e3",
        ],
    )
    assert (config.cache, config.train.out_dir, config.coarse_table) == ("007", "yes", "on")
    assert config.train.init_from == "1e3" and config.train.lr == 3e-4 and config.train.steps == 12
    assert tuple(config.layout.grid) == (4, 4)


def test_a_setting_that_fits_only_the_derived_values_is_checked_against_them():
    """The config is built once, after derivation: regions of a video grid (from the cache) are valid there, and
    refused, naming the field, where the grid is the default image grid."""
    video = ["layout.order=region", "layout.regions=[1,2,2]", "layout.parallel=4"]

    def from_video_cache(base: ARRunConfig, explicit: dict) -> ARRunConfig:
        return dataclasses.replace(base, layout=dataclasses.replace(base.layout, grid=(4, 8, 8)))

    assert build_run(ARRunConfig, overrides=video, derive=from_video_cache).layout.region_counts() == (1, 2, 2)
    with pytest.raises(ConfigError, match=r"layout.regions \(1, 2, 2\) must give a positive count per grid axis"):
        build_run(ARRunConfig, overrides=video)


@pytest.mark.parametrize(
    "command, message",
    [
        (["tokenizer", "train", "model.ch=48"], "GroupNorm uses 32 groups for model.ch=48"),
        (["train", "model.dim=100", "model.n_head=3"], "dim (100) must be divisible by n_head (3)"),
        (["train", "layout.parallel=3"], "layout.parallel=3 must divide the 64 visual tokens"),
        (["eval", "train-classifier", "shift=40"], "shift must be in [0, model.image_size=32)"),
    ],
)
def test_print_config_refuses_what_a_run_would_refuse(command, message, capsys):
    assert cli.main([*command, "--print-config"]) == 2
    assert message in capsys.readouterr().err
