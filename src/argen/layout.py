"""The Layout: how one sample becomes a token sequence, for training and for decoding.

The *generated sequence* is what the AR model produces, in generation order:
`[prologue p_0..p_{P-1}, separator, visual tokens in generation order]` (without a prologue: just the
visual tokens). Each generated token belongs to a segment with its own vocabulary, placed in the
transformer's global id space as visual [0, V), prologue [V, V+Vp), separator V+Vp.

Visual generation order is raster, or PAR's region order: the grid is cut into equal blocks
(regions) and the order runs over the position inside a region (outer loop, raster) and then over
the regions (inner loop, raster). A (T, H, W) grid is cut over H and W only by default
(regions (1, s, s)), so the in-region position (t, h, w) puts time in the outermost loop: frame
after frame, each frame in PAR order. An explicit `regions` tuple may cut time too.

Steps G_0..G_{S-1} partition the generated sequence into consecutive groups produced together:
prologue tokens one per step, or groups of `prologue_parallel`; the separator alone; visual tokens one
per step (parallel k = 1), or groups of k consecutive tokens (PAR), optionally after k single steps
(`sequential_initial`).

One rule derives both the training sequence and the decode plan. Input group I_0 is the class slot;
I_j (j > 0) feeds the tokens of G_{j-1}. When |G_j| exceeds what I_j feeds, I_j is padded with
transition slots (transition index 0, 1, ...). Input slot i of I_j predicts token i of G_j (extra
input slots have no target). A slot sees every slot of earlier steps and, within its own step,
every slot ("full") or the slots up to itself ("causal"). For PAR (k = 4) this gives exactly PAR's
training sequence `[cls][t0..t_{k-2}][t_{k-1}, M_1..M_{k-1}][t_k ...]` and its group mask.

Positions (RoPE coordinates, one row per slot): a slot takes the coordinates of the token it feeds.
Visual tokens keep their own grid coordinates (row, col) or (t, row, col), so rows stay
LlamaGen-exact in every order. The prologue and its separator form a 1D line on axis 0 just
before the grid: prologue token i sits at axis-0 coordinate i - (P + 1), the separator at -1, all
other axes 0. Class and transition slots have null rows (zero, as in LlamaGen and PAR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from argen.config import GPTConfig, LayoutConfig
from argen.model.rope import rope_table
from argen.model.transformer import SLOT_CLASS, SLOT_TOKEN, SLOT_TRANSITION

PROLOGUE, SEPARATOR, VISUAL = "prologue", "separator", "visual"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Segment:
    """A run of generated tokens sharing one vocabulary: local id i is global id `offset + i`."""

    name: str
    start: int  # index of its first generated token
    length: int
    offset: int
    vocab: int


@dataclass(frozen=True)
class Step:
    """One decode step j: feed input group I_j at slots [slot_start, slot_end), produce G_j.

    The first `n_fed` slots feed generated tokens [fed_start, fed_start + n_fed) (for step 0 the one
    class slot instead); the next `n_transition` slots are transition slots 0..n_transition-1.
    Slot i < `output_end - output_start` predicts generated token `output_start + i`.
    """

    index: int
    slot_start: int
    slot_end: int
    fed_start: int
    n_fed: int
    n_transition: int
    output_start: int
    output_end: int
    segment: str
    id_low: int  # allowed global ids of the outputs: [id_low, id_high)
    id_high: int
    progress: float  # fraction of this segment's tokens produced before this step, in [0, 1)

    @property
    def n_output(self) -> int:
        return self.output_end - self.output_start

    @property
    def n_slots(self) -> int:
        return self.slot_end - self.slot_start


class Layout:
    """Orders, steps, training tensors and decode plan of one sample (see the module docstring)."""

    def __init__(self, config: LayoutConfig, grid_vocab: int):
        self.config = config
        self.grid = tuple(int(size) for size in config.grid)
        self._validate(grid_vocab)
        self.grid_vocab = grid_vocab
        self.prologue_length = config.prologue_length
        self.parallel = config.parallel
        self.regions = self._regions()
        self.segments = self._segments()
        self.generated_length = sum(segment.length for segment in self.segments.values())
        self.group_sizes = self._group_sizes()
        self.steps = self._steps()
        self._ropes: dict[tuple, torch.Tensor] = {}

    # ---------------------------------------------------------------------------------------
    # Construction

    def _validate(self, grid_vocab: int) -> None:
        """The config validated itself (LayoutConfig); what it cannot know is the vocabulary."""
        if grid_vocab < 1:
            raise ValueError(f"grid vocabulary must be >= 1, got {grid_vocab}")

    def _regions(self) -> tuple[int, ...]:
        """Region count per grid axis (all ones in raster order)."""
        return self.config.region_counts()

    def _segments(self) -> dict[str, Segment]:
        segments = {}
        start = 0
        if self.prologue_length > 0:
            prologue_vocab = self.config.prologue_vocab
            segments[PROLOGUE] = Segment(PROLOGUE, 0, self.prologue_length, self.grid_vocab, prologue_vocab)
            segments[SEPARATOR] = Segment(SEPARATOR, self.prologue_length, 1, self.grid_vocab + prologue_vocab, 1)
            start = self.prologue_length + 1
        segments[VISUAL] = Segment(VISUAL, start, math.prod(self.grid), 0, self.grid_vocab)
        return segments

    def _group_sizes(self) -> list[int]:
        prologue = self.config.prologue_parallel
        sizes = [prologue] * (self.prologue_length // prologue) + [1] * (self.prologue_length > 0)  # + separator
        k, count = self.parallel, self.visual_count
        if k == 1:
            return sizes + [1] * count
        if self.config.sequential_initial:
            return sizes + [1] * k + [k] * ((count - k) // k)
        return sizes + [k] * (count // k)

    def _steps(self) -> list[Step]:
        steps = []
        slot, output = 0, 0
        previous = 1  # I_0 holds the class slot
        for index, size in enumerate(self.group_sizes):
            segment = self.segment_of(output)
            n_fed = previous
            n_transition = max(size - n_fed, 0)
            id_low = segment.offset
            steps.append(
                Step(
                    index=index,
                    slot_start=slot,
                    slot_end=slot + n_fed + n_transition,
                    fed_start=output - previous if index > 0 else 0,
                    n_fed=n_fed,
                    n_transition=n_transition,
                    output_start=output,
                    output_end=output + size,
                    segment=segment.name,
                    id_low=id_low,
                    id_high=id_low + segment.vocab,
                    progress=(output - segment.start) / segment.length,
                )
            )
            slot += n_fed + n_transition
            output += size
            previous = size
        return steps

    # ---------------------------------------------------------------------------------------
    # Sizes and segments

    @property
    def visual_count(self) -> int:
        return math.prod(self.grid)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def sequence_length(self) -> int:
        """Number of input slots L of the training sequence (and of the KV cache)."""
        return self.steps[-1].slot_end

    @property
    def n_transition(self) -> int:
        """Transition embeddings the model needs: the largest padding of any input group."""
        return max(step.n_transition for step in self.steps)

    @property
    def vocab_size(self) -> int:
        """The transformer's vocabulary: visual ids, then prologue ids and the separator."""
        return sum(segment.vocab for segment in self.segments.values())

    def segment_of(self, generated_index: int) -> Segment:
        for segment in self.segments.values():
            if segment.start <= generated_index < segment.start + segment.length:
                return segment
        raise IndexError(f"generated token {generated_index} is outside [0, {self.generated_length})")

    # ---------------------------------------------------------------------------------------
    # Per-slot tensors (each (L,), derived once)

    @cached_property
    def visual_order(self) -> torch.Tensor:
        """(N,) raster index of the visual token at each generation position."""
        raster = torch.arange(self.visual_count).view(self.grid)
        split = []
        for size, count in zip(self.grid, self.regions):
            split += [count, size // count]
        axes = len(self.grid)
        # (region_0, inner_0, region_1, inner_1, ...) -> (inner_0, inner_1, ..., region_0, region_1, ...)
        permutation = [2 * a + 1 for a in range(axes)] + [2 * a for a in range(axes)]
        return raster.view(split).permute(permutation).flatten()

    @cached_property
    def _slot_table(self) -> dict[str, torch.Tensor]:
        kinds, source, transition, target, step_of = [], [], [], [], []
        for step in self.steps:
            for slot in range(step.n_slots):
                if step.index == 0 and slot < step.n_fed:
                    kinds.append(SLOT_CLASS), source.append(-1), transition.append(-1)
                elif slot < step.n_fed:
                    kinds.append(SLOT_TOKEN), source.append(step.fed_start + slot), transition.append(-1)
                else:
                    kinds.append(SLOT_TRANSITION), source.append(-1), transition.append(slot - step.n_fed)
                target.append(step.output_start + slot if slot < step.n_output else -1)
                step_of.append(step.index)
        return {
            name: torch.tensor(values, dtype=torch.long)
            for name, values in dict(
                kinds=kinds,
                input_source=source,
                transition_index=transition,
                targets_index=target,
                step_of_slot=step_of,
            ).items()
        }

    @property
    def kinds(self) -> torch.Tensor:
        """(L,) slot kind: SLOT_CLASS, SLOT_TOKEN or SLOT_TRANSITION."""
        return self._slot_table["kinds"]

    @property
    def input_source(self) -> torch.Tensor:
        """(L,) generated-token index fed at each slot, or -1."""
        return self._slot_table["input_source"]

    @property
    def transition_index(self) -> torch.Tensor:
        """(L,) transition embedding used at each slot, or -1."""
        return self._slot_table["transition_index"]

    @property
    def targets_index(self) -> torch.Tensor:
        """(L,) generated-token index each slot predicts, or -1."""
        return self._slot_table["targets_index"]

    @property
    def step_of_slot(self) -> torch.Tensor:
        return self._slot_table["step_of_slot"]

    @cached_property
    def mask(self) -> torch.Tensor:
        """(L, L) bool: slot a sees slot b iff b is in an earlier step, or in a's step (full or b <= a)."""
        step = self.step_of_slot
        earlier = step[None, :] < step[:, None]
        same = step[None, :] == step[:, None]
        if self.config.group_attention == "causal":
            index = torch.arange(len(step))
            same = same & (index[None, :] <= index[:, None])
        return earlier | same

    @cached_property
    def target_vocab_mask(self) -> torch.Tensor:
        """(L, vocab_size) bool: the global ids slot i may predict, its target segment's vocabulary (the
        decode loop's per-step logit mask, for teacher forcing); slots without a target allow every id."""
        allowed = torch.ones(self.sequence_length, self.vocab_size, dtype=torch.bool)
        for step in self.steps:
            allowed[step.slot_start : step.slot_start + step.n_output] = False
            allowed[step.slot_start : step.slot_start + step.n_output, step.id_low : step.id_high] = True
        return allowed

    @cached_property
    def generated_coords(self) -> torch.Tensor:
        """(n_generated, n_axes) float coordinates of every generated token (see module docstring)."""
        axes = len(self.grid)
        coords = torch.zeros(self.generated_length, axes)
        if self.prologue_length > 0:
            line = self.prologue_length + 1  # prologue tokens and the separator
            coords[:line, 0] = torch.arange(line, dtype=torch.float32) - line
        raster = self.visual_order
        unravelled = []
        for size in reversed(self.grid):
            unravelled.append(raster % size)
            raster = raster // size
        coords[self.segments[VISUAL].start :] = torch.stack(unravelled[::-1], dim=-1).float()
        return coords

    @cached_property
    def coords(self) -> torch.Tensor:
        """(L, n_axes) coordinates of every slot (zeros on null slots)."""
        source = self.input_source
        return torch.where((source >= 0)[:, None], self.generated_coords[source.clamp(min=0)], 0.0)

    @property
    def null(self) -> torch.Tensor:
        """(L,) True for slots without a position (class and transition slots)."""
        return self.input_source < 0

    def rope(self, model: GPTConfig) -> torch.Tensor:
        """(L, head_dim/2, 2) RoPE table of the slots for `model`'s heads: its base, positions (the grid's, or each
        slot's sequence index) and rotated dims (computed once per setting)."""
        head_dim = model.dim // model.n_head
        key = (head_dim, float(model.rope_base), model.rope_positions, model.rope_dims)
        if key not in self._ropes:
            coords, null = self.coords, self.null
            if model.rope_positions == "sequence":
                coords, null = torch.arange(len(coords)).float()[:, None], torch.zeros(len(coords), dtype=torch.bool)
            rotated = model.rope_dims or head_dim
            table = rope_table(coords, null, rotated, model.rope_base)
            if rotated < head_dim:  # the other pairs stay as they are: cos 1, sin 0
                table = torch.cat(
                    [table, torch.tensor([1.0, 0.0]).expand(len(coords), (head_dim - rotated) // 2, 2)], 1
                )
            self._ropes[key] = table
        return self._ropes[key]

    # ---------------------------------------------------------------------------------------
    # Id mappings

    def to_generation_order(self, grid_ids: torch.Tensor) -> torch.Tensor:
        """(B, *grid) visual ids -> (B, N) in generation order."""
        self._check_grid(grid_ids)
        return grid_ids.flatten(1)[:, self.visual_order.to(grid_ids.device)]

    def to_grid(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) visual ids in generation order -> (B, *grid)."""
        if ids.dim() != 2 or ids.shape[1] != self.visual_count:
            raise ValueError(
                f"expected visual ids (B, {self.visual_count}) in generation order, got {tuple(ids.shape)}"
            )
        inverse = torch.argsort(self.visual_order).to(ids.device)
        return ids[:, inverse].reshape(ids.shape[0], *self.grid)

    def generated_sequence(self, visual_ids: torch.Tensor, prologue_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_generated) global ids in generation order from grid visual ids (+ prologue ids)."""
        visual = self.to_generation_order(visual_ids)
        if self.prologue_length == 0:
            if prologue_ids is not None:
                raise ValueError("prologue ids were given but the layout has no prologue (prologue_length=0)")
            return visual
        if prologue_ids is None or tuple(prologue_ids.shape) != (visual.shape[0], self.prologue_length):
            shape = None if prologue_ids is None else tuple(prologue_ids.shape)
            raise ValueError(
                f"the layout needs prologue ids of shape ({visual.shape[0]}, {self.prologue_length}), got {shape}"
            )
        separator = self.segments[SEPARATOR].offset
        return torch.cat(
            [prologue_ids + self.segments[PROLOGUE].offset, torch.full_like(visual[:, :1], separator), visual], dim=1
        )

    def _check_grid(self, grid_ids: torch.Tensor) -> None:
        if tuple(grid_ids.shape[1:]) != self.grid:
            raise ValueError(f"expected visual ids (B, {', '.join(map(str, self.grid))}), got {tuple(grid_ids.shape)}")

    # ---------------------------------------------------------------------------------------
    # Training

    def training_tensors(
        self, visual_ids: torch.Tensor, labels: torch.Tensor, prologue_ids: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Teacher-forcing inputs: ids (B, L), kinds (L,), targets (B, L) (-100 = none), mask (L, L).

        visual_ids (B, *grid) local visual ids, labels (B,) class ids (null class allowed),
        prologue_ids (B, P) local prologue ids when the layout has a prologue. Ids are global.
        The RoPE table comes from `rope(head_dim, base)` (it does not depend on the batch).
        """
        if labels.shape != visual_ids.shape[:1]:
            raise ValueError(f"labels must be ({visual_ids.shape[0]},), got {tuple(labels.shape)}")
        generated = self.generated_sequence(visual_ids, prologue_ids)  # (B, n_generated)
        device = generated.device
        kinds = self.kinds.to(device)
        source = self.input_source.to(device)
        fed = generated[:, source.clamp(min=0)]  # (B, L)
        ids = torch.where(
            kinds == SLOT_TOKEN,
            fed,
            torch.where(kinds == SLOT_CLASS, labels[:, None].to(generated.dtype), self.transition_index.to(device)),
        )
        target_index = self.targets_index.to(device)
        targets = torch.where(target_index >= 0, generated[:, target_index.clamp(min=0)], IGNORE_INDEX)
        return {"ids": ids, "kinds": kinds, "targets": targets, "mask": self.mask.to(device)}

    def describe(self) -> str:
        """One line for logs: order, steps and sequence length."""
        return (
            f"grid {self.grid}, order {self.config.order}, parallel {self.parallel}, regions {self.regions}, "
            f"prologue {self.prologue_length} ({self.config.prologue_parallel} per step), {self.num_steps} steps, "
            f"{self.sequence_length} slots, {self.n_transition} transition embeddings, vocab {self.vocab_size}"
        )
