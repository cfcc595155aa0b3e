"""Config: presets, YAML, dotted overrides, unknown keys, round trip through JSON."""

import json

import pytest

from argen.config import (
    ARRunConfig,
    ConfigError,
    GPT_PRESETS,
    GPTConfig,
    TokenizerRunConfig,
    build,
    from_dict,
    parse_overrides,
    preset,
    to_dict,
)


def test_overrides_are_typed_and_nested():
    config = build(TokenizerRunConfig, overrides=["train.lr=3e-4", "model.ch_mult=[1,2]", "data.flip=true"])
    assert config.train.lr == 3e-4 and config.model.ch_mult == (1, 2) and config.data.flip is True
    nested = parse_overrides(["a.b.c=1", "a.d=x"])  # each value its text as written and its YAML reading
    assert nested == {"a": {"b": {"c": "1"}, "d": "x"}} and nested["a"]["b"]["c"].parsed == 1


def test_unknown_key_lists_valid_keys():
    with pytest.raises(
        ConfigError,
        match=r"unknown config key\(s\) train.learning_rate; valid keys under train: "
        r"steps, batch_size",
    ):
        build(TokenizerRunConfig, overrides=["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="unknown config key"):
        build(ARRunConfig, overrides=["modle.dim=3"])


def test_bad_values_and_malformed_overrides():
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        build(TokenizerRunConfig, overrides=["train.steps=abc"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["train.lr"])


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  dim: 128\ntrain:\n  lr: 0.01\n")
    config = build(ARRunConfig, yaml_path=path, overrides=["train.lr=0.02"])
    assert config.model.dim == 128 and config.train.lr == 0.02
    with pytest.raises(ConfigError, match="does not exist"):
        build(ARRunConfig, yaml_path=tmp_path / "missing.yaml")


def test_presets_and_json_round_trip():
    config = ARRunConfig(model=preset(GPT_PRESETS, "GPT-B", GPTConfig))
    assert config.model.dim == 768 and config.model.n_layer == 12
    rebuilt = from_dict(ARRunConfig, json.loads(json.dumps(to_dict(config))))
    assert rebuilt == config
    with pytest.raises(ConfigError, match="unknown preset 'GPT-Q'; known presets: GPT-B"):
        preset(GPT_PRESETS, "GPT-Q", GPTConfig)
