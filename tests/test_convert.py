"""LlamaGen/PAR checkpoints load strictly and give the reference forward's logits."""

import argparse
import math

import pytest
import torch

from argen.config import GPTConfig, LayoutConfig
from argen.io.checkpoint import CheckpointError, load_state_into
from argen.io.convert import convert_llamagen_gpt, infer_llamagen_config, read_foreign_checkpoint
from argen.layout import Layout
from argen.model import Transformer

DIM, LAYERS, HEADS, HIDDEN, VOCAB, CLASSES, GRID = 64, 2, 4, 192, 40, 10, 4
CONFIG = GPTConfig(
    dim=DIM,
    n_layer=LAYERS,
    n_head=HEADS,
    multiple_of=64,
    vocab_size=VOCAB,
    num_classes=CLASSES,
    token_dropout_p=0.0,
    resid_dropout_p=0.0,
    ffn_dropout_p=0.0,
)


def llamagen_state(n_special: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with LlamaGen's key names and shapes (reference §1.3, §4.1)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.15

    state = {
        "cls_embedding.embedding_table.weight": rand(CLASSES + 1, DIM),
        "tok_embeddings.weight": rand(VOCAB, DIM),
        "norm.weight": 1 + rand(DIM),
        "output.weight": rand(VOCAB, DIM),
    }
    for i in range(LAYERS):
        state |= {
            f"layers.{i}.attention.wqkv.weight": rand(3 * DIM, DIM),
            f"layers.{i}.attention.wo.weight": rand(DIM, DIM),
            f"layers.{i}.feed_forward.w1.weight": rand(HIDDEN, DIM),
            f"layers.{i}.feed_forward.w3.weight": rand(HIDDEN, DIM),
            f"layers.{i}.feed_forward.w2.weight": rand(DIM, HIDDEN),
            f"layers.{i}.attention_norm.weight": 1 + rand(DIM),
            f"layers.{i}.ffn_norm.weight": 1 + rand(DIM),
        }
    if n_special:
        state["spe_tok_embeddings.special_embeddings.weight"] = rand(n_special, DIM)
    return state


def reference_rope_rows(head_dim: int) -> torch.Tensor:
    """(GRID*GRID, head_dim/2) complex rotations of the raster grid cells, straight from reference §1.5."""
    quarter = head_dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) * 2 / (head_dim // 2))
    rows = torch.arange(GRID * GRID) // GRID
    cols = torch.arange(GRID * GRID) % GRID
    angles = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=1)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def reference_forward(state, embeddings: torch.Tensor, rotations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A plain transcription of LlamaGen's block math (reference §1.3): complex RoPE, explicit softmax."""
    head_dim = DIM // HEADS

    def rms(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    def rotate(x):  # (B, S, H, D), rotations (S, D/2) complex; zero rotation rows zero the vector
        pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
        return torch.view_as_real(pairs * rotations[None, :, None]).flatten(3)

    h = embeddings
    batch, length, _ = h.shape
    for i in range(LAYERS):
        x = rms(h, state[f"layers.{i}.attention_norm.weight"])
        q, k, v = (x @ state[f"layers.{i}.attention.wqkv.weight"].T).split(DIM, dim=-1)
        q, k = (rotate(t.view(batch, length, HEADS, head_dim)) for t in (q, k))
        q, k, v = (t.reshape(batch, length, HEADS, head_dim).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
        attention = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v
        h = h + attention.transpose(1, 2).reshape(batch, length, DIM) @ state[f"layers.{i}.attention.wo.weight"].T
        x = rms(h, state[f"layers.{i}.ffn_norm.weight"])
        gate = torch.nn.functional.silu(x @ state[f"layers.{i}.feed_forward.w1.weight"].T)
        up = x @ state[f"layers.{i}.feed_forward.w3.weight"].T
        h = h + (gate * up) @ state[f"layers.{i}.feed_forward.w2.weight"].T
    return rms(h, state["norm.weight"]) @ state["output.weight"].T


def test_llamagen_ddp_checkpoint_loads_and_matches_reference(tmp_path):
    state = llamagen_state()
    extras = {
        "freqs_cis": torch.zeros(17, 8, 2),
        "causal_mask": torch.ones(1, 17, 17, dtype=torch.bool),
        "layers.0.attention.kv_cache.k_cache": torch.zeros(1, 4, 24, 16),
        "layers.0.attention.kv_cache.v_cache": torch.zeros(1, 4, 24, 16),
    }
    path = tmp_path / "c2i.pt"
    torch.save(
        {
            "model": state | extras,
            "optimizer": {},
            "steps": 7,
            "args": argparse.Namespace(gpt_model="GPT-B", image_size=64),
        },
        path,
    )
    weights = convert_llamagen_gpt(read_foreign_checkpoint(path))
    assert set(weights) == set(state)
    model = Transformer(CONFIG).eval()
    load_state_into(model, weights, source=str(path))

    layout = Layout(LayoutConfig(grid=(GRID, GRID)), VOCAB)
    codes = torch.randint(0, VOCAB, (2, GRID, GRID), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([3, CLASSES])  # a class and the null class
    tensors = layout.training_tensors(codes, labels)
    ours = model(tensors["ids"], tensors["kinds"], layout.rope(CONFIG), tensors["mask"])

    # LlamaGen: [cls] + tokens t_0..t_{N-2}; RoPE row 0 (class) is zero; causal attention.
    flat = codes.flatten(1)
    embeddings = torch.cat(
        [state["cls_embedding.embedding_table.weight"][labels][:, None], state["tok_embeddings.weight"][flat[:, :-1]]],
        dim=1,
    )
    rotations = torch.cat(
        [torch.zeros(1, DIM // HEADS // 2, dtype=torch.complex64), reference_rope_rows(DIM // HEADS)[:-1]]
    )
    n = GRID * GRID
    expected = reference_forward(state, embeddings, rotations, torch.ones(n, n, dtype=torch.bool).tril())
    assert (ours - expected).abs().max().item() < 1e-5


def test_par_raw_checkpoint_loads_and_matches_reference(tmp_path):
    k = 4
    state = llamagen_state(n_special=k - 1, seed=2)
    path = tmp_path / "par.pt"
    torch.save({f"_orig_mod.{key}": value for key, value in state.items()}, path)  # raw (FSDP-style) dict
    weights = convert_llamagen_gpt(read_foreign_checkpoint(path))
    config, n_transition = infer_llamagen_config(weights, n_head=HEADS)
    assert n_transition == k - 1 and (config.dim, config.n_layer, config.vocab_size) == (DIM, LAYERS, VOCAB)
    model = Transformer(CONFIG, n_transition=n_transition).eval()
    load_state_into(model, weights)

    layout = Layout(LayoutConfig(grid=(GRID, GRID), order="region", parallel=k), VOCAB)
    codes = torch.randint(0, VOCAB, (2, GRID, GRID), generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([1, 9])
    tensors = layout.training_tensors(codes, labels)
    ours = model(tensors["ids"], tensors["kinds"], layout.rope(CONFIG), tensors["mask"])

    # PAR (reference §4.2-4.4): reorder by view/permute, [cls][t0..t_{k-1}][M_1..M_{k-1}][t_k..t_{N-2}],
    # permuted RoPE with zero rows for cls and M, group mask; logits sliced to the first N positions.
    s, n = 2, GRID * GRID
    order = torch.arange(n).view(s, GRID // s, s, GRID // s).permute(1, 3, 0, 2).flatten()
    reordered = codes.flatten(1)[:, order][:, :-1]
    tokens = state["tok_embeddings.weight"][reordered]
    embeddings = torch.cat(
        [
            state["cls_embedding.embedding_table.weight"][labels][:, None],
            tokens[:, :k],
            state["spe_tok_embeddings.special_embeddings.weight"].expand(2, -1, -1),
            tokens[:, k:],
        ],
        dim=1,
    )
    rows = reference_rope_rows(DIM // HEADS)[order]
    zero = torch.zeros(1, DIM // HEADS // 2, dtype=torch.complex64)
    rotations = torch.cat([zero, rows[:k], zero.expand(k - 1, -1), rows[k : n - 1]])
    length = n + k - 1
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    mask[:, 0] = True
    for group in range((length - k) // k + 1):
        mask[k + group * k : k + (group + 1) * k, : k + (group + 1) * k] = True
    expected = reference_forward(state, embeddings, rotations, mask)[:, :n]
    assert (ours - expected).abs().max().item() < 1e-5


def test_infer_config_of_llamagen_sizes_from_shapes():
    with torch.device("meta"):
        model = Transformer(
            GPTConfig(dim=768, n_layer=12, n_head=12, num_classes=1000, vocab_size=16384), n_transition=3
        )
    config, n_transition = infer_llamagen_config(model.state_dict())
    assert (config.n_head, config.n_layer, config.num_classes, n_transition) == (12, 12, 1000, 3)
    with pytest.raises(ValueError, match="pass n_head"):
        infer_llamagen_config(llamagen_state())


def test_bad_checkpoints_are_rejected_clearly(tmp_path):
    with pytest.raises(ValueError, match="not a LlamaGen/PAR GPT checkpoint"):
        convert_llamagen_gpt({"optimizer": {}, "steps": 3})
    with pytest.raises(FileNotFoundError):
        read_foreign_checkpoint(tmp_path / "missing.pt")
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="expected a dict"):
        read_foreign_checkpoint(path)
    state = llamagen_state()
    state["layers.0.attention.wqkv.weight"] = torch.zeros(3 * DIM, DIM + 1)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_state_into(Transformer(CONFIG), convert_llamagen_gpt({"model": state}))
    missing = llamagen_state()
    del missing["norm.weight"]
    with pytest.raises(CheckpointError, match="missing keys: norm.weight"):
        load_state_into(Transformer(CONFIG), convert_llamagen_gpt(missing))


class Payload:
    """An arbitrary class: loading must refuse to unpickle it."""


def test_arbitrary_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": llamagen_state(), "payload": Payload()}, path)
    with pytest.raises(Exception, match="weights_only|Unsupported global|WeightsUnpickler"):
        read_foreign_checkpoint(path)


def test_convert_checkpoint_writes_a_loadable_ar_directory(tmp_path):
    from argen.config import ARRunConfig, from_dict
    from argen.io.checkpoint import load_weights, read_meta
    from argen.io.convert import convert_checkpoint
    from argen.io.load import build_ar

    k = 4
    state = llamagen_state(n_special=k - 1, seed=4)
    source = tmp_path / "par.pt"
    torch.save({"model": state, "steps": 1}, source)
    sizes = dict(dim=DIM, n_layer=LAYERS, n_head=HEADS, multiple_of=64, vocab_size=VOCAB, num_classes=CLASSES)
    overrides = [f"model.{key}={value}" for key, value in sizes.items()]
    with pytest.raises(CheckpointError, match="shape mismatches"):  # GPT-T's shapes do not fit these weights
        convert_checkpoint("par", source, tmp_path / "bad", "GPT-T", k, ["layout.grid=[8,8]"])
    assert not (tmp_path / "bad").exists()
    directory = convert_checkpoint("par", source, tmp_path / "out", "GPT-T", k, overrides + ["layout.grid=[8,8]"])
    meta = read_meta(directory, "ar")
    config = from_dict(ARRunConfig, meta["config"])
    assert (config.layout.order, config.layout.parallel, tuple(config.layout.grid)) == ("region", k, (8, 8))
    layout, model = build_ar(config, VOCAB)
    load_state_into(model, load_weights(directory))
    assert torch.equal(
        model.spe_tok_embeddings.special_embeddings.weight, state["spe_tok_embeddings.special_embeddings.weight"]
    )


def test_convert_checkpoint_writes_a_loadable_tokenizer_directory(tmp_path):
    from argen.config import VQ_PRESETS, VQConfig, preset
    from argen.io.convert import convert_checkpoint
    from argen.tokenizer.vq import VQModel
    from argen.io.load import load_tokenizer

    torch.manual_seed(0)
    vq = VQModel(preset(VQ_PRESETS, "VQ-CPU-32", VQConfig))
    source = tmp_path / "vq.pt"
    torch.save({"model": vq.state_dict(), "steps": 1, "args": argparse.Namespace(vq_model="VQ-16")}, source)
    directory = convert_checkpoint("llamagen-vq", source, tmp_path / "tok", "VQ-CPU-32")
    loaded, config = load_tokenizer(directory)
    assert config.data.image_size == config.model.image_size == 32
    for key, value in vq.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="unknown checkpoint kind"):
        convert_checkpoint("vqgan", source, tmp_path / "x", "VQ-CPU-32")
