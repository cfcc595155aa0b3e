"""Token-dependency analysis: estimators, data maps, teacher-forced model maps, and `argen analyze entropy`."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from argen.cli import main
from argen.config import ARRunConfig, GPTConfig, LayoutConfig, to_dict
from argen.data.token_cache import write_token_cache
from argen.eval.entropy import (
    default_references,
    dependency_maps,
    distance_profile,
    entropy_from_counts,
    position_maps,
    quantile_table,
    reduce_alphabet,
    summarize,
)
from argen.io.checkpoint import save_checkpoint
from argen.layout import Layout
from argen.model.transformer import Transformer

# ------------------------------------------------------------------------------------------------
# estimators and data maps


def test_entropy_from_counts_known_values():
    counts = torch.tensor([[5, 5, 0], [10, 0, 0]])
    assert entropy_from_counts(counts, "none").tolist() == pytest.approx([math.log(2), 0.0])
    # Miller-Madow adds (observed bins - 1) / (2N).
    assert entropy_from_counts(counts).tolist() == pytest.approx([math.log(2) + 1 / 20, 0.0])
    with pytest.raises(ValueError, match="correction must be one of"):
        entropy_from_counts(counts, "jackknife")
    with pytest.raises(ValueError, match="at least one sample"):
        entropy_from_counts(torch.zeros(1, 3))


def test_miller_madow_closer_to_truth_than_plug_in():
    symbols, samples = 40, 150
    truth = math.log(symbols)
    generator = torch.Generator().manual_seed(0)
    draws = torch.randint(0, symbols, (50, samples), generator=generator)
    counts = torch.stack([torch.bincount(row, minlength=symbols) for row in draws])  # (50, K)
    plug_in = entropy_from_counts(counts, "none").mean().item()
    corrected = entropy_from_counts(counts).mean().item()
    assert plug_in < truth  # biased low
    assert abs(corrected - truth) < abs(plug_in - truth) / 4


def synthetic_grids(count=4000, size=6, symbols=4, reference=(2, 2)):
    """Independent uniform tokens, except the four neighbours of `reference`: shifted copies of X_r."""
    generator = torch.Generator().manual_seed(0)
    grids = torch.randint(0, symbols, (count, size, size), generator=generator)
    row, column = reference
    neighbours = [(row - 1, column), (row + 1, column), (row, column - 1), (row, column + 1)]
    for shift, (r, c) in enumerate(neighbours, start=1):
        grids[:, r, c] = (grids[:, row, column] + shift) % symbols
    return grids, neighbours


def test_dependency_map_zero_at_determined_neighbours_full_far_away():
    grids, neighbours = synthetic_grids()
    maps = dependency_maps(grids, (2, 2), alphabet=4)
    near = torch.zeros(6, 6, dtype=torch.bool)
    for r, c in neighbours:
        near[r, c] = True
    far = ~near
    far[2, 2] = False
    assert maps.conditional_entropy[near].abs().max() < 1e-6
    assert maps.mutual_information[near].tolist() == pytest.approx([math.log(4)] * 4, abs=0.01)
    assert maps.conditional_entropy[far].tolist() == pytest.approx(maps.marginal_entropy[far].tolist(), abs=0.01)
    assert maps.conditional_entropy[far].tolist() == pytest.approx([math.log(4)] * int(far.sum()), abs=0.01)
    assert maps.mutual_information[far].abs().max() < 0.01
    assert maps.conditional_entropy[2, 2] == pytest.approx(0.0, abs=1e-6)
    assert abs(maps.independent_baseline) < 0.01
    distances, values = distance_profile(maps.mutual_information, (2, 2))
    assert distances[0] == 1.0 and values[0] == pytest.approx(math.log(4), abs=0.01)
    assert max(values[1:]) < 0.01


def test_dependency_maps_three_axes_and_errors():
    grids = torch.randint(0, 3, (50, 2, 3, 3), generator=torch.Generator().manual_seed(1))
    maps = dependency_maps(grids, (1, 1, 1), alphabet=3)
    assert maps.mutual_information.shape == (2, 3, 3)
    assert default_references((2, 4, 4)) == [(1, 2, 2), (1, 0, 0), (1, 2, 0)]
    with pytest.raises(ValueError, match="outside the token grid"):
        dependency_maps(grids, (2, 0, 0), alphabet=3)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 2\)"):
        dependency_maps(grids, (0, 0, 0), alphabet=2)


def test_quantile_table_equal_mass_groups_and_validation():
    generator = torch.Generator().manual_seed(0)
    ids = torch.multinomial(torch.linspace(1, 5, 32), 20000, replacement=True, generator=generator)
    table = quantile_table(ids, vocab=32, size=4)
    reduced, size = reduce_alphabet(ids, table, vocab=32)
    assert size == 4
    shares = torch.bincount(reduced, minlength=4).float() / len(ids)
    assert shares.tolist() == pytest.approx([0.25] * 4, abs=0.04)
    with pytest.raises(ValueError, match="1-D integer tensor of 32 entries"):
        reduce_alphabet(ids, table[:16], vocab=32)
    with pytest.raises(ValueError, match=r"alphabet size must be in \[2, 32\]"):
        quantile_table(ids, vocab=32, size=64)


# ------------------------------------------------------------------------------------------------
# model-based maps

LAYOUTS = {
    "raster": {},
    "par4": {"order": "region", "parallel": 4},
    "par4-prologue": {"order": "region", "parallel": 4, "prologue_length": 2, "prologue_vocab": 3},
}


class KnownTargets(nn.Module):
    """Puts logit a = id / 4 on the true next token (ids equal raster positions), 0 elsewhere."""

    def __init__(self, targets: torch.Tensor, vocab: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.config = GPTConfig(dim=8, n_head=2)  # what the analysis reads: heads and RoPE
        self.targets, self.vocab = targets, vocab  # (L,)

    def forward(self, ids, kinds, rope, mask):
        logits = torch.zeros(ids.shape[0], ids.shape[1], self.vocab)  # (B, L, vocab)
        valid = self.targets >= 0
        slots = torch.nonzero(valid).squeeze(1)
        logits[:, slots, self.targets[valid]] = self.targets[valid].float() / 4
        return logits


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_position_maps_place_each_slot_at_its_grid_position(name):
    layout = Layout(LayoutConfig(grid=(4, 4), **LAYOUTS[name]), grid_vocab=16)
    ids = torch.arange(16).view(1, 4, 4).repeat(5, 1, 1)  # token id = raster position
    labels = torch.zeros(5, dtype=torch.long)
    prologue = torch.zeros(5, 2, dtype=torch.long) if layout.prologue_length else None
    targets = layout.training_tensors(ids[:1], labels[:1], None if prologue is None else prologue[:1])["targets"][0]
    model = KnownTargets(targets, layout.vocab_size).eval()
    maps = position_maps(model, layout, ids, labels, prologue, batch_size=2)
    logit = torch.arange(16, dtype=torch.float64) / 4  # (16,)
    expected_nll = torch.log(logit.exp() + 15) - logit
    assert maps.nll.flatten().tolist() == pytest.approx(expected_nll.tolist(), abs=1e-5)
    probability = logit.exp() / (logit.exp() + 15)
    rest = (1 - probability) / 15
    expected_entropy = -(probability * probability.log() + 15 * rest * rest.log())
    assert maps.entropy.flatten().tolist() == pytest.approx(expected_entropy.tolist(), abs=1e-5)


@pytest.mark.parametrize("name", ["raster", "par4"])
def test_position_maps_of_a_random_model(name):
    torch.manual_seed(0)
    layout = Layout(LayoutConfig(grid=(4, 4), **LAYOUTS[name]), grid_vocab=16)
    model = Transformer(
        GPTConfig(dim=16, n_layer=1, n_head=2, multiple_of=16, vocab_size=16, num_classes=3),
        n_transition=layout.n_transition,
    )
    nn.init.normal_(model.output.weight, std=1.0)  # the zero-initialised head would give uniform logits
    model.eval()
    ids = torch.randint(0, 16, (6, 4, 4))
    labels = torch.randint(0, 3, (6,))
    maps = position_maps(model, layout, ids, labels, batch_size=4)
    assert maps.entropy.shape == maps.nll.shape == maps.step.shape == (4, 4) and maps.images == 6
    assert torch.isfinite(maps.entropy).all() and (maps.entropy > 0).all()
    assert (maps.entropy <= math.log(16) + 1e-5).all()
    # The mean NLL over positions is the model's teacher-forced cross-entropy.
    tensors = layout.training_tensors(ids, labels)
    with torch.no_grad():
        logits = model(tensors["ids"], tensors["kinds"], layout.rope(model.config), tensors["mask"])
    loss = F.cross_entropy(logits.flatten(0, 1), tensors["targets"].flatten(), ignore_index=-100)
    assert maps.nll.mean().item() == pytest.approx(loss.item(), rel=1e-5)
    expected_sizes = [1] * 16 if name == "raster" else [1, 1, 1, 1, 4, 4, 4]
    assert maps.step_size.tolist() == expected_sizes
    assert torch.bincount(maps.step.flatten()).tolist() == expected_sizes
    assert maps.step_entropy.shape == (len(expected_sizes),)
    summary = summarize(maps, maps)
    assert summary["entropy_increase"]["nats"] == 0.0
    assert summary["entropy_bits"] == pytest.approx(summary["entropy_nats"] / math.log(2))
    assert sum(group["tokens"] for group in summary["by_step_size"].values()) == 16
    with pytest.raises(ValueError, match="eval mode"):
        position_maps(model.train(), layout, ids, labels)


# ------------------------------------------------------------------------------------------------
# the command line, end to end


class TinyImages:
    """A stand-in dataset: token grids are its 'images', so the encoder is the identity."""

    def __init__(self, count=96):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 16, (count, 4, 4), generator=generator)
        self.ids[:, :, 1] = (self.ids[:, :, 0] + 4) % 16  # columns 0 and 1 move together
        self.labels = torch.arange(count) % 3

    def __len__(self):
        return len(self.labels)

    def batch(self, indices):
        return {"images": self.ids[indices], "labels": self.labels[indices]}


def save_ar(directory, grid, **layout):
    config = ARRunConfig(
        model=GPTConfig(dim=16, n_layer=1, n_head=2, multiple_of=16, vocab_size=16, num_classes=3),
        layout=LayoutConfig(grid=grid, **layout),
    )
    torch.manual_seed(0)
    model = Transformer(config.model, n_transition=Layout(config.layout, 16).n_transition)
    nn.init.normal_(model.output.weight, std=1.0)
    return save_checkpoint(directory, "ar", to_dict(config), model.state_dict(), {"grid_vocab": 16})


def test_cli_analyze_entropy_then_report(tmp_path, capsys):
    cache = write_token_cache(
        lambda images: {"ids": images},
        TinyImages(),
        tmp_path / "cache",
        tokenizer={"codebook_size": 16},
        batch_size=32,
        progress=False,
    )
    raster = save_ar(tmp_path / "raster", (4, 4))
    par = save_ar(tmp_path / "par4", (4, 4), order="region", parallel=4)
    (tmp_path / "coarse.json").write_text(json.dumps([i // 4 for i in range(16)]))
    out = tmp_path / "entropy"
    assert (
        main(
            [
                "analyze",
                "entropy",
                "--cache",
                str(cache),
                "--models",
                f"raster={raster}",
                f"par4={par}",
                "--reference",
                "1,0",
                "3,3",
                "--limit",
                "80",
                "--model-limit",
                "40",
                "--coarse",
                str(tmp_path / "coarse.json"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "par4: entropy" in capsys.readouterr().out
    result = json.loads((out / "entropy.json").read_text())
    assert result["images"] == 80 and result["alphabet"] == {
        "kind": "coarse table",
        "table": str(tmp_path / "coarse.json"),
        "size": 4,
    }
    assert [r["position"] for r in result["references"]] == [[1, 0], [3, 3]]
    dependent = result["references"][0]["mutual_information"]
    assert dependent[1][1] > 1.0 > 0.2 > abs(dependent[3][3])  # the coupled column vs an unrelated token
    names = [model["name"] for model in result["models"]]
    assert names == ["raster", "par4"] and result["models"][0]["images"] == 40
    assert "entropy_increase" in result["models"][1] and "entropy_increase" not in result["models"][0]
    assert len(result["models"][1]["entropy"]) == 4 and len(result["models"][1]["step_size"]) == 7
    files = [figure["file"] for figure in result["report"]["figures"]]
    assert len(files) == 2 + 1 + 2  # two references, the distance plot, two models
    for name in files:
        with Image.open(out / name) as picture:
            assert picture.format == "PNG" and picture.width > 100
    report = tmp_path / "report"
    assert main(["report", "--out", str(report), "--analysis", str(out)]) == 0
    page = (report / "index.html").read_text()
    assert page.count("<img ") == len(files) and page.count("<table>") == 2
    assert main(["report", "--out", str(report), "--analysis", str(cache)]) == 2
    assert 'no JSON file with a "report" block' in capsys.readouterr().err
    other = save_ar(tmp_path / "other", (2, 8))
    assert main(["analyze", "entropy", "--cache", str(cache), "--models", str(other), "--out", str(out)]) == 2
    assert "(2, 8) grid but the cache" in capsys.readouterr().err
    assert main(["analyze", "entropy", "--cache", str(cache), "--reference", "a,b", "--out", str(out)]) == 2
