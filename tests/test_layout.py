"""Layout: orders, steps, PAR's exact sequence/mask/positions, no leakage, id mappings."""

import math

import pytest
import torch

from argen.config import GPTConfig, LayoutConfig
from argen.layout import IGNORE_INDEX, PROLOGUE, SEPARATOR, VISUAL, Layout
from argen.model import SLOT_CLASS, SLOT_TOKEN, SLOT_TRANSITION, rope_table

LAYOUTS = {
    "raster": dict(grid=(8, 8)),
    "raster-k4": dict(grid=(8, 8), parallel=4),
    "par-k4": dict(grid=(8, 8), order="region", parallel=4),
    "par-k16": dict(grid=(8, 8), order="region", parallel=16),
    "par-k4-no-initial": dict(grid=(8, 8), order="region", parallel=4, sequential_initial=False),
    "par-k4-causal": dict(grid=(8, 8), order="region", parallel=4, group_attention="causal"),
    "non-square": dict(grid=(4, 8), order="region", parallel=4),
    "explicit-regions": dict(grid=(6, 4), order="region", parallel=6, regions=(3, 2)),
    "video": dict(grid=(2, 4, 4), order="region", parallel=4),
    "video-time-regions": dict(grid=(2, 4, 4), order="region", parallel=8, regions=(2, 2, 2)),
    "prologue": dict(grid=(4, 4), prologue_length=3, prologue_vocab=5),
    "prologue-par": dict(grid=(8, 8), order="region", parallel=4, prologue_length=3, prologue_vocab=5),
    "prologue-par-no-initial": dict(
        grid=(4, 4), order="region", parallel=4, sequential_initial=False, prologue_length=2, prologue_vocab=3
    ),
    "prologue-parallel": dict(
        grid=(8, 8),
        order="region",
        parallel=16,
        sequential_initial=False,
        prologue_length=4,
        prologue_vocab=3,
        prologue_parallel=2,
    ),
}
SHRINKING = {"prologue-parallel"}  # the separator's group is smaller than the prologue group before it


def make(name: str, vocab: int = 16) -> Layout:
    return Layout(LayoutConfig(**LAYOUTS[name]), vocab)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_token_produced_once_and_fed_at_most_once(name):
    layout = make(name)
    assert sorted(layout.visual_order.tolist()) == list(range(math.prod(layout.grid)))
    targets = layout.targets_index[layout.targets_index >= 0]
    assert sorted(targets.tolist()) == list(range(layout.generated_length))
    fed = layout.input_source[layout.input_source >= 0].tolist()
    last = layout.steps[-1]
    assert sorted(fed) == list(range(last.output_start))  # the last group is never fed back
    assert layout.sequence_length == len(layout.kinds) == layout.mask.shape[0]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_no_slot_sees_its_target_or_anything_after(name):
    layout = make(name)
    mask, source, target, step = layout.mask, layout.input_source, layout.targets_index, layout.step_of_slot
    for slot in range(layout.sequence_length):
        first_output = layout.steps[int(step[slot])].output_start
        visible = source[mask[slot]]
        # Everything a slot sees was generated before its own output group.
        assert torch.all(visible < first_output), (name, slot)
        # The slot feeding this slot's target (if it is fed at all) lies in a strictly later step.
        for feeder in (source == target[slot]).nonzero().flatten().tolist() if target[slot] >= 0 else []:
            assert not mask[slot, feeder] and step[feeder] > step[slot]


def test_par_permutation_example():
    layout = Layout(LayoutConfig(grid=(4, 4), order="region", parallel=4), 16)
    assert layout.visual_order.tolist() == [0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15]


def test_par_permutation_matches_the_reference_view_permute():
    # Reference §4.2: view (B, s, L/s, s, L/s), permute to (in-row, in-col, region-row, region-col).
    for side, k in ((24, 4), (24, 16), (16, 4)):
        s = math.isqrt(k)
        raster = torch.arange(side * side).view(1, s, side // s, s, side // s)
        expected = raster.permute(0, 2, 4, 1, 3).reshape(-1)
        layout = Layout(LayoutConfig(grid=(side, side), order="region", parallel=k), 16)
        assert torch.equal(layout.visual_order, expected)
        codes = torch.randint(0, 16, (2, side, side))
        inverse = layout.to_generation_order(codes).view(2, side // s, side // s, s, s).permute(0, 3, 1, 4, 2)
        assert torch.equal(inverse.reshape(2, side, side), codes)  # PAR's inverse recipe


@pytest.mark.parametrize(
    "grid,k,steps", [((16, 16), 4, 67), ((16, 16), 16, 31), ((24, 24), 4, 147), ((24, 24), 16, 51), ((16, 16), 1, 256)]
)
def test_step_counts(grid, k, steps):
    assert Layout(LayoutConfig(grid=grid, order="region", parallel=k), 16).num_steps == steps


def test_step_counts_of_ablations_and_prologue():
    assert Layout(LayoutConfig(grid=(16, 16), order="region", parallel=4, sequential_initial=False), 8).num_steps == 64
    assert Layout(LayoutConfig(grid=(16, 16), parallel=4), 8).num_steps == 67
    prologue = Layout(LayoutConfig(grid=(16, 16), order="region", parallel=4, prologue_length=16, prologue_vocab=8), 8)
    assert prologue.num_steps == 67 + 17
    assert prologue.vocab_size == 8 + 8 + 1
    # The demo's combined model: prologue 4 at a time, the separator, PAR-16x without sequential initial tokens.
    combined = Layout(
        LayoutConfig(
            grid=(16, 16),
            order="region",
            parallel=16,
            sequential_initial=False,
            prologue_length=16,
            prologue_vocab=8,
            prologue_parallel=4,
        ),
        8,
    )
    assert combined.group_sizes == [4] * 4 + [1] + [16] * 16 and combined.num_steps == 21


def test_parallel_prologue_groups():
    layout = make("prologue-parallel", vocab=16)
    assert [(step.segment, step.n_fed, step.n_transition, step.n_output) for step in layout.steps[:4]] == [
        (PROLOGUE, 1, 1, 2),
        (PROLOGUE, 2, 0, 2),
        (SEPARATOR, 2, 0, 1),
        (VISUAL, 1, 15, 16),
    ]
    assert [step.progress for step in layout.steps[:2]] == [0.0, 0.5]
    # The separator's group feeds two prologue tokens; the second slot has nothing to predict.
    visual = torch.zeros(1, 8, 8, dtype=torch.long)
    targets = layout.training_tensors(visual, torch.tensor([0]), torch.zeros(1, 4, dtype=torch.long))["targets"]
    assert (targets == IGNORE_INDEX).nonzero()[:, 1].tolist() == [layout.steps[2].slot_start + 1]


def par_reference_mask(length: int, k: int) -> torch.Tensor:
    """PAR's group mask, transcribed from reference §4.4."""
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    mask[:, 0] = True
    group = 0
    while k + group * k < length:
        mask[k + group * k : k + (group + 1) * k, : k + (group + 1) * k] = True
        group += 1
    return mask


@pytest.mark.parametrize("side", [4, 8])
def test_mask_equals_par_reference(side):
    layout = Layout(LayoutConfig(grid=(side, side), order="region", parallel=4), 16)
    assert layout.sequence_length == side * side
    assert torch.equal(layout.mask, par_reference_mask(side * side, 4))


def test_par_training_sequence_targets_and_positions():
    k, side = 4, 8
    layout = Layout(LayoutConfig(grid=(side, side), order="region", parallel=k), 16)
    codes = torch.randint(0, 16, (2, side, side))
    labels = torch.tensor([3, 7])
    tensors = layout.training_tensors(codes, labels)
    order = layout.to_generation_order(codes)  # t_0..t_{N-1}
    n = side * side
    # [cls][t0..t_{k-2}][t_{k-1}, M_1..M_{k-1}][t_k .. t_{N-k-1}], reference §4.3.
    expected_ids = torch.cat(
        [labels[:, None], order[:, :k], torch.arange(k - 1).expand(2, -1), order[:, k : n - k]], dim=1
    )
    assert torch.equal(tensors["ids"], expected_ids)
    expected_kinds = [SLOT_CLASS] + [SLOT_TOKEN] * k + [SLOT_TRANSITION] * (k - 1) + [SLOT_TOKEN] * (n - 2 * k)
    assert tensors["kinds"].tolist() == expected_kinds
    assert torch.equal(tensors["targets"], order)  # slot p predicts token p
    assert layout.n_transition == k - 1
    # RoPE: permuted 2D rows, zero rows for the class and the M tokens (reference §4.3).
    coords = torch.tensor([[i // side, i % side] for i in range(n)], dtype=torch.float32)
    raster_rows = rope_table(coords, torch.zeros(n, dtype=torch.bool), 16, 10000.0)
    permuted = raster_rows[layout.visual_order]
    zero = torch.zeros(1, 8, 2)
    expected_rope = torch.cat([zero, permuted[:k], zero.expand(k - 1, -1, -1), permuted[k : n - k]])
    assert torch.equal(layout.rope(GPTConfig(dim=32, n_head=2)), expected_rope)  # head_dim 16, base 10000


def test_raster_sequence_is_llamagen():
    layout = Layout(LayoutConfig(grid=(4, 4)), 16)
    codes = torch.randint(0, 16, (1, 4, 4))
    tensors = layout.training_tensors(codes, torch.tensor([2]))
    assert tensors["ids"].tolist() == [[2] + codes.flatten()[:-1].tolist()]
    assert torch.equal(tensors["targets"], codes.flatten(1))
    assert torch.equal(tensors["mask"], torch.ones(16, 16, dtype=torch.bool).tril())
    assert layout.n_transition == 0


def test_no_initial_ablation_pads_the_class_group():
    layout = Layout(LayoutConfig(grid=(4, 4), order="region", parallel=4, sequential_initial=False), 16)
    assert layout.kinds[:4].tolist() == [SLOT_CLASS] + [SLOT_TRANSITION] * 3
    assert layout.mask[:4, :4].all() and not layout.mask[:4, 4:].any()
    assert layout.steps[0].n_output == 4 and layout.n_transition == 3


def test_causal_group_attention_ablation():
    full = make("par-k4")
    causal = make("par-k4-causal")
    assert torch.equal(causal.mask, full.mask & torch.ones_like(full.mask).tril())
    assert not torch.equal(causal.mask, full.mask)


def test_video_grid_puts_time_outermost_by_default():
    layout = make("video")
    assert layout.regions == (1, 2, 2)
    assert sorted(layout.visual_order[:16].tolist()) == list(range(16))  # frame 0 first
    assert layout.visual_order[:4].tolist() == [0, 2, 8, 10]
    split = make("video-time-regions")
    assert split.visual_order[:8].tolist() == [0, 2, 8, 10, 16, 18, 24, 26]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_grid_round_trip(name):
    layout = make(name)
    codes = torch.randint(0, 16, (3, *layout.grid))
    assert torch.equal(layout.to_grid(layout.to_generation_order(codes)), codes)


def test_prologue_segments_ids_and_positions():
    layout = make("prologue", vocab=16)
    assert layout.segments[PROLOGUE].offset == 16 and layout.segments[SEPARATOR].offset == 21
    assert layout.vocab_size == 22
    codes = torch.randint(0, 16, (2, 4, 4))
    prologue = torch.randint(0, 5, (2, 3))
    tensors = layout.training_tensors(codes, torch.tensor([1, 2]), prologue)
    generated = torch.cat([prologue + 16, torch.full((2, 1), 21), codes.flatten(1)], dim=1)
    assert torch.equal(tensors["targets"], generated)
    assert torch.equal(tensors["ids"][:, 1:], generated[:, :-1])
    assert layout.steps[3].segment == SEPARATOR and (layout.steps[3].id_low, layout.steps[3].id_high) == (21, 22)
    assert (layout.steps[0].id_low, layout.steps[0].id_high) == (16, 21)
    assert (layout.steps[4].id_low, layout.steps[4].id_high) == (0, 16)
    # The prologue and separator form a 1D line before the grid; visual slots keep grid coordinates.
    assert layout.coords[1:5].tolist() == [[-4.0, 0.0], [-3.0, 0.0], [-2.0, 0.0], [-1.0, 0.0]]
    assert layout.coords[5].tolist() == [0.0, 0.0] and layout.coords[6].tolist() == [0.0, 1.0]
    assert layout.null.tolist() == [True] + [False] * (layout.sequence_length - 1)


@pytest.mark.parametrize("name", sorted(set(LAYOUTS) - SHRINKING))
def test_every_slot_has_a_target_when_groups_never_shrink(name):
    # Slots without a target (-100) appear only when a group is smaller than the one before it,
    # which none of these layouts has: the training sequence has no wasted slots.
    layout = make(name)
    visual = torch.zeros(1, *layout.grid, dtype=torch.long)
    prologue = torch.zeros(1, layout.prologue_length, dtype=torch.long) if layout.prologue_length else None
    targets = layout.training_tensors(visual, torch.tensor([0]), prologue)["targets"]
    assert (targets != IGNORE_INDEX).all() and layout.sequence_length == layout.generated_length


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_decode_plan_is_contiguous_and_consistent(name):
    layout = make(name)
    slot, output = 0, 0
    for step in layout.steps:
        assert step.slot_start == slot and step.output_start == output
        assert step.n_slots == step.n_fed + step.n_transition >= step.n_output
        kinds = layout.kinds[step.slot_start : step.slot_end]
        assert kinds[step.n_fed :].eq(SLOT_TRANSITION).all()
        assert kinds[: step.n_fed].eq(SLOT_CLASS if step.index == 0 else SLOT_TOKEN).all()
        if step.index > 0:
            previous = layout.steps[step.index - 1]
            assert (step.fed_start, step.n_fed) == (previous.output_start, previous.n_output)
        segment = layout.segments[step.segment]
        assert segment.start <= step.output_start < step.output_end <= segment.start + segment.length
        assert 0.0 <= step.progress < 1.0
        slot, output = step.slot_end, step.output_end
    assert (slot, output) == (layout.sequence_length, layout.generated_length)


@pytest.mark.parametrize(
    "config,message",
    [
        (dict(grid=(6, 6), order="region", parallel=4, regions=(4, 1)), "does not divide"),
        (dict(grid=(8, 8), order="region", parallel=8), "perfect square"),
        (dict(grid=(8, 8), regions=(2, 2), parallel=4), "order='region' only"),
        (dict(grid=(5, 5), parallel=4), "must divide"),
        (dict(grid=(8, 8), prologue_length=4), "prologue_vocab"),
        (dict(grid=(8, 8), prologue_length=4, prologue_vocab=2, prologue_parallel=3), "prologue_parallel=3"),
        (dict(grid=(8, 8), order="spiral"), "raster' or 'region"),
        (dict(grid=(8,)), r"\(H, W\)"),
        (dict(grid=(8, 8), order="region", parallel=4, regions=(4, 2)), "number of regions"),
    ],
)
def test_invalid_layouts_are_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        Layout(LayoutConfig(**config), 16)


def test_training_tensors_reject_wrong_shapes():
    layout = make("prologue")
    with pytest.raises(ValueError, match="prologue ids"):
        layout.training_tensors(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="expected visual ids"):
        layout.training_tensors(torch.zeros(2, 4, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="no prologue"):
        make("raster").training_tensors(
            torch.zeros(1, 8, 8, dtype=torch.long),
            torch.zeros(1, dtype=torch.long),
            torch.zeros(1, 3, dtype=torch.long),
        )
