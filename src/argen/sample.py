"""The one decode loop: any Layout (raster, PAR, prologue), guidance, filters, sync-free sampling.

Step j of the Layout feeds its input group at its slots (step 0, the prefill, feeds the class) into a
static KV cache and samples the output group from the step's logits, restricted to the step's
segment vocabulary. Classifier-free guidance doubles the batch (conditional rows first, then the
null class) and mixes `uncond + s * (cond - uncond)`, with s computed on the host from the step.
Tokens are drawn by inverse-CDF sampling (one uniform number per token, searched in the cumulative
probabilities), so nothing in the loop waits for the device.

Speculative Jacobi decoding (SJD, Teng et al., arXiv 2410.01699) is an option of the same loop
(`SamplingOptions.speculative` = W): each forward pass feeds a window of the next W Layout steps, the later steps
fed with drafts (the tokens an earlier pass drew for them), through the same static cache and the Layout's mask,
so one pass gives every window step's distribution. Left to right, a step whose context is all decided verifies
its drafted tokens with SJD's criterion (keep x with probability min(1, p(x) / q(x)), q the distribution x was
drawn from; else draw from max(0, p - q), renormalised); the steps after the first token that differs from what
they were fed are drafted afresh from this pass's distributions. A PAR step's tokens are verified each on its own
(they are independent given the context). The cache keeps what the decided steps fed: a rejected draft's slots are
written again by the next pass. Plain decoding is the window of one step, with the same random draws as ever.
Greedy decoding with SJD equals greedy decoding. Sampled, it keeps the distribution: a draft is drawn from q before
anything it is fed to is decided, and nothing decided before it depends on it, so each verification is speculative
sampling's exact accept-or-resample (tests/test_sampler.py checks the joint distribution with a chi-square test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, NamedTuple

import torch

from argen.layout import PROLOGUE, SEPARATOR, VISUAL, Layout, Step
from argen.model.kv_cache import KVCache
from argen.model.transformer import Transformer
from argen.precision import CACHE_DTYPES, PRECISIONS, inference_precision, resolve

SAMPLED_SEGMENTS = (PROLOGUE, VISUAL)
SCHEDULES = ("constant", "linear", "cosine")


GUIDANCE_SETTINGS = ("guidance", "guidance_schedule", "guidance_power")
# Where neither a caller nor the model's recorded settings (Pipeline.tuned_sampling) say otherwise.
DEFAULT_SETTINGS = {"guidance": 1.0, "guidance_schedule": "constant", "guidance_power": 1.0, "temperature": 1.0}


def recorded_settings(recorded: dict[str, Any], guidance: bool, temperature: bool) -> dict[str, Any]:
    """What a caller who leaves the guidance (`guidance`) or the temperature (`temperature`) unset takes from a
    model's recorded settings: each group whole, so a caller's own guidance never mixes with a recorded ramp."""
    names = (GUIDANCE_SETTINGS if guidance else ()) + (("temperature",) if temperature else ())
    return {name: recorded[name] for name in names if name in recorded}


@dataclass
class SamplingOptions:
    """Sampling settings. Per-segment fields take one value or a dict {"prologue": .., "visual": ..}.

    guidance_schedule ramps the guidance scale s over a segment's progress t in [0, 1) (the fraction
    of its tokens already produced): "constant" s; "linear" 1 + (s - 1) * t**power;
    "cosine" 1 + (s - 1) * (1 - cos(pi * t**power)) / 2 (the Prologue paper's ramp).
    """

    temperature: float | dict[str, float] = 1.0
    top_k: int | dict[str, int] = 0  # 0 = no top-k filter
    top_p: float | dict[str, float] = 1.0  # 1 = no nucleus filter
    greedy: bool = False
    guidance: float | dict[str, float] = 1.0  # 1 = no guidance
    guidance_schedule: str | dict[str, str] = "constant"
    guidance_power: float | dict[str, float] = 1.0
    dtype: str = "auto"  # "auto" (the fastest on this CPU), "fp32", "bf16" or "int8": see argen.precision
    compile: bool = False  # torch.compile the step forward (static cache length; CUDA graphs on a GPU)
    speculative: int = 0  # speculative Jacobi decoding over a window of this many steps (0 or 1 = off)

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, dict):
                unknown = sorted(set(value) - set(SAMPLED_SEGMENTS))
                if unknown:
                    raise ValueError(
                        f"SamplingOptions.{item.name}: unknown segment(s) {unknown}; "
                        f"valid: {', '.join(SAMPLED_SEGMENTS)}"
                    )
        if self.dtype not in PRECISIONS:
            raise ValueError(f"SamplingOptions.dtype must be one of {list(PRECISIONS)}, got {self.dtype!r}")
        if self.compile and self.dtype == "int8":
            raise ValueError("SamplingOptions: a compiled step runs fp32 or bf16, not int8")
        if not isinstance(self.speculative, int) or isinstance(self.speculative, bool) or self.speculative < 0:
            raise ValueError(
                f"SamplingOptions.speculative must be an integer >= 0 (a window of steps; 0 = off), "
                f"got {self.speculative!r}"
            )
        for segment in SAMPLED_SEGMENTS:
            if self.segment_value("guidance_schedule", segment) not in SCHEDULES:
                raise ValueError(
                    f"guidance_schedule must be one of {SCHEDULES}, "
                    f"got {self.segment_value('guidance_schedule', segment)!r}"
                )
            if not self.greedy and not self.segment_value("temperature", segment) > 0:
                raise ValueError(
                    f"temperature must be > 0 (greedy decoding takes the argmax), got "
                    f"{self.segment_value('temperature', segment)}"
                )
            if not self.segment_value("guidance", segment) >= 0:
                raise ValueError(f"guidance must be >= 0 (1 = off), got {self.segment_value('guidance', segment)}")
            if self.segment_value("top_k", segment) < 0:
                raise ValueError(f"top_k must be >= 0, got {self.segment_value('top_k', segment)}")
            if not 0.0 < self.segment_value("top_p", segment) <= 1.0:
                raise ValueError(f"top_p must be in (0, 1], got {self.segment_value('top_p', segment)}")

    @staticmethod
    def split_prologue(
        options: dict[str, Any], guidance: float | None = None, temperature: float | None = None
    ) -> dict[str, Any]:
        """Prologue's split settings (its paper's guidance): `options` (SamplingOptions fields, one value each) then
        apply to the visual tokens, and the prologue tokens take a constant `guidance` and their own
        `temperature`, where given."""
        split = dict(options)
        for name, value in (("guidance", guidance), ("temperature", temperature)):
            if value is not None:
                split[name] = {"visual": options.get(name, 1.0), "prologue": value}
        if guidance is not None:
            split["guidance_schedule"] = {
                "visual": options.get("guidance_schedule", "constant"),
                "prologue": "constant",
            }
            split["guidance_power"] = {"visual": options.get("guidance_power", 1.0), "prologue": 1.0}
        return split

    def describe(self, name: str) -> str:
        """The setting `name` for people: "3"; guidance with a ramp "cosine^0.25 to 4"; split by segment
        "prologue 0.7, visual cosine^0.25 to 4"."""
        related = (name, "guidance_schedule", "guidance_power") if name == "guidance" else (name,)
        split = [segment for segment in SAMPLED_SEGMENTS if any(isinstance(getattr(self, n), dict) for n in related)]

        def one(segment: str) -> str:
            value = f"{self.segment_value(name, segment):g}"
            schedule = self.segment_value("guidance_schedule", segment)
            if name != "guidance" or schedule == "constant":
                return value
            power = self.segment_value("guidance_power", segment)
            return f"{schedule}{'' if power == 1 else f'^{power:g}'} to {value}"

        return ", ".join(f"{segment} {one(segment)}" for segment in split) if split else one(VISUAL)

    def segment_value(self, name: str, segment: str):
        """The setting `name` for `segment` (a dict without the segment falls back to the default)."""
        value = getattr(self, name)
        if isinstance(value, dict):
            return value.get(segment, next(f.default for f in fields(self) if f.name == name))
        return value

    def guidance_scale(self, step: Step) -> float:
        """The guidance scale of `step` (host float, from the step's segment progress)."""
        if step.segment not in SAMPLED_SEGMENTS:
            return 1.0
        scale = float(self.segment_value("guidance", step.segment))
        schedule = self.segment_value("guidance_schedule", step.segment)
        ramp = step.progress ** float(self.segment_value("guidance_power", step.segment))
        if schedule == "linear":
            return 1.0 + (scale - 1.0) * ramp
        if schedule == "cosine":
            return 1.0 + (scale - 1.0) * (1.0 - math.cos(math.pi * ramp)) / 2.0
        return scale

    def guided(self, layout: Layout) -> bool:
        """True when some segment of `layout` uses a guidance scale other than 1 (batch doubling)."""
        return any(
            float(self.segment_value("guidance", name)) != 1.0 for name in SAMPLED_SEGMENTS if name in layout.segments
        )


class Generated(NamedTuple):
    """Sampler output: visual ids (B, *grid) in grid order and local vocabulary, prologue ids (B, P) or None.

    Under CTF (`argen.ctf.sample_ctf`) `visual` holds the refined fine ids and `coarse` the AR's coarse labels.
    """

    visual: torch.Tensor
    prologue: torch.Tensor | None
    coarse: torch.Tensor | None = None
    forward_passes: int = 0  # of the AR model (the Layout's steps, fewer with speculative decoding)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k (ties with the k-th kept) then nucleus filtering (the first token crossing top_p kept)."""
    if 0 < top_k < logits.shape[-1]:
        pivot = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < pivot, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        remove = torch.cumsum(probs, dim=-1) - probs > top_p  # mass before this token already > top_p
        logits = logits.scatter(-1, order, ordered.masked_fill(remove, float("-inf")))
    return logits


def sample_from_logits(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, greedy: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """(..., V) float logits -> (...) long ids, without a host sync.

    Inverse-CDF sampling: one uniform number per token, found in the cumulative probabilities. An
    exponential race (argmax of p / Exp(1)) needs V random numbers per token, which at 16 tokens per
    PAR step and 16384 codes cost as much time as a fifth of the model's forward on a CPU.
    """
    if greedy:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / max(temperature, 1e-5), top_k, top_p)
    # Unnormalised probabilities: the uniform number is scaled by their total instead of dividing each.
    cdf = (logits - logits.amax(dim=-1, keepdim=True)).exp_().cumsum_(dim=-1)
    # right=True never lands on a zero-probability id (its cumulative sum equals its predecessor's).
    target = torch.rand(*cdf.shape[:-1], 1, generator=generator, device=cdf.device) * cdf[..., -1:]
    return torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


def probabilities(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The distribution `sample_from_logits` draws from: softmax of the tempered, filtered logits."""
    return torch.softmax(filter_logits(logits.float() / max(temperature, 1e-5), top_k, top_p), dim=-1)


def sample_from_probabilities(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(..., V) non-negative weights (need not sum to 1) -> (...) ids by inverse-CDF sampling."""
    cdf = probs.cumsum(dim=-1)
    target = torch.rand(*cdf.shape[:-1], 1, generator=generator, device=cdf.device) * cdf[..., -1:]
    return torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


def _forced_sequence(layout: Layout, forced: dict[str, torch.Tensor], batch: int, device: torch.device) -> torch.Tensor:
    """(B, n_generated) global ids to force, -1 where free, from {"prologue": (B, P), "visual": (B, *grid)}."""
    unknown = sorted(set(forced) - set(SAMPLED_SEGMENTS))
    if unknown:
        raise ValueError(f"forced: unknown segment(s) {unknown}; valid: {', '.join(SAMPLED_SEGMENTS)}")
    sequence = torch.full((batch, layout.generated_length), -1, dtype=torch.long, device=device)
    for name, ids in forced.items():
        if name not in layout.segments:
            raise ValueError(f"forced {name!r} ids given, but the layout has no {name} segment")
        segment = layout.segments[name]
        ids = ids.to(device=device, dtype=torch.long)
        if name == VISUAL:
            if tuple(ids.shape) != (batch, *layout.grid):
                raise ValueError(f"forced visual ids must be ({batch}, {layout.grid}), got {tuple(ids.shape)}")
            ids = layout.to_generation_order(ids)
        elif tuple(ids.shape) != (batch, segment.length):
            raise ValueError(f"forced {name} ids must be ({batch}, {segment.length}), got {tuple(ids.shape)}")
        if bool(((ids < -1) | (ids >= segment.vocab)).any()):
            raise ValueError(f"forced {name} ids must be -1 (free) or in [0, {segment.vocab})")
        sequence[:, segment.start : segment.start + segment.length] = torch.where(ids >= 0, ids + segment.offset, -1)
    return sequence


def _check_inputs(model: Transformer, layout: Layout, labels: torch.Tensor, guided: bool) -> None:
    if model.config.vocab_size != layout.vocab_size:
        raise ValueError(
            f"the model's vocab_size ({model.config.vocab_size}) differs from the layout's "
            f"({layout.vocab_size} = visual + prologue + separator)"
        )
    if model.n_transition < layout.n_transition:
        raise ValueError(
            f"the layout needs {layout.n_transition} transition embeddings, the model has {model.n_transition}"
        )
    if labels.dim() != 1 or labels.dtype != torch.long or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty (B,) long tensor, got {labels.dtype} {tuple(labels.shape)}")
    highest = model.config.num_classes + int(model.has_null_class)
    if int(labels.min()) < 0 or int(labels.max()) >= highest:
        raise ValueError(f"labels must be in [0, {highest}), got values in [{int(labels.min())}, {int(labels.max())}]")
    if guided and not model.has_null_class:
        raise ValueError("guidance needs a null class, but the model was built with class_dropout_prob = 0")


def decode_rows(layout: Layout, rows: int) -> int:
    """Rows of the typical decode step: sequences (guidance doubled) x slots fed per step after the prefill."""
    slots = [step.n_slots for step in layout.steps[1:]] or [1]
    return rows * max(set(slots), key=slots.count)


@torch.no_grad()
def generate(
    model: Transformer,
    layout: Layout,
    labels: torch.Tensor,
    *,
    options: SamplingOptions | None = None,
    generator: torch.Generator | None = None,
    forced: dict[str, torch.Tensor] | None = None,
    cache: KVCache | None = None,
    on_step: Callable[[Step, torch.Tensor], None] | None = None,
) -> Generated:
    """Sample one sequence per label (B,) through every step of `layout`.

    `forced` fixes generated tokens: {"prologue": (B, P), "visual": (B, *grid)} local ids, -1 = sample.
    `cache` is reused when it fits (batch, layout length, dtype, device), else a new one is allocated.
    The generator (if any) must live on the model's device.
    `on_step(step, generated)` is called after each step with the ids so far ((B, n_generated) global ids in
    generation order, valid up to `step.output_end`; a buffer the loop keeps writing, so copy what you keep).
    Reading them waits for the device; an exception it raises stops decoding (how a watcher cancels a run).
    """
    options = options or SamplingOptions()
    guided = options.guided(layout)
    _check_inputs(model, layout, labels, guided)
    device = next(model.parameters()).device
    batch = labels.shape[0]
    labels = labels.to(device)
    condition = torch.cat([labels, torch.full_like(labels, model.null_class)]) if guided else labels
    rows = condition.shape[0]
    precision = resolve(options.dtype, decode_rows(layout, rows), device, options.compile)
    dtype = CACHE_DTYPES[precision]
    length = layout.sequence_length
    if cache is None or not cache.fits(rows, length, dtype, device):
        cache = KVCache.allocate(model, rows, length, dtype, device)
    forced_ids = _forced_sequence(layout, forced, batch, device) if forced else None

    rope = layout.rope(model.config).to(device)
    mask = layout.mask.to(device)
    kinds = layout.kinds.to(device)
    transitions = layout.transition_index.to(device)
    slots = torch.arange(length, device=device)
    generated = torch.zeros(batch, layout.generated_length, dtype=torch.long, device=device)  # global ids
    steps, window = layout.steps, max(1, options.speculative)
    forward = _compiled(model, cache, window, device) if options.compile else model
    decoder = _Decoder(options, guided, batch, generator, generated, forced_ids)

    def fed(step: Step) -> torch.Tensor:
        """The input group of `step`: the class, or the tokens of the step before (decided or drafted), then its
        transition slots."""
        if step.index == 0:
            group = condition[:, None]  # (rows, 1)
        else:
            group = generated[:, step.fed_start : step.fed_start + step.n_fed]  # (B, n_fed)
            group = torch.cat([group, group]) if guided else group
        if step.n_transition:
            padding = transitions[None, step.slot_end - step.n_transition : step.slot_end].expand(rows, -1)
            group = torch.cat([group, padding], dim=1)  # (rows, n_slots)
        return group

    was_training = model.training
    model.eval()
    try:
        with inference_precision(model, precision):
            reported = 0  # steps decided in every row (and shown to on_step)
            while reported < len(steps):
                # Plain decoding decides one step per pass in every row, known without asking the device.
                first = reported if window == 1 else int(decoder.done.min())
                chosen = steps[first : first + window]
                start, end = chosen[0].slot_start, chosen[-1].slot_end
                if options.compile:
                    torch.compiler.cudagraph_mark_step_begin()  # the last pass's logits are read: replay over them
                logits = forward(
                    torch.cat([fed(step) for step in chosen], dim=1),
                    kinds[start:end],
                    rope[start:end],
                    mask[start:end],
                    cache=cache,
                    cache_slots=slots[start:end],
                    kv_length=length if options.compile else end,
                )
                decoder.passes += 1
                exact = torch.ones(batch, dtype=torch.bool, device=device)  # rows whose context is all decided
                for step in chosen:
                    offset = step.slot_start - start
                    exact = decoder.decide(
                        step, logits[:, offset : offset + step.n_output, step.id_low : step.id_high], exact
                    )
                decided = first + 1 if window == 1 else int(decoder.done.min())
                for step in steps[reported:decided]:
                    if on_step is not None:
                        on_step(step, generated)
                reported = decided
    finally:
        model.train(was_training)

    visual = layout.segments[VISUAL]
    prologue = layout.segments.get(PROLOGUE)
    return Generated(
        visual=layout.to_grid(generated[:, visual.start :] - visual.offset),
        prologue=None if prologue is None else generated[:, : prologue.length] - prologue.offset,
        forward_passes=decoder.passes,
    )


def _compiled(model: Transformer, cache: KVCache, window: int, device: torch.device) -> Callable:
    """The model's forward compiled for decoding. On a GPU each step replays as a CUDA graph ("reduce-overhead":
    one launch instead of hundreds of small kernels), with the KV cache at fixed addresses since a replay writes
    into it in place. Plain steps have fixed shapes; speculative windows vary at the sequence's end, so their
    lengths are left dynamic."""
    for buffer in cache.keys + cache.values:
        torch._dynamo.mark_static_address(buffer)
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(model, dynamic=False if window == 1 else None, mode=mode)


class _Decoder:
    """What the decode loop decides step by step: the tokens of each row, how many steps each row has decided
    (`done`), and under speculative decoding the distributions q its drafts were drawn from."""

    def __init__(
        self,
        options: SamplingOptions,
        guided: bool,
        batch: int,
        generator: torch.Generator | None,
        generated: torch.Tensor,
        forced: torch.Tensor | None,
    ):
        self.options, self.guided, self.batch, self.generator = options, guided, batch, generator
        self.generated, self.forced = generated, forced
        self.done = torch.zeros(batch, dtype=torch.long, device=generated.device)
        self.drafts: dict[int, torch.Tensor] = {}  # step index -> q (B, n_output, segment vocab) of its drafts
        self.passes = 0

    def decide(self, step: Step, logits: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
        """Decide `step` in the rows whose context is all decided (`exact`, and the step is their next), draft it in
        the other rows that still need it; return the rows whose context stays decided for the next step."""
        outputs = self.generated[:, step.output_start : step.output_end]
        if self.options.speculative <= 1:  # plain decoding: every row decides the step, nothing to track
            tokens = (
                self._draw(step, self._guided(logits, step)) if step.segment != SEPARATOR else torch.zeros_like(outputs)
            )
            outputs.copy_(self._forced(step, tokens) + step.id_low)
            return exact
        pending = self.done <= step.index
        deciding = pending & exact & (self.done == step.index)
        drafted = outputs - step.id_low  # what later steps were fed
        if step.segment == SEPARATOR:  # one possible token
            return self._settle(step, torch.zeros_like(drafted), drafted, pending, deciding, exact)
        temperature = float(self.options.segment_value("temperature", step.segment))
        top_k = int(self.options.segment_value("top_k", step.segment))
        top_p = float(self.options.segment_value("top_p", step.segment))
        q = self.drafts.pop(step.index, None)
        logits = self._guided(logits, step)
        if q is None:  # nothing drafted yet: a plain draw, the decision where the context is decided
            tokens = self._draw(step, logits)
            q = self._distribution(logits, temperature, top_k, top_p)
        else:
            p = self._distribution(logits, temperature, top_k, top_p)
            if self.options.greedy:
                replacement = p.argmax(-1)
                accepted = drafted == replacement
                tokens = torch.where(accepted, drafted, replacement)
            else:
                # SJD's criterion: keep x with probability min(1, p(x) / q(x)); else draw from max(0, p - q).
                chance = torch.rand(drafted.shape, generator=self.generator, device=p.device)
                accepted = chance * q.gather(-1, drafted[..., None])[..., 0] < p.gather(-1, drafted[..., None])[..., 0]
                residual = (p - q).clamp_min(0.0)
                residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p)
                tokens = torch.where(accepted, drafted, sample_from_probabilities(residual, self.generator))
            # rows that only draft this step again take a fresh draw from this pass's distribution
            fresh = p.argmax(-1) if self.options.greedy else sample_from_probabilities(p, self.generator)
            tokens = torch.where(deciding[:, None], tokens, fresh)
            q = p
        self.drafts[step.index] = q
        return self._settle(step, self._forced(step, tokens), drafted, pending, deciding, exact)

    def _draw(self, step: Step, logits: torch.Tensor) -> torch.Tensor:
        """Local ids drawn from the step's guided logits as plain decoding draws them."""
        return sample_from_logits(
            logits,
            float(self.options.segment_value("temperature", step.segment)),
            int(self.options.segment_value("top_k", step.segment)),
            float(self.options.segment_value("top_p", step.segment)),
            self.options.greedy,
            self.generator,
        )

    def _forced(self, step: Step, tokens: torch.Tensor) -> torch.Tensor:
        if self.forced is None:
            return tokens
        wanted = self.forced[:, step.output_start : step.output_end]
        return torch.where(wanted >= 0, wanted - step.id_low, tokens)

    def _settle(
        self,
        step: Step,
        tokens: torch.Tensor,
        drafted: torch.Tensor,
        pending: torch.Tensor,
        deciding: torch.Tensor,
        exact: torch.Tensor,
    ) -> torch.Tensor:
        """Write the step's tokens (local ids) where it is pending, count it decided where it was decided, and
        return the rows whose next steps this pass saw exactly: where this step decided what they were fed."""
        outputs = self.generated[:, step.output_start : step.output_end]
        outputs.copy_(torch.where(pending[:, None], tokens + step.id_low, outputs))
        self.done = torch.where(deciding, step.index + 1, self.done)
        return exact & (~deciding | (tokens == drafted).all(-1))

    def _guided(self, logits: torch.Tensor, step: Step) -> torch.Tensor:
        if not self.guided:
            return logits
        conditional, unconditional = logits[: self.batch], logits[self.batch :]
        scale = self.options.guidance_scale(step)
        # s == 1 takes the conditional logits as they are, so a unit scale is exactly the conditional path.
        return conditional if scale == 1.0 else unconditional + scale * (conditional - unconditional)

    def _distribution(self, logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
        if self.options.greedy:  # the argmax is all that counts; any distribution with it works as q
            return torch.softmax(logits.float(), dim=-1)
        return probabilities(logits, temperature, top_k, top_p)
