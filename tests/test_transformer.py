"""Transformer, RoPE and KV cache: LlamaGen-exact sizes, names, positions and cached == uncached."""

import math

import pytest
import torch
import torch.nn.functional as F

from argen.config import GPT_PRESETS, GPTConfig, preset
from argen.model import KVCache, SLOT_CLASS, SLOT_TOKEN, SLOT_TRANSITION, Transformer, apply_rope, rope_table
from argen.model.rope import axis_pair_counts
from argen.model.transformer import ffn_hidden_dim

# Reference §1.2 (c2i, V = 16384, 1000 classes + null row).
LLAMAGEN_PARAMETERS = {
    "GPT-B": 110_888_448,
    "GPT-L": 342_910_976,
    "GPT-XL": 774_699_520,
    "GPT-XXL": 1_410_972_672,
    "GPT-XXXL": 3_893_027_840,
    "GPT-1B": 1_199_616_000,
    "GPT-3B": 3_096_659_200,
    "GPT-7B": 6_614_589_440,
}


def tiny_config(**changes) -> GPTConfig:
    values = dict(
        dim=64,
        n_layer=2,
        n_head=4,
        multiple_of=32,
        vocab_size=48,
        num_classes=10,
        token_dropout_p=0.0,
        resid_dropout_p=0.0,
        ffn_dropout_p=0.0,
    )
    values.update(changes)
    return GPTConfig(**values)


def random_model(config: GPTConfig, n_transition: int = 0, seed: int = 0) -> Transformer:
    """A model with every weight random (the fresh output head is zero, which would hide bugs)."""
    torch.manual_seed(seed)
    model = Transformer(config, n_transition)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return model.eval()


def raster_rope(model: Transformer, grid: int, length: int) -> torch.Tensor:
    coords = torch.tensor([[0.0, 0.0]] + [[i // grid, i % grid] for i in range(length - 1)])
    null = torch.zeros(length, dtype=torch.bool)
    null[0] = True
    return rope_table(coords, null, model.head_dim, model.config.rope_base)


def raster_inputs(batch: int, length: int, vocab: int, classes: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=generator)
    ids[:, 0] = torch.randint(0, classes, (batch,), generator=generator)
    kinds = torch.full((length,), SLOT_TOKEN)
    kinds[0] = SLOT_CLASS
    return ids, kinds


@pytest.mark.parametrize("name", list(LLAMAGEN_PARAMETERS))
def test_parameter_counts_match_llamagen(name):
    with torch.device("meta"):
        model = Transformer(preset(GPT_PRESETS, name, GPTConfig))
    assert sum(p.numel() for p in model.parameters()) == LLAMAGEN_PARAMETERS[name]


def test_state_dict_names_and_shapes_match_llamagen():
    with torch.device("meta"):
        plain = Transformer(preset(GPT_PRESETS, "GPT-B", GPTConfig))
        par = Transformer(preset(GPT_PRESETS, "GPT-B", GPTConfig), n_transition=3)
    state = plain.state_dict()
    assert len(state) == 88
    expected = {
        "cls_embedding.embedding_table.weight": (1001, 768),
        "tok_embeddings.weight": (16384, 768),
        "layers.0.attention.wqkv.weight": (2304, 768),
        "layers.0.attention.wo.weight": (768, 768),
        "layers.11.feed_forward.w1.weight": (2048, 768),
        "layers.11.feed_forward.w3.weight": (2048, 768),
        "layers.11.feed_forward.w2.weight": (768, 2048),
        "layers.3.attention_norm.weight": (768,),
        "layers.3.ffn_norm.weight": (768,),
        "norm.weight": (768,),
        "output.weight": (16384, 768),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    par_state = par.state_dict()
    assert len(par_state) == 89
    assert tuple(par_state["spe_tok_embeddings.special_embeddings.weight"].shape) == (3, 768)


def test_null_class_row_only_with_class_dropout():
    assert Transformer(tiny_config(class_dropout_prob=0.1)).cls_embedding.embedding_table.num_embeddings == 11
    model = Transformer(tiny_config(class_dropout_prob=0.0))
    assert model.cls_embedding.embedding_table.num_embeddings == 10 and not model.has_null_class


def test_ffn_width_rule():
    assert ffn_hidden_dim(GPTConfig(dim=768, multiple_of=256)) == 2048
    assert ffn_hidden_dim(GPTConfig(dim=3200, multiple_of=256)) == 8704
    assert ffn_hidden_dim(GPTConfig(dim=768, multiple_of=256, ffn_dim_multiplier=1.5)) == 3072


def test_initialisation_follows_llamagen():
    torch.manual_seed(0)
    model = Transformer(tiny_config(dim=256, initializer_range=0.02))
    assert torch.all(model.output.weight == 0)
    assert torch.all(model.norm.weight == 1) and torch.all(model.layers[0].ffn_norm.weight == 1)
    for weight in (
        model.tok_embeddings.weight,
        model.layers[0].attention.wqkv.weight,
        model.cls_embedding.embedding_table.weight,
    ):
        assert abs(weight.std().item() - 0.02) < 0.002 and abs(weight.mean().item()) < 0.002
    ids, kinds = raster_inputs(2, 5, 48, 10)
    logits = model(ids, kinds, raster_rope(model, 2, 5), None)
    targets = torch.randint(0, 48, (2, 5))
    assert F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item() == pytest.approx(math.log(48), abs=1e-5)


def llamagen_rope_2d(grid_size: int, head_dim: int, base: float, cls_token_num: int) -> torch.Tensor:
    """LlamaGen's precompute_freqs_cis_2d, transcribed from reference §1.5."""
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    t = torch.arange(grid_size)
    freqs = torch.outer(t, freqs)
    grid = torch.cat([freqs[:, None, :].expand(-1, grid_size, -1), freqs[None, :, :].expand(grid_size, -1, -1)], dim=-1)
    cache = torch.stack([torch.cos(grid), torch.sin(grid)], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(cls_token_num, half, 2), cache])


@pytest.mark.parametrize("head_dim,grid", [(64, 16), (100, 24), (16, 5)])
def test_rope_2d_is_bit_identical_to_llamagen(head_dim, grid):
    coords = torch.tensor([[0.0, 0.0]] + [[i // grid, i % grid] for i in range(grid * grid)])
    null = torch.zeros(len(coords), dtype=torch.bool)
    null[0] = True
    ours = rope_table(coords, null, head_dim, 10000.0)
    assert torch.equal(ours, llamagen_rope_2d(grid, head_dim, 10000, 1))


def test_rope_identity_rows_and_axis_splits():
    coords = torch.tensor([[3.0, 1.0], [0.0, 0.0]])
    null = torch.tensor([False, True])
    table = rope_table(coords, null, 8, 10000.0, null_rows="identity")
    assert torch.equal(table[1], torch.tensor([[1.0, 0.0]] * 4))
    assert axis_pair_counts(64, 3) == [12, 10, 10]
    assert axis_pair_counts(64, 2) == [16, 16]
    assert axis_pair_counts(100, 2) == [25, 25]
    assert axis_pair_counts(64, 1) == [32]
    # 1 axis = ordinary 1D RoPE frequencies 1 / base^(2k / D).
    one_axis = rope_table(torch.tensor([[1.0]]), torch.tensor([False]), 8, 100.0)
    expected = 1.0 / 100.0 ** (torch.arange(0, 8, 2).float() / 8)
    torch.testing.assert_close(one_axis[0, :, 1], torch.sin(expected))
    with pytest.raises(ValueError, match="null_rows"):
        rope_table(coords, null, 8, 10000.0, null_rows="skip")
    with pytest.raises(ValueError, match="even"):
        rope_table(coords, null, 7, 10000.0)


def test_apply_rope_matches_complex_rotation():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 8)  # (B, S, H, D)
    coords = torch.randn(5, 2) * 4
    table = rope_table(coords, torch.zeros(5, dtype=torch.bool), 8, 10000.0)
    rotation = torch.polar(torch.ones(5, 4), torch.atan2(table[..., 1], table[..., 0]))  # (S, D/2)
    expected = torch.view_as_real(torch.view_as_complex(x.reshape(2, 5, 3, 4, 2)) * rotation[None, :, None])
    torch.testing.assert_close(apply_rope(x, table), expected.flatten(3), atol=1e-5, rtol=1e-5)
    zero = rope_table(coords, torch.ones(5, dtype=torch.bool), 8, 10000.0)
    assert torch.all(apply_rope(x, zero) == 0)  # LlamaGen: null rows zero q and k
    # bit for bit LlamaGen's pairwise formula, also from bf16
    for inputs in (x, x.bfloat16()):
        pairs, cos, sin = inputs.float().unflatten(-1, (4, 2)), table[None, :, None, :, 0], table[None, :, None, :, 1]
        pairwise = torch.stack(
            [pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1
        )
        assert torch.equal(apply_rope(inputs, table), pairwise.flatten(3).type_as(inputs))


def test_embed_picks_the_table_of_each_slot_kind():
    model = random_model(tiny_config(), n_transition=2)
    ids = torch.tensor([[3, 7, 1, 40]])
    kinds = torch.tensor([SLOT_CLASS, SLOT_TOKEN, SLOT_TRANSITION, SLOT_TOKEN])
    embedded = model.embed(ids, kinds)
    torch.testing.assert_close(embedded[0, 0], model.cls_embedding.embedding_table.weight[3])
    torch.testing.assert_close(embedded[0, 1], model.tok_embeddings.weight[7])
    torch.testing.assert_close(embedded[0, 2], model.spe_tok_embeddings.special_embeddings.weight[1])
    torch.testing.assert_close(embedded[0, 3], model.tok_embeddings.weight[40])


def test_embeddings_argument_replaces_lookup():
    model = random_model(tiny_config())
    ids, kinds = raster_inputs(2, 6, 48, 10)
    rope = raster_rope(model, 3, 6)
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    reference = model(ids, kinds, rope, mask)
    soft = F.one_hot(ids[:, 1:], 48).float() @ model.tok_embeddings.weight  # straight-through style input
    embeddings = torch.cat([model.cls_embedding.embedding_table(ids[:, :1]), soft], dim=1)
    torch.testing.assert_close(model(ids, kinds, rope, mask, embeddings=embeddings), reference)


@pytest.mark.parametrize("n_kv_head", [None, 2])
def test_cached_forward_equals_full_forward(n_kv_head):
    model = random_model(tiny_config(n_kv_head=n_kv_head))
    ids, kinds = raster_inputs(2, 10, 48, 10)
    rope = raster_rope(model, 3, 10)
    mask = torch.ones(10, 10, dtype=torch.bool).tril()
    full = model(ids, kinds, rope, mask)
    assert full.dtype == torch.float32
    cache = KVCache.allocate(model, 2, 12, torch.float32, "cpu")
    pieces, start = [], 0
    for end in (3, 4, 5, 8, 10):  # a prefill of 3 slots, then chunks of 1 and 3
        slots = torch.arange(start, end)
        pieces.append(
            model(
                ids[:, start:end],
                kinds[start:end],
                rope[start:end],
                mask[start:end],
                cache=cache,
                cache_slots=slots,
                kv_length=end,
            )
        )
        start = end
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_full_cache_length_with_mask_equals_prefix_attention():
    model = random_model(tiny_config())
    ids, kinds = raster_inputs(1, 6, 48, 10)
    rope = raster_rope(model, 3, 6)
    mask = torch.ones(6, 8, dtype=torch.bool).tril()
    prefix, static = (KVCache.allocate(model, 1, 8, torch.float32, "cpu") for _ in range(2))
    for position in range(6):
        slot = torch.tensor([position])
        a = model(
            ids[:, slot], kinds[slot], rope[slot], mask[slot], cache=prefix, cache_slots=slot, kv_length=position + 1
        )
        b = model(ids[:, slot], kinds[slot], rope[slot], mask[slot], cache=static, cache_slots=slot, kv_length=8)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_kv_cache_is_not_part_of_the_state_dict():
    model = random_model(tiny_config())
    keys = set(model.state_dict())
    cache = KVCache.allocate(model, 3, 7, torch.float32, "cpu")
    assert set(model.state_dict()) == keys
    assert cache.keys[0].shape == (3, 4, 7, 16) and len(cache.values) == 2
    assert cache.fits(3, 7, torch.float32, "cpu") and not cache.fits(2, 7, torch.float32, "cpu")
    assert cache.nbytes() == 2 * 2 * 3 * 4 * 7 * 16 * 4


def test_dropouts_act_only_in_training():
    model = random_model(tiny_config(token_dropout_p=0.3, resid_dropout_p=0.3, ffn_dropout_p=0.3, drop_path_rate=0.2))
    assert model.layers[0].drop_path.probability == 0.0
    assert model.layers[-1].drop_path.probability == pytest.approx(0.2)
    ids, kinds = raster_inputs(2, 5, 48, 10)
    rope = raster_rope(model, 2, 5)
    assert torch.equal(model(ids, kinds, rope, None), model(ids, kinds, rope, None))
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(ids, kinds, rope, None), model(ids, kinds, rope, None))


def test_bf16_autocast_runs_and_returns_float32_logits():
    model = random_model(tiny_config())
    ids, kinds = raster_inputs(2, 5, 48, 10)
    rope = raster_rope(model, 2, 5)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids, kinds, rope, mask)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, model(ids, kinds, rope, mask), atol=0.5, rtol=0.1)


def test_forward_rejects_bad_inputs():
    model = random_model(tiny_config())
    ids, kinds = raster_inputs(1, 4, 48, 10)
    rope = raster_rope(model, 2, 4)
    with pytest.raises(ValueError, match="rope must be"):
        model(ids, kinds, rope[:3], None)
    with pytest.raises(ValueError, match="cache_slots, kv_length and mask"):
        model(ids, kinds, rope, None, cache=KVCache.allocate(model, 1, 4, torch.float32, "cpu"))
    with pytest.raises(ValueError, match="mask must be bool"):
        model(ids, kinds, rope, torch.ones(4, 4))
    with pytest.raises(ValueError, match="kinds"):
        model(ids, kinds[:3], rope, None)
