"""CTF: codebook clustering, the table file, the coarse AR, the refiner, CTF sampling (with PAR), recipes and CLI."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

import argen
from tiny_tokenizer import tiny_tokenizer
from argen.cli import main
from argen.config import GPT_PRESETS, ARRunConfig, GPTConfig, LayoutConfig, RefinerConfig, RefinerRunConfig, TrainConfig
from argen.ctf.cluster import cluster_codebook
from argen.ctf.cluster import METHODS
from argen.ctf.redundancy import random_members
from argen.ctf.sample import RefineOptions, refine, sample_ctf
from argen.ctf.table import CoarseTable, load_table, save_table
from argen.ctf.table import histogram_path
from argen.io.load import build_ar, load_refiner, open_coarse_table, open_token_cache, refiner_config_from_cache
from argen.layout import Layout
from argen.model import KVCache, Transformer
from argen.model.refiner import Refiner
from argen.sample import SamplingOptions, generate
from argen.train import recipes
from argen.train.ar_task import ARTask

# ------------------------------------------------------------------------------------------------
# clustering


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64"


def blobs(count: int = 4, per_blob: int = 10, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Well-separated unit-norm groups of vectors and the group of each."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(count, dim, generator=generator), dim=-1)
    groups = torch.arange(count).repeat_interleave(per_blob)
    vectors = centres[groups] + 0.01 * torch.randn(count * per_blob, dim, generator=generator)
    return torch.nn.functional.normalize(vectors, dim=-1), groups


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two labelings group the items identically (up to renaming the clusters)."""
    return torch.equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


@pytest.mark.parametrize("method", METHODS)
def test_every_code_in_one_nonempty_cluster_and_deterministic(method):
    vectors = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    first = cluster_codebook(vectors, 17, method=method, restarts=2, seed=3)
    again = cluster_codebook(vectors, 17, method=method, restarts=2, seed=3)
    other = cluster_codebook(vectors, 17, method=method, restarts=2, seed=4)
    table = first.fine_to_coarse
    assert table.shape == (300,) and table.dtype == torch.long
    sizes = torch.bincount(table, minlength=17)
    assert sizes.numel() == 17 and int(sizes.min()) >= 1
    assert torch.equal(table, again.fine_to_coarse) and first.inertia == again.inertia
    assert not torch.equal(table, other.fine_to_coarse)
    if method in ("balanced", "random"):  # 300 = 17 * 17 + 11: sizes 17 or 18
        assert set(sizes.tolist()) == {17, 18}


@pytest.mark.parametrize("method", ["kmeans", "spherical", "balanced"])
def test_kmeans_methods_recover_separated_groups(method):
    vectors, groups = blobs()
    result = cluster_codebook(vectors, 4, method=method, restarts=3)
    assert same_partition(result.fine_to_coarse, groups)
    random = cluster_codebook(vectors, 4, method="random")
    assert random.inertia > 10 * result.inertia


def test_more_restarts_never_raise_inertia():
    vectors = torch.randn(400, 4, generator=torch.Generator().manual_seed(1))
    inertias = [cluster_codebook(vectors, 30, restarts=restarts, seed=0).inertia for restarts in (1, 4)]
    assert inertias[1] <= inertias[0]


def test_fewer_distinct_codes_than_clusters_still_fills_every_cluster():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(5, 1)  # 10 codes, 2 distinct vectors
    for method in ("kmeans", "spherical", "balanced"):
        table = cluster_codebook(vectors, 6, method=method).fine_to_coarse
        assert int(torch.bincount(table, minlength=6).min()) >= 1


def test_clustering_rejects_bad_input():
    vectors = torch.randn(10, 3)
    with pytest.raises(ValueError, match=r"clusters must be in \[1, 10\]"):
        cluster_codebook(vectors, 11)
    with pytest.raises(ValueError, match="unknown clustering method 'agglomerative'"):
        cluster_codebook(vectors, 2, method="agglomerative")
    with pytest.raises(ValueError, match="NaN or infinite"):
        cluster_codebook(torch.full((10, 3), float("nan")), 2)
    with pytest.raises(ValueError, match="restarts and iterations must be >= 1"):
        cluster_codebook(vectors, 2, restarts=0)


# ------------------------------------------------------------------------------------------------
# the table file


def test_table_file_round_trip_with_checksum_and_histogram(tmp_path):
    table = CoarseTable(torch.tensor([2, 0, 1, 1, 0, 2, 2]), {"tokenizer_sha256": "ab" * 32, "method": "kmeans"})
    path = save_table(table, tmp_path / "table.safetensors")
    loaded = load_table(path)
    assert torch.equal(loaded.fine_to_coarse, table.fine_to_coarse) and loaded.checksum == table.checksum
    assert (loaded.fine_vocab, loaded.coarse_vocab, loaded.sizes.tolist()) == (7, 3, [2, 2, 3])
    assert loaded.metadata["method"] == "kmeans" and loaded.tokenizer_sha256 == "ab" * 32
    with Image.open(histogram_path(path)) as image:
        assert image.format == "PNG" and image.size[0] > 100
    table.check_tokenizer("ab" * 32, 7, "the cache")
    with pytest.raises(ValueError, match="made for the tokenizer with sha256 ababab"):
        table.check_tokenizer("cd" * 32, 7, "the cache")
    with pytest.raises(ValueError, match="table has 7 codes but the cache has a codebook of 8"):
        table.check_tokenizer("ab" * 32, 8, "the cache")


def test_table_rejects_empty_clusters_and_foreign_files(tmp_path):
    with pytest.raises(ValueError, match=r"clusters \[1\] of the fine -> coarse table have no code"):
        CoarseTable(torch.tensor([0, 2, 2]))
    with pytest.raises(ValueError, match="integer tensor"):
        CoarseTable(torch.tensor([0.0, 1.0]))
    from safetensors.torch import save_file

    save_file({"weights": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="is not a CTF table"):
        load_table(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="argen ctf cluster"):
        load_table(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        save_table(CoarseTable(torch.tensor([0, 1])), tmp_path / "table.npy")


# ------------------------------------------------------------------------------------------------
# coarse AR


def test_coarse_vocabulary_removes_embedding_and_head_rows_at_gpt_b():
    def parameters(vocab: int) -> int:
        config = GPTConfig(**{**GPT_PRESETS["GPT-B"], "vocab_size": vocab})
        layout = Layout(LayoutConfig(grid=(16, 16)), vocab)
        with torch.device("meta"):
            _, model = build_ar(ARRunConfig(model=config, layout=layout.config), vocab)
        return sum(p.numel() for p in model.parameters())

    assert parameters(16384) == 110_888_448  # LlamaGen GPT-B
    assert parameters(16384) - parameters(512) == 2 * 768 * 15872


COARSE_VOCAB = 6
FINE_VOCAB = 20
TABLE = CoarseTable(torch.arange(FINE_VOCAB) % COARSE_VOCAB)


def coarse_model(layout: Layout, seed: int = 2) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(
        GPTConfig(dim=64, n_layer=2, n_head=4, multiple_of=32, vocab_size=layout.vocab_size, num_classes=10),
        n_transition=layout.n_transition,
    )
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return model.eval()


@pytest.mark.parametrize(
    "layout_options", [dict(grid=(8, 8)), dict(grid=(8, 8), order="region", parallel=4)], ids=["raster", "par-k4"]
)
def test_coarse_ar_cached_decoding_equals_teacher_forcing(layout_options):
    layout = Layout(LayoutConfig(**layout_options), COARSE_VOCAB)
    model = coarse_model(layout)
    fine = torch.randint(0, FINE_VOCAB, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    tensors = layout.training_tensors(TABLE.coarse(fine), torch.tensor([1, 10]))
    rope = layout.rope(model.config)
    full = model(tensors["ids"], tensors["kinds"], rope, tensors["mask"])
    cache = KVCache.allocate(model, 2, layout.sequence_length, torch.float32, "cpu")
    slots = torch.arange(layout.sequence_length)
    with torch.no_grad():
        pieces = [
            model(
                tensors["ids"][:, s.slot_start : s.slot_end],
                tensors["kinds"][s.slot_start : s.slot_end],
                rope[s.slot_start : s.slot_end],
                tensors["mask"][s.slot_start : s.slot_end],
                cache=cache,
                cache_slots=slots[s.slot_start : s.slot_end],
                kv_length=s.slot_end,
            )
            for s in layout.steps
        ]
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() < 1e-4
    # Greedy decoding is the argmax of the teacher-forced logits on its own output.
    labels = torch.tensor([2, 7])
    out = generate(model, layout, labels, options=SamplingOptions(greedy=True, dtype="fp32")).visual
    assert int(out.max()) < COARSE_VOCAB and out.unique().numel() > 1
    forced = layout.training_tensors(out, labels)
    logits = model(forced["ids"], forced["kinds"], rope, forced["mask"])
    predicted = torch.cat([logits[:, s.slot_start : s.slot_start + s.n_output].argmax(-1) for s in layout.steps], 1)
    assert torch.equal(predicted, layout.to_generation_order(out))


# ------------------------------------------------------------------------------------------------
# refiner


def make_refiner(seed: int = 0, grid_axes: int = 2, **changes) -> Refiner:
    torch.manual_seed(seed)
    config = GPTConfig(
        **{**dict(dim=64, n_layer=2, n_head=4, multiple_of=32, vocab_size=COARSE_VOCAB, num_classes=10), **changes}
    )
    refiner = Refiner(config, TABLE.fine_to_coarse)
    for name, parameter in refiner.named_parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return refiner.eval()


def test_refiner_is_order_free_given_rope_rows():
    refiner = make_refiner()
    grid = (4, 5)
    coarse = torch.randint(0, COARSE_VOCAB, (3, 20), generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 4, 10])  # 10 = the null class
    rope = refiner.rope(grid)
    logits = refiner(coarse, labels, rope)
    assert logits.shape == (3, 20, FINE_VOCAB) and logits.dtype == torch.float32
    permutation = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    shuffled = refiner(coarse[:, permutation], labels, torch.cat([rope[:1], rope[1:][permutation]]))
    assert (shuffled - logits[:, permutation]).abs().max().item() < 1e-4
    # Positions matter (through RoPE) and every position sees every other (no causal mask).
    assert (refiner(coarse, labels, refiner.rope((5, 4))) - logits).abs().max().item() > 1e-3
    changed = coarse.clone()
    changed[:, -1] = (changed[:, -1] + 1) % COARSE_VOCAB
    assert (refiner(changed, labels, rope)[:, 0] - logits[:, 0]).abs().max().item() > 1e-4


def test_refiner_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match=r"model.vocab_size=7\) must equal the table's 6 clusters"):
        Refiner(GPTConfig(dim=64, n_head=4, vocab_size=7), TABLE.fine_to_coarse)
    refiner = make_refiner()
    with pytest.raises(ValueError, match=r"rope must be \(5, 8, 2\)"):
        refiner(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, dtype=torch.long), refiner.rope((2, 3)))


def test_restricted_refinement_stays_inside_each_cluster():
    refiner = make_refiner()
    coarse = torch.randint(0, COARSE_VOCAB, (4, 6, 6), generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([1, 2, 3, 4])
    generator = torch.Generator().manual_seed(0)
    free = refine(refiner, coarse, labels, RefineOptions(temperature=3.0), generator)
    assert not torch.equal(TABLE.coarse(free), coarse)  # the check below is not trivially true
    for options in (
        RefineOptions(temperature=3.0, restrict_to_cluster=True),
        RefineOptions(top_k=2, guidance=2.0, restrict_to_cluster=True),
        RefineOptions(greedy=True, restrict_to_cluster=True),
    ):
        fine = refine(refiner, coarse, labels, options, generator)
        assert fine.shape == coarse.shape and torch.equal(TABLE.coarse(fine), coarse)


def test_refine_options_and_guidance_checks():
    with pytest.raises(ValueError, match="refine top_k must be >= 0"):
        RefineOptions(top_k=-1)
    refiner = make_refiner(class_dropout_prob=0.0)
    coarse = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="refiner guidance needs a null class"):
        refine(refiner, coarse, torch.tensor([1]), RefineOptions(guidance=2.0))
    with pytest.raises(ValueError, match=r"coarse labels must lie in \[0, 6\)"):
        refine(refiner, coarse + 6, torch.tensor([1]))


# ------------------------------------------------------------------------------------------------
# CTF sampling


@pytest.mark.parametrize(
    "layout_options",
    [dict(grid=(8, 8)), dict(grid=(8, 8), order="region", parallel=4), dict(grid=(8, 8), order="region", parallel=16)],
    ids=["raster", "par-k4", "par-k16"],
)
def test_ctf_sampling_gives_a_fine_id_at_every_position(layout_options):
    layout = Layout(LayoutConfig(**layout_options), COARSE_VOCAB)
    model, refiner = coarse_model(layout), make_refiner()
    labels = torch.tensor([3, 5, 9])
    coarse_options = SamplingOptions(temperature=1.1, guidance=2.0)
    refine_options = RefineOptions(temperature=1.1, restrict_to_cluster=True)
    out = sample_ctf(model, layout, refiner, labels, coarse_options, refine_options, torch.Generator().manual_seed(0))
    assert out.visual.shape == out.coarse.shape == (3, 8, 8)
    assert int(out.visual.min()) >= 0 and int(out.visual.max()) < FINE_VOCAB
    assert torch.equal(TABLE.coarse(out.visual), out.coarse)
    # The coarse stage is the ordinary decode loop with the same generator stream.
    coarse = generate(model, layout, labels, options=coarse_options, generator=torch.Generator().manual_seed(0))
    assert torch.equal(coarse.visual, out.coarse)
    again = sample_ctf(model, layout, refiner, labels, coarse_options, refine_options, torch.Generator().manual_seed(0))
    assert torch.equal(again.visual, out.visual)


def test_ctf_sampling_refuses_a_refiner_of_another_table():
    layout = Layout(LayoutConfig(grid=(4, 4)), COARSE_VOCAB + 1)
    with pytest.raises(ValueError, match="coarse layout has 7 grid labels but the refiner reads 6 clusters"):
        sample_ctf(coarse_model(layout), layout, make_refiner(), torch.tensor([1]))


# ------------------------------------------------------------------------------------------------
# recipes and CLI: cluster -> coarse AR + refiner through the one trainer -> argen sample --refiner

SMALL_MODEL = [
    "model.dim=32",
    "model.n_layer=2",
    "model.n_head=2",
    "model.multiple_of=16",
    "train.batch_size=16",
    "train.log_every=1",
    "train.lr=3e-3",
    "train.warmup_steps=0",
]


@pytest.fixture(scope="module")
def ctf_run(tmp_path_factory):
    """A tiny tokenizer, its token cache and an 8-cluster table of its 32 codes."""
    root = tmp_path_factory.mktemp("ctf")
    assert main(["tokenizer", "train", "--out", str(root / "tok"), *tiny_tokenizer()]) == 0
    tokenizer = root / "tok" / "checkpoint"
    assert main(["tokenize", "--tokenizer", str(tokenizer), "--out", str(root / "cache")]) == 0
    assert (
        main(
            [
                "ctf",
                "cluster",
                "--tokenizer",
                str(tokenizer),
                "--clusters",
                "8",
                "--method",
                "balanced",
                "--out",
                str(root / "table.safetensors"),
            ]
        )
        == 0
    )
    return root


def logged(out_dir, key="model_loss"):
    return [json.loads(line)[key] for line in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


def test_cluster_cli_writes_table_for_its_tokenizer(ctf_run, tmp_path, capsys):
    table = load_table(ctf_run / "table.safetensors")
    assert (table.fine_vocab, table.coarse_vocab, set(table.sizes.tolist())) == (32, 8, {4})
    from argen.io.checkpoint import checkpoint_checksum

    assert table.tokenizer_sha256 == checkpoint_checksum(ctf_run / "tok" / "checkpoint")
    assert histogram_path(ctf_run / "table.safetensors").is_file()
    tokenizer = str(ctf_run / "tok" / "checkpoint")
    assert (
        main(["ctf", "cluster", "--tokenizer", tokenizer, "--clusters", "33", "--out", str(tmp_path / "t.safetensors")])
        == 2
    )
    assert "clusters must be in [1, 32]" in capsys.readouterr().err
    assert (
        main(
            [
                "ctf",
                "cluster",
                "--tokenizer",
                str(tmp_path),
                "--clusters",
                "4",
                "--out",
                str(tmp_path / "t.safetensors"),
            ]
        )
        == 2
    )
    assert "config.json is missing" in capsys.readouterr().err
    assert main(["ctf", "cluster", "--tokenizer", tokenizer, "--clusters", "4", "--out", str(tmp_path / "t.npy")]) == 2
    assert "must name a .safetensors file" in capsys.readouterr().err


def test_coarse_ar_and_refiner_train_and_sample_through_the_cli(ctf_run, tmp_path):
    cache, table = str(ctf_run / "cache"), str(ctf_run / "table.safetensors")
    assert (
        main(
            [
                "train",
                "--cache",
                cache,
                "--coarse-table",
                table,
                "--out",
                str(tmp_path / "ar"),
                *SMALL_MODEL,
                "train.steps=3",
                "layout.order=region",
                "layout.parallel=4",
            ]
        )
        == 0
    )
    # Zero-initialised heads start at the uniform distribution over 8 clusters and over 32 codes.
    assert logged(tmp_path / "ar")[0] == pytest.approx(math.log(8), abs=1e-4)
    assert logged(tmp_path / "ar") == pytest.approx([2.07944, 2.05061, 1.99970], rel=1e-4)
    assert (
        main(
            [
                "ctf",
                "train-refiner",
                "--cache",
                cache,
                "--table",
                table,
                "--out",
                str(tmp_path / "refiner"),
                *SMALL_MODEL,
                "train.steps=3",
                "refiner.coarse_noise=0.2",
                "train.sample_every=3",
            ]
        )
        == 0
    )
    assert logged(tmp_path / "refiner") == pytest.approx([math.log(32), 3.38496, 3.29647], rel=1e-4)
    with Image.open(tmp_path / "refiner" / "samples" / "step-0000003.png") as grid:
        assert grid.width > 3 * grid.height  # 8 decoded cache images over their 8 refinements
    ar, refiner_dir = tmp_path / "ar" / "checkpoint", tmp_path / "refiner" / "checkpoint"
    ids_file = tmp_path / "ids.json"
    assert (
        main(
            [
                "sample",
                "--model",
                str(ar),
                "--refiner",
                str(refiner_dir),
                "--classes",
                "1,2,3",
                "--cfg",
                "2",
                "--refine-temperature",
                "1.1",
                "--refine-restrict",
                "--save-ids",
                str(ids_file),
                "--out",
                str(tmp_path / "samples"),
            ]
        )
        == 0
    )
    saved = json.loads(ids_file.read_text())
    fine, coarse = torch.tensor(saved["ids"]), torch.tensor(saved["coarse"])
    assert fine.shape == coarse.shape == (3, 8, 8) and int(fine.max()) < 32 and int(coarse.max()) < 8
    assert torch.equal(load_table(table).coarse(fine), coarse)
    sampling = json.loads((tmp_path / "samples" / "sampling.json").read_text())
    assert (sampling["steps"], sampling["ar_steps"]) == (4 + 16 - 1 + 1, 4 + 16 - 1)
    assert (tmp_path / "samples" / "samples.png").is_file()
    # The Python API: a CTF pipeline saves and reloads as one directory.
    pipeline = argen.load(ar, refiner=refiner_dir)
    greedy = pipeline.generate_ids([4, 5], greedy=True)
    reloaded = argen.load(pipeline.save_pretrained(tmp_path / "pipe"))
    assert torch.equal(reloaded.generate_ids([4, 5], greedy=True).visual, greedy.visual)
    assert pipeline([1], output_type="np", refine={"top_k": 2}).shape == (1, 16, 16, 1)
    with pytest.raises(ValueError, match="unknown refine option"):
        pipeline.generate_ids([1], refine={"temprature": 1.0})
    # The benchmark times the coarse AR and the refiner pass; images/s, the batch's seconds and the steps cover
    # both, as `argen sample` counts them.
    from argen.bench import run_sample_benchmark

    bench = run_sample_benchmark(model=ar, refiner=refiner_dir, batch=2, repeats=1)
    assert (bench["steps"], bench["ar_steps"]) == (4 + 16 - 1 + 1, 4 + 16 - 1) and 0 < bench["refiner_share"] < 1
    assert bench["seconds_per_batch_median"] == pytest.approx(
        bench["ar_seconds_per_batch_median"] + bench["refiner_seconds_per_batch_median"]
    )
    assert bench["images_per_s"] == pytest.approx(2 / bench["seconds_per_batch_median"])
    assert bench["images_per_s"] < bench["ar_images_per_s"]


def test_the_coarse_ar_task_trains_on_the_cluster_labels_of_the_cached_fine_ids():
    table = CoarseTable(torch.arange(32) % 8)
    layout = Layout(LayoutConfig(grid=(2, 2)), 8)
    torch.manual_seed(0)
    model = build_ar(
        ARRunConfig(
            model=GPTConfig(dim=32, n_layer=1, n_head=2, multiple_of=16, vocab_size=8, num_classes=2),
            layout=LayoutConfig(grid=(2, 2)),
        ),
        8,
    )[1]
    fine, labels = torch.randint(32, (3, 2, 2)), torch.tensor([0, 1, 0])
    coarse_loss, _ = ARTask(model, layout, 2, 0.0, coarse=table).loss(
        "model", {"model": model}, {"ids": fine, "labels": labels}, 0
    )
    plain_loss, _ = ARTask(model, layout, 2, 0.0).loss(
        "model", {"model": model}, {"ids": fine % 8, "labels": labels}, 0
    )
    assert torch.equal(coarse_loss, plain_loss)


def test_coarse_training_refuses_a_table_of_another_tokenizer(ctf_run, tmp_path):
    other = CoarseTable(torch.arange(32) % 8, {"tokenizer_sha256": "0" * 64})
    save_table(other, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="made for the tokenizer with sha256 000000"):
        open_coarse_table(tmp_path / "other.safetensors", open_token_cache(ctf_run / "cache"))
    small = CoarseTable(torch.arange(16) % 8)
    save_table(small, tmp_path / "small.safetensors")
    with pytest.raises(ValueError, match="table has 16 codes but the token cache"):
        open_coarse_table(tmp_path / "small.safetensors", open_token_cache(ctf_run / "cache"))


def test_refiner_restricted_training_and_pairing_checks(ctf_run, tmp_path):
    cache, table = str(ctf_run / "cache"), str(ctf_run / "table.safetensors")
    config = refiner_config_from_cache(
        RefinerRunConfig(
            model=GPTConfig(dim=32, n_layer=1, n_head=2, multiple_of=16),
            refiner=RefinerConfig(restrict_to_cluster=True, coarse_noise=0.5),
            cache=cache,
            coarse_table=table,
            train=TrainConfig(steps=2, batch_size=16, log_every=1, out_dir=str(tmp_path / "r")),
        ),
        open_token_cache(cache),
        8,
    )
    directory = recipes.train_refiner(config, progress=False)
    # Restricted to the 4 codes of each true cluster, the first loss is the uniform one over 4 codes.
    assert logged(tmp_path / "r")[0] == pytest.approx(math.log(4), abs=1e-4)
    refiner, loaded_config, meta = load_refiner(directory)
    assert loaded_config.refiner.restrict_to_cluster and meta["coarse_table"]["coarse_vocab"] == 8
    # Fine-tuning starts only from a refiner of the same table.
    other = tmp_path / "other.safetensors"
    save_table(CoarseTable(torch.arange(32) // 4), other)
    retable = dataclasses.replace(
        config, coarse_table=str(other), train=dataclasses.replace(config.train, init_from=str(directory))
    )
    with pytest.raises(ValueError, match="is not a refiner trained with the table"):
        recipes.train_refiner(retable, progress=False)
    # A fine-id AR model cannot be paired with a refiner.
    assert main(["train", "--cache", cache, "--out", str(tmp_path / "fine"), *SMALL_MODEL, "train.steps=1"]) == 0
    with pytest.raises(ValueError, match="predicts fine ids, not CTF coarse labels"):
        argen.load(tmp_path / "fine" / "checkpoint", refiner=directory)


def test_refiner_resume_equals_uninterrupted(ctf_run, tmp_path):
    common = [
        "--cache",
        str(ctf_run / "cache"),
        "--table",
        str(ctf_run / "table.safetensors"),
        *SMALL_MODEL,
        "train.checkpoint_every=2",
        "train.schedule=constant",
        "refiner.coarse_noise=0.3",
    ]
    assert main(["ctf", "train-refiner", "--out", str(tmp_path / "full"), *common, "train.steps=4"]) == 0
    assert main(["ctf", "train-refiner", "--out", str(tmp_path / "split"), *common, "train.steps=2"]) == 0
    meta_path = tmp_path / "split" / "checkpoint" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["train"]["steps"] = 4
    meta_path.write_text(json.dumps(meta))
    assert main(["ctf", "train-refiner", "--out", str(tmp_path / "split"), *common, "train.steps=4"]) == 0
    assert logged(tmp_path / "split") == logged(tmp_path / "full")
    full, _, _ = load_refiner(tmp_path / "full" / "checkpoint")
    split, _, _ = load_refiner(tmp_path / "split" / "checkpoint")
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), split.state_dict().values()))


def test_cli_coarse_model_without_refiner(ctf_run, tmp_path, capsys):
    cache, table = str(ctf_run / "cache"), str(ctf_run / "table.safetensors")
    assert main(["train", "--cache", cache, "--coarse-table", table, "--print-config"]) == 0
    assert "coarse_table: " + table in capsys.readouterr().out
    assert main(["ctf", "train-refiner", "--cache", cache, "--table", table, "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "vocab_size: 8" in printed and "num_classes: 10" in printed
    assert (
        main(
            [
                "train",
                "--cache",
                cache,
                "--coarse-table",
                table,
                "--out",
                str(tmp_path / "ar"),
                *SMALL_MODEL,
                "train.steps=1",
            ]
        )
        == 0
    )
    ar = str(tmp_path / "ar" / "checkpoint")
    assert main(["sample", "--model", ar, "--classes", "1"]) == 2
    assert "predicts CTF coarse labels: pass --refiner DIR" in capsys.readouterr().err
    ids_file = tmp_path / "coarse.json"
    assert main(["sample", "--model", ar, "--classes", "1", "--greedy", "--save-ids", str(ids_file)]) == 0
    assert int(torch.tensor(json.loads(ids_file.read_text())["ids"]).max()) < 8
    assert main(["sample", "--model", ar, "--classes", "1", "--tokenizer", str(ctf_run / "tok" / "checkpoint")]) == 2
    assert "decoding them needs its refiner" in capsys.readouterr().err
    assert main(["sample", "--model", ar, "--classes", "1", "--refine-top-k", "4", "--save-ids", str(ids_file)]) == 2
    assert "they need --refiner DIR" in capsys.readouterr().err


def test_random_members_stay_in_their_cluster_and_singletons_stay_put():
    table = torch.tensor([0, 1, 0, 2, 1, 0])
    ids = torch.tensor([[0, 1, 2], [3, 4, 5]]).repeat(50, 1)
    swapped = random_members(ids, table, torch.Generator().manual_seed(0))
    assert torch.equal(table[swapped], table[ids]) and not torch.equal(swapped, ids)
    assert torch.equal(swapped[ids == 3], ids[ids == 3])  # code 3 is alone in its cluster
    assert set(swapped[ids == 0].tolist()) == {0, 2, 5}  # every member of cluster 0 is drawn
    assert torch.equal(random_members(ids, torch.arange(6), torch.Generator()), ids)


def test_redundancy_on_the_shipped_tokenizer_favours_clusters_of_alike_codes(capsys):
    """CTF's Fig. 1b premise on the shipped tokenizer: swapping tokens inside k-means clusters barely changes the
    decoded image; inside random groups it ruins it."""
    assert (
        main(
            [
                "ctf",
                "redundancy",
                "--tokenizer",
                str(SHIPPED / "tokenizer"),
                "--clusters",
                "128",
                "--methods",
                "spherical",
                "random",
                "--count",
                "16",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    psnr = {line.split()[0]: float(line.split()[1]) for line in lines[1:]}
    cosine = {line.split()[0]: float(line.split()[5]) for line in lines[1:]}
    assert psnr["spherical"] > psnr["random"] + 10 and psnr["spherical"] > 24
    assert cosine["spherical"] > 0.8 and cosine["random"] < 0.3


def test_the_refiner_ceiling_of_the_shipped_ctf(tmp_path, capsys):
    """The shipped refiner on the true coarse maps of test images: most tokens right, mistakes mostly inside their
    cluster, and images for argen eval."""
    out = tmp_path / "ceiling"
    assert (
        main(
            [
                "ctf",
                "ceiling",
                "--refiner",
                str(SHIPPED / "ctf-refiner"),
                "--tokenizer",
                str(SHIPPED / "tokenizer"),
                "--count",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "metrics.json").read_text())
    assert 0.5 < result["token_accuracy"] < 1 and result["outside_cluster"] < 0.2 and result["psnr_db"] > 15
    assert result["clustering"] == "spherical" and (out / "samples.npz").is_file()
    assert "of tokens right" in capsys.readouterr().out
