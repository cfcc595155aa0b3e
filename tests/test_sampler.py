"""The decode loop: cached == teacher-forced for every layout, greedy == argmax, guidance, filters, forcing, and
speculative Jacobi decoding (greedy equality, the joint distribution kept)."""

import dataclasses

import pytest
import torch

from argen.config import GPTConfig, LayoutConfig
from argen.layout import PROLOGUE, SEPARATOR, VISUAL, Layout
from argen.model import KVCache, Transformer
from argen.sample import SamplingOptions, filter_logits, generate, sample_from_logits

LAYOUTS = {
    "raster": dict(grid=(8, 8)),
    "par-k4": dict(grid=(8, 8), order="region", parallel=4),
    "par-k16": dict(grid=(8, 8), order="region", parallel=16),
    "par-k4-no-initial": dict(grid=(8, 8), order="region", parallel=4, sequential_initial=False),
    "par-k4-causal": dict(grid=(8, 8), order="region", parallel=4, group_attention="causal"),
    "raster-k4": dict(grid=(8, 8), parallel=4),
    "video": dict(grid=(2, 4, 4), order="region", parallel=4),
    "prologue": dict(grid=(4, 4), prologue_length=3, prologue_vocab=6),
    "prologue-par": dict(grid=(8, 8), order="region", parallel=4, prologue_length=3, prologue_vocab=6),
    "prologue-parallel": dict(
        grid=(8, 8),
        order="region",
        parallel=16,
        sequential_initial=False,
        prologue_length=4,
        prologue_vocab=6,
        prologue_parallel=2,
    ),
}
VISUAL_VOCAB = 24
# fp32: the decode loop's argmax must equal the (fp32) teacher-forced one exactly.
GREEDY = SamplingOptions(greedy=True, dtype="fp32")
GUIDED = SamplingOptions(
    greedy=True,
    guidance={"prologue": 0.7, "visual": 3.0},
    dtype="fp32",
    guidance_schedule={"visual": "cosine"},
    guidance_power={"visual": 0.5},
)


def make_layout(name: str) -> Layout:
    return Layout(LayoutConfig(**LAYOUTS[name]), VISUAL_VOCAB)


def make_model(layout: Layout, seed: int = 0, **changes) -> Transformer:
    config = dict(dim=64, n_layer=2, n_head=4, multiple_of=32, vocab_size=layout.vocab_size, num_classes=10)
    config.update(changes)
    torch.manual_seed(seed)
    model = Transformer(GPTConfig(**config), n_transition=layout.n_transition)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return model.eval()


def random_sample(layout: Layout, batch: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    visual = torch.randint(0, VISUAL_VOCAB, (batch, *layout.grid), generator=generator)
    prologue = None
    if layout.prologue_length:
        prologue = torch.randint(0, layout.config.prologue_vocab, (batch, layout.prologue_length), generator=generator)
    return visual, prologue


def teacher_forced_logits(model: Transformer, layout: Layout, visual, prologue, labels) -> torch.Tensor:
    tensors = layout.training_tensors(visual, labels, prologue)
    return model(tensors["ids"], tensors["kinds"], layout.rope(model.config), tensors["mask"])


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_cached_steps_equal_teacher_forcing(name):
    layout = make_layout(name)
    model = make_model(layout)
    visual, prologue = random_sample(layout, 2)
    labels = torch.tensor([1, 10])  # one real class, one null class
    tensors = layout.training_tensors(visual, labels, prologue)
    rope = layout.rope(model.config)
    full = model(tensors["ids"], tensors["kinds"], rope, tensors["mask"])
    cache = KVCache.allocate(model, 2, layout.sequence_length, torch.float32, "cpu")
    slots = torch.arange(layout.sequence_length)
    pieces = []
    with torch.no_grad():
        for step in layout.steps:
            part = slice(step.slot_start, step.slot_end)
            pieces.append(
                model(
                    tensors["ids"][:, part],
                    tensors["kinds"][part],
                    rope[part],
                    tensors["mask"][part],
                    cache=cache,
                    cache_slots=slots[part],
                    kv_length=step.slot_end,
                )
            )
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() < 1e-4


def expected_greedy(model: Transformer, layout: Layout, visual, prologue, labels, options: SamplingOptions):
    """Local ids in generation order that greedy decoding must produce, from teacher-forced logits."""
    conditional = teacher_forced_logits(model, layout, visual, prologue, labels)
    unconditional = teacher_forced_logits(model, layout, visual, prologue, torch.full_like(labels, 10))
    guided = options.guided(layout)
    chosen = []
    for step in layout.steps:
        rows = slice(step.slot_start, step.slot_start + step.n_output)
        logits = conditional[:, rows, step.id_low : step.id_high]
        scale = options.guidance_scale(step)
        if guided and scale != 1.0:
            uncond = unconditional[:, rows, step.id_low : step.id_high]
            logits = uncond + scale * (logits - uncond)
        chosen.append(logits.argmax(-1))
    return torch.cat(chosen, dim=1)


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("options", [GREEDY, GUIDED], ids=["plain", "guided"])
def test_greedy_decode_equals_teacher_forced_argmax(name, options):
    layout = make_layout(name)
    model = make_model(layout)
    labels = torch.tensor([2, 7])
    out = generate(model, layout, labels, options=options)
    assert out.visual.shape == (2, *layout.grid)
    generated = layout.generated_sequence(out.visual, out.prologue)
    local = generated - torch.tensor([layout.segment_of(i).offset for i in range(layout.generated_length)])
    assert torch.equal(local, expected_greedy(model, layout, out.visual, out.prologue, labels, options))
    # A random model's greedy output must not be constant (the check above would then be weak).
    assert out.visual.unique().numel() > 3


def test_same_seed_gives_same_ids():
    layout = make_layout("prologue-par")
    model = make_model(layout)
    labels = torch.tensor([1, 2, 3])
    options = SamplingOptions(temperature=1.2, top_k=10, guidance=2.0)
    runs = [
        generate(model, layout, labels, options=options, generator=torch.Generator().manual_seed(seed))
        for seed in (5, 5, 6)
    ]
    assert torch.equal(runs[0].visual, runs[1].visual) and torch.equal(runs[0].prologue, runs[1].prologue)
    assert not torch.equal(runs[0].visual, runs[2].visual)
    assert int(runs[0].visual.max()) < VISUAL_VOCAB and int(runs[0].prologue.max()) < 6


def test_unit_guidance_is_the_conditional_path():
    layout = make_layout("prologue")
    model = make_model(layout)
    labels = torch.tensor([4, 5])
    plain = generate(model, layout, labels, generator=torch.Generator().manual_seed(3))
    # Guidance on the visual segment only: the batch is doubled, but the prologue (scale 1) must be
    # sampled from exactly the conditional logits, so it matches the unguided run draw for draw.
    guided = generate(
        model,
        layout,
        labels,
        options=SamplingOptions(guidance={"visual": 4.0}),
        generator=torch.Generator().manual_seed(3),
    )
    assert torch.equal(plain.prologue, guided.prologue)
    assert not torch.equal(plain.visual, guided.visual)
    assert not SamplingOptions(guidance=1.0).guided(layout)


def test_guidance_schedules():
    layout = make_layout("raster")
    steps = layout.steps
    constant = SamplingOptions(guidance=3.0)
    linear = SamplingOptions(guidance=3.0, guidance_schedule="linear")
    cosine = SamplingOptions(guidance=3.0, guidance_schedule="cosine", guidance_power=2.0)
    assert constant.guidance_scale(steps[0]) == 3.0 and constant.guidance_scale(steps[40]) == 3.0
    assert linear.guidance_scale(steps[0]) == 1.0
    assert linear.guidance_scale(steps[32]) == pytest.approx(2.0)  # progress 32/64
    assert cosine.guidance_scale(steps[0]) == 1.0
    assert cosine.guidance_scale(steps[32]) == pytest.approx(1 + 2 * (1 - torch.cos(torch.tensor(torch.pi / 4))) / 2)
    prologue = make_layout("prologue")
    split = SamplingOptions(guidance={"prologue": 0.7, "visual": 2.0})
    scales = {step.segment: split.guidance_scale(step) for step in prologue.steps}
    assert scales == {PROLOGUE: 0.7, SEPARATOR: 1.0, VISUAL: 2.0}


class BiasedModel(Transformer):
    """Pushes every step towards the separator, prologue id 2 and visual id 3."""

    def forward(self, *args, **kwargs):
        logits = super().forward(*args, **kwargs).clone()
        visual, prologue_offset, separator = 3, VISUAL_VOCAB + 2, VISUAL_VOCAB + 6
        logits[..., visual] += 50.0
        logits[..., prologue_offset] += 50.0
        logits[..., separator] += 100.0
        return logits


def test_logits_are_restricted_to_the_segment_vocabulary():
    layout = make_layout("prologue-par")
    model = make_model(layout)
    biased = BiasedModel(model.config, n_transition=layout.n_transition).eval()
    biased.load_state_dict(model.state_dict())
    out = generate(biased, layout, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(0))
    assert torch.all(out.prologue == 2) and torch.all(out.visual == 3)


def test_forced_ids_are_kept():
    layout = make_layout("prologue-par")
    model = make_model(layout)
    labels = torch.tensor([1, 2])
    fixed_prologue = torch.tensor([[5, 0, 3], [1, 1, 4]])
    visual_hint = torch.full((2, 8, 8), -1)
    visual_hint[:, 0] = 7  # first image row fixed
    out = generate(
        model,
        layout,
        labels,
        options=SamplingOptions(guidance=2.0),
        generator=torch.Generator().manual_seed(0),
        forced={"prologue": fixed_prologue, "visual": visual_hint},
    )
    assert torch.equal(out.prologue, fixed_prologue)
    assert torch.all(out.visual[:, 0] == 7) and not torch.all(out.visual[:, 1:] == 7)
    # Greedy continuation after a forced prologue is the teacher-forced argmax of that prologue.
    greedy = generate(model, layout, labels, options=GREEDY, forced={"prologue": fixed_prologue})
    expected = expected_greedy(model, layout, greedy.visual, fixed_prologue, labels, GREEDY)
    assert torch.equal(layout.to_generation_order(greedy.visual), expected[:, 4:])
    with pytest.raises(ValueError, match="forced prologue ids must be"):
        generate(model, layout, labels, forced={"prologue": fixed_prologue[:, :2]})
    with pytest.raises(ValueError, match="-1 \\(free\\) or in"):
        generate(model, layout, labels, forced={"prologue": fixed_prologue + 10})


def test_top_k_one_and_tiny_top_p_are_greedy():
    layout = make_layout("par-k4")
    model = make_model(layout)
    labels = torch.tensor([3, 9])
    greedy = generate(model, layout, labels, options=SamplingOptions(greedy=True)).visual
    for options in (SamplingOptions(top_k=1), SamplingOptions(top_p=1e-6)):
        sampled = generate(model, layout, labels, options=options, generator=torch.Generator().manual_seed(1))
        assert torch.equal(sampled.visual, greedy)


def test_filters_keep_ties_and_the_first_token_over_top_p():
    logits = torch.tensor([[2.0, 1.0, 1.0, 0.0]])
    assert torch.isfinite(filter_logits(logits, 2, 1.0)).tolist() == [[True, True, True, False]]
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), 0, 0.6)).tolist()
    assert kept == [[True, True, False, False]]  # 0.5 < 0.6, so the token crossing it (0.3) stays
    assert torch.isfinite(filter_logits(probs.log(), 0, 0.4)).tolist() == [[True, False, False, False]]


def test_sampling_follows_the_softmax_and_never_draws_excluded_ids():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(40000, -1)
    draws = sample_from_logits(logits, 1.0, 0, 1.0, False, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=4).float() / draws.numel()
    assert torch.allclose(frequencies, probs, atol=0.01)
    cooled = sample_from_logits(logits, 0.5, 0, 1.0, False, torch.Generator().manual_seed(0))
    expected = torch.softmax(probs.log() / 0.5, dim=0)
    assert torch.allclose(torch.bincount(cooled, minlength=4).float() / cooled.numel(), expected, atol=0.01)
    holes = torch.tensor([0.0, 0.5, 0.0, 0.0, 0.5, 0.0]).log().expand(20000, -1)  # zero mass at both ends too
    drawn = sample_from_logits(holes, 1.0, 0, 1.0, False, torch.Generator().manual_seed(1))
    assert set(drawn.unique().tolist()) == {1, 4}
    top2 = sample_from_logits(logits, 1.0, 2, 1.0, False, torch.Generator().manual_seed(2))
    assert set(top2.unique().tolist()) == {2, 3}


def test_bf16_and_cache_reuse_and_training_mode_restored():
    layout = make_layout("par-k4")
    model = make_model(layout).train()
    labels = torch.tensor([1, 2])
    cache = KVCache.allocate(model, 2, layout.sequence_length, torch.float32, "cpu")
    first = generate(model, layout, labels, options=GREEDY, cache=cache)
    again = generate(model, layout, labels, options=GREEDY, cache=cache)
    assert torch.equal(first.visual, again.visual) and model.training
    half = generate(model, layout, labels, options=SamplingOptions(greedy=True, dtype="bf16"))
    assert half.visual.shape == (2, 8, 8) and int(half.visual.max()) < VISUAL_VOCAB
    assert (half.visual == first.visual).float().mean() > 0.3  # bf16 drifts but follows the same model


def test_generate_rejects_mismatches():
    layout = make_layout("par-k4")
    model = make_model(layout)
    with pytest.raises(ValueError, match="vocab_size"):
        generate(make_model(make_layout("prologue")), layout, torch.tensor([1]))
    no_transitions = make_model(make_layout("raster"))
    with pytest.raises(ValueError, match="transition embeddings"):
        generate(no_transitions, layout, torch.tensor([1]))
    with pytest.raises(ValueError, match="null class"):
        generate(
            make_model(layout, class_dropout_prob=0.0), layout, torch.tensor([1]), options=SamplingOptions(guidance=2.0)
        )
    with pytest.raises(ValueError, match="labels must be in"):
        generate(model, layout, torch.tensor([11]))
    with pytest.raises(ValueError, match="unknown segment"):
        SamplingOptions(temperature={"visul": 1.0})
    with pytest.raises(ValueError, match="guidance_schedule"):
        SamplingOptions(guidance_schedule="exp")


def test_on_step_sees_every_step_in_order_and_can_stop_decoding():
    layout = make_layout("prologue-par")
    model = make_model(layout)
    labels = torch.tensor([1, 2])
    seen = []
    result = generate(
        model,
        layout,
        labels,
        options=SamplingOptions(greedy=True),
        on_step=lambda step, ids: seen.append((step.index, ids[:, : step.output_end].clone())),
    )
    assert [index for index, _ in seen] == list(range(layout.num_steps))
    final = layout.generated_sequence(result.visual, result.prologue)
    assert all(torch.equal(ids, final[:, : ids.shape[1]]) for _, ids in seen)  # each prefix is what was kept

    class Stop(Exception):
        pass

    def stop_at_third(step, ids):
        if step.index == 2:
            raise Stop

    with pytest.raises(Stop):
        generate(model, layout, labels, on_step=stop_at_third)


# ------------------------------------------------------------------------------------------------
# speculative Jacobi decoding


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("window", [2, 4, 16])
def test_greedy_speculative_decoding_equals_greedy_decoding(name, window):
    """Jacobi decoding's fixed point: every window size gives plain greedy's tokens, guided or not, in no more
    forward passes than the Layout has steps."""
    layout = make_layout(name)
    model = make_model(layout)
    labels = torch.tensor([3, 7])
    for options in (GREEDY, GUIDED):
        plain = generate(model, layout, labels, options=options)
        fast = generate(model, layout, labels, options=dataclasses.replace(options, speculative=window))
        assert torch.equal(fast.visual, plain.visual), (name, window)
        if plain.prologue is not None:
            assert torch.equal(fast.prologue, plain.prologue)
        assert plain.forward_passes == layout.num_steps and fast.forward_passes <= layout.num_steps
    forced = {"visual": torch.full((2, *layout.grid), -1)}
    forced["visual"][:, 0] = 5
    assert torch.equal(
        generate(model, layout, labels, options=GREEDY, forced=forced).visual,
        generate(model, layout, labels, options=dataclasses.replace(GREEDY, speculative=window), forced=forced).visual,
    )


def _sequence_counts(layout: Layout, model: Transformer, options: SamplingOptions, count: int, seed: int):
    generated = generate(
        model, layout, torch.arange(count) % 2, options=options, generator=torch.Generator().manual_seed(seed)
    )
    sequences = layout.generated_sequence(generated.visual, generated.prologue)
    codes = torch.zeros(count, dtype=torch.long)
    for column in range(sequences.shape[1]):
        codes = codes * layout.vocab_size + sequences[:, column]
    return torch.bincount(codes), generated.forward_passes


DISTRIBUTION_LAYOUTS = {  # small vocabularies and grids: every joint sequence has a cell of the histogram
    "raster": (dict(grid=(2, 2)), 3),
    "par": (dict(grid=(2, 4), order="region", parallel=2, regions=(1, 2)), 2),
    "prologue": (dict(grid=(2, 2), prologue_length=2, prologue_vocab=2), 2),
}


@pytest.mark.parametrize("name", DISTRIBUTION_LAYOUTS)
def test_speculative_sampling_keeps_the_joint_distribution(name):
    """20,000 sequences sampled with SJD (window 4) against 20,000 sampled plainly, tokens over every step of a tiny
    model: a chi-square test of homogeneity of the joint histograms must not reject at 0.1 % (seeded); the same
    test tells temperature 1 from 1.3 (its power), and SJD needs fewer forward passes."""
    from scipy.stats import chi2_contingency

    settings, vocab = DISTRIBUTION_LAYOUTS[name]
    layout = Layout(LayoutConfig(**settings), vocab)
    model = make_model(layout, dim=32, n_layer=1, n_head=2, num_classes=2)
    options = SamplingOptions(guidance=1.5, dtype="fp32")

    def p_value(first, second):
        size = max(len(first), len(second))
        table = torch.stack([torch.nn.functional.pad(c, (0, size - len(c))) for c in (first, second)])
        return chi2_contingency(table[:, table.sum(0) > 0].numpy())[1]

    plain, plain_passes = _sequence_counts(layout, model, options, 20_000, seed=1)
    fast, fast_passes = _sequence_counts(layout, model, dataclasses.replace(options, speculative=4), 20_000, seed=2)
    hotter, _ = _sequence_counts(layout, model, dataclasses.replace(options, temperature=1.3), 20_000, seed=3)
    assert (plain > 0).sum() > 20  # a distribution, not one sequence
    assert p_value(plain, fast) > 1e-3
    assert p_value(plain, hotter) < 1e-6
    assert plain_passes == layout.num_steps and fast_passes <= layout.num_steps


def test_speculative_decoding_options_are_checked():
    with pytest.raises(ValueError, match="speculative must be an integer >= 0"):
        SamplingOptions(speculative=-2)


def test_sample_command_records_the_forward_passes_of_speculative_decoding(tmp_path):
    import json
    from pathlib import Path

    from argen.cli import main

    model = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64" / "ar-par4"
    assert (
        main(
            [
                "sample",
                "--model",
                str(model),
                "--count",
                "2",
                "--batch",
                "1",
                "--speculative",
                "8",
                "--dtype",
                "fp32",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    recorded = json.loads((tmp_path / "sampling.json").read_text())
    assert recorded["speculative"] == 8 and recorded["steps"] == 67
    assert recorded["forward_passes_per_batch"] < 67


def test_split_prologue_guides_and_tempers_the_two_segments_apart():
    """Prologue's split settings (`argen sample --prologue-cfg/--prologue-temperature`): a constant scale and a
    temperature of their own on the prologue tokens, the given schedule on the visual ones."""
    shared = {"guidance": 4.0, "guidance_schedule": "cosine", "guidance_power": 0.25, "temperature": 0.8}
    split = SamplingOptions.split_prologue(shared, guidance=0.7, temperature=1.05)
    assert split["guidance"] == {"visual": 4.0, "prologue": 0.7}
    assert split["guidance_schedule"] == {"visual": "cosine", "prologue": "constant"}
    assert split["guidance_power"] == {"visual": 0.25, "prologue": 1.0}
    assert split["temperature"] == {"visual": 0.8, "prologue": 1.05}
    assert SamplingOptions(**split).segment_value("guidance", "prologue") == 0.7
    assert SamplingOptions.split_prologue(shared) == shared  # nothing given: nothing split


def test_sample_command_takes_the_models_recorded_settings_unless_flags_set_them(tmp_path, capsys):
    import json
    from pathlib import Path

    from argen.cli import main

    model = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist64" / "ar-par16"
    recorded = json.loads((model / "config.json").read_text())["sampling"]
    assert recorded["guidance"] != 1.0 and recorded["temperature"] != 1.0  # chosen on its validation split

    def settings(*flags: str) -> dict:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        assert main(["sample", "--model", str(model), "--count", "1", "--out", str(out), *flags]) == 0
        return json.loads((out / "sampling.json").read_text())

    plain = settings()
    assert (plain["guidance"], plain["temperature"]) == (recorded["guidance"], recorded["temperature"])
    assert "the model's recorded settings" in capsys.readouterr().out
    # a guidance flag replaces the recorded guidance as a whole; the temperature stays the recorded one
    ramped = settings("--cfg-schedule", "cosine")
    assert "{'temperature'" in capsys.readouterr().out
    assert (ramped["guidance"], ramped["guidance_schedule"], ramped["temperature"]) == (
        1.0,
        "cosine",
        recorded["temperature"],
    )
    chosen = settings("--cfg", "1.5", "--temperature", "1.0")
    assert (chosen["guidance"], chosen["temperature"]) == (1.5, 1.0)
    assert "recorded settings" not in capsys.readouterr().out


def test_settings_are_described_for_people():
    assert SamplingOptions(guidance=3.0).describe("guidance") == "3"
    assert SamplingOptions(guidance=2.0, guidance_schedule="linear").describe("guidance") == "linear to 2"
    split = SamplingOptions(
        guidance={"prologue": 0.7, "visual": 4.0},
        guidance_schedule={"visual": "cosine"},
        guidance_power={"visual": 0.25},
        temperature=0.8,
    )
    assert split.describe("guidance") == "prologue 0.7, visual cosine^0.25 to 4"
    assert split.describe("temperature") == "0.8"
