"""Watching a decode: after every step of the one decode loop, which tokens are decoded so far and, as often as a
time budget allows, the partial images (decoded tokens through the tokenizer, the rest grey; CTF's coarse labels as
colours), then the final images.

    final = generate_live(pipeline, [3], sink=print, generator=torch.Generator().manual_seed(0), guidance=2.0)

The display runs in the sampling thread, between two steps. A tokenizer decode of a partial grid costs several
decode steps of a small model, so a partial image is rendered only when the display's time so far plus the render's
expected cost (`render_seconds`, then the last render's) stays within `budget` of the sampling time so far; every
step still reports its counter and decoded positions (about 0.06 ms). That bounds what watching costs
(`argen bench live` measures it).
"""

from __future__ import annotations

import base64
import colorsys
import io
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from PIL import Image

from argen.config import LIVE_DISPLAY_BUDGET as DISPLAY_BUDGET
from argen.layout import PROLOGUE, VISUAL, Step
from argen.pipeline import Pipeline
from argen.sample import Generated

UNDECODED_GREY = 96  # pixel value of the positions not decoded yet
REPLAY_FRAMES = 8  # at most, evenly spaced over the steps
REPLAY_SHARE = 0.25  # of the run's wall time that the replay frames may add after it
GOLDEN_RATIO = 0.618033988749895  # hue steps that keep neighbouring coarse labels apart


class Cancelled(Exception):
    """The watcher stopped the run (its viewer left)."""


@dataclass
class Frame:
    """The state of a run after a step (or, at stage "done", the finished images)."""

    step: int  # steps done; CTF's refiner pass counts as the last one
    steps: int  # steps in all
    stage: str  # "prologue" (prologue and separator), "visual" (fine ids), "coarse" (CTF's labels), "done" or "replay"
    batch: int
    decoded: torch.Tensor  # (*grid) bool: the visual positions decoded so far (the same in every image)
    prologue: torch.Tensor | None  # (B, p) the prologue ids decoded so far
    images: torch.Tensor | None  # uint8 (B, C, H, W): rendered at this step (partial), or the finished ones
    seconds: float  # sampling time so far, the display's excluded
    wall: float  # wall time so far, the display's included

    def to_json(self) -> dict[str, Any]:
        """The frame for a web page: decoded positions as a '0'/'1' string in raster order, images as PNG data URLs,
        and the speed: ms per step and images/s (projected over every step until the run is done)."""
        per_step = self.seconds / max(self.step, 1)
        return {
            "step": self.step,
            "steps": self.steps,
            "stage": self.stage,
            "grid": list(self.decoded.shape),
            "decoded": "".join("1" if value else "0" for value in self.decoded.flatten().tolist()),
            "prologue": None if self.prologue is None else self.prologue.tolist(),
            "images": None if self.images is None else [png_data_url(image) for image in self.images],
            "ms_per_step": round(1000 * per_step, 2),
            "images_per_s": round(self.batch / max(per_step * self.steps, 1e-9), 2),
            "seconds": round(self.seconds, 4),
            "wall": round(self.wall, 4),
        }


def png_data_url(image: torch.Tensor) -> str:
    """uint8 (C, H, W), C = 1 or 3 -> a data:image/png URL."""
    array = image.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def coarse_palette(count: int) -> torch.Tensor:
    """(count, 3) uint8 colours, one per coarse label, far apart in hue for neighbouring labels."""
    return torch.tensor(
        [
            [round(255 * c) for c in colorsys.hsv_to_rgb((label * GOLDEN_RATIO) % 1.0, 0.55, 0.9)]
            for label in range(count)
        ],
        dtype=torch.uint8,
    )


class LiveView:
    """The `on_step` watcher of one run: turns each step into a Frame for `sink`, rendering within the budget."""

    def __init__(
        self,
        pipeline: Pipeline,
        batch: int,
        sink: Callable[[Frame], None],
        budget: float = DISPLAY_BUDGET,
        cancel: threading.Event | None = None,
        render_cost: float = 0.0,
    ):
        if pipeline.tokenizer is None:
            raise ValueError("watching a run needs a pipeline with a tokenizer to render its images")
        if len(pipeline.layout.grid) != 2:
            raise ValueError(f"watching a run shows images; this model makes {pipeline.layout.grid} grids (videos)")
        self.pipeline, self.batch, self.sink, self.budget, self.cancel = pipeline, batch, sink, budget, cancel
        layout = pipeline.layout
        self.steps = pipeline.forward_passes
        self.visual = layout.segments[VISUAL]
        self.patch = pipeline.tokenizer.config.downsample  # pixels per token side
        self.palette = coarse_palette(self.visual.vocab) if pipeline.coarse else None
        self.started = time.perf_counter()
        self.display_seconds = 0.0
        self.render_cost = render_cost  # expected seconds of the next partial render

    def _elapsed(self) -> tuple[float, float]:
        wall = time.perf_counter() - self.started
        return wall - self.display_seconds, wall

    def _decoded(self, step: Step) -> tuple[int, torch.Tensor]:
        """The visual tokens decoded after `step`: their count and their positions (*grid) bool."""
        count = min(max(step.output_end - self.visual.start, 0), self.visual.length)
        return count, self.pipeline.layout.to_grid((torch.arange(self.visual.length) < count)[None])[0]

    def on_step(self, step: Step, generated: torch.Tensor) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the run was cancelled")
        began = time.perf_counter()
        sampling, wall = self._elapsed()
        layout = self.pipeline.layout
        count, decoded = self._decoded(step)
        last = step.index == layout.num_steps - 1
        # The last step of a fine-id model is rendered by the finished frame right after it.
        render = (
            count > 0
            and self.display_seconds + self.render_cost < self.budget * sampling
            and not (last and self.palette is None)
        )
        images = None
        if render:
            rendering = time.perf_counter()
            ids = layout.to_grid((generated[:, self.visual.start :] - self.visual.offset).clamp(min=0).cpu())
            images = self._render(ids, decoded)
            self.render_cost = time.perf_counter() - rendering
        prologue = layout.segments.get(PROLOGUE)
        stage = (
            "prologue" if count == 0 and prologue is not None else "coarse" if self.palette is not None else "visual"
        )
        self.sink(
            Frame(
                step.index + 1,
                self.steps,
                stage,
                self.batch,
                decoded,
                None
                if prologue is None
                else (generated[:, : min(step.output_end, prologue.length)] - prologue.offset).cpu(),
                images,
                sampling,
                wall,
            )
        )
        self.display_seconds += time.perf_counter() - began

    def _render(self, ids: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W): the decoded positions (coarse colours, or through the tokenizer), the rest grey."""
        if self.palette is not None:
            images = self.palette[ids].permute(0, 3, 1, 2)  # (B, 3, h, w)
            images = images.repeat_interleave(self.patch, 2).repeat_interleave(self.patch, 3)
        else:
            images = self.pipeline.decode(ids)
        pixels = decoded.repeat_interleave(self.patch, 0).repeat_interleave(self.patch, 1)  # (H, W)
        return images.masked_fill(~pixels, UNDECODED_GREY)

    def finish(self, generated: Generated) -> Frame:
        """The finished frame: every image decoded through the tokenizer."""
        sampling, _ = self._elapsed()
        images = self.pipeline.decode(generated.visual)
        _, wall = self._elapsed()
        everything = torch.ones(self.pipeline.layout.grid, dtype=torch.bool)
        return Frame(
            self.steps,
            self.steps,
            "done",
            self.batch,
            everything,
            None if generated.prologue is None else generated.prologue.cpu(),
            images,
            sampling,
            wall,
        )

    def replay(self, generated: Generated, final: Frame) -> list[Frame]:
        """Partial images of up to REPLAY_FRAMES evenly spaced steps, from the finished ids, within REPLAY_SHARE of
        the run's wall time (judged by the last render's cost)."""
        steps = [step for step in self.pipeline.layout.steps if self._decoded(step)[0] > 0]
        affordable = int(REPLAY_SHARE * final.wall / max(self.render_cost, 1e-6))
        count = min(REPLAY_FRAMES, affordable, len(steps))
        ids = (generated.coarse if self.palette is not None else generated.visual).cpu()
        frames = []
        for index in range(count):
            step = steps[(index + 1) * len(steps) // (count + 1)]
            decoded = self._decoded(step)[1]
            # What a live render of that step showed: the tokens decoded later are not there yet.
            images = self._render(ids.masked_fill(~decoded, 0), decoded)
            frames.append(
                Frame(
                    step.index + 1, self.steps, "replay", self.batch, decoded, None, images, final.seconds, final.wall
                )
            )
        return frames


def render_seconds(pipeline: Pipeline, batch: int = 1) -> float:
    """What a partial render of `batch` images costs (the second of two renders of a blank grid, the first warms
    up): a LiveView's expected cost before its first render."""
    view = LiveView(pipeline, batch, sink=lambda frame: None)
    grid = pipeline.layout.grid
    ids, decoded = torch.zeros(batch, *grid, dtype=torch.long), torch.ones(grid, dtype=torch.bool)
    view._render(ids, decoded)
    began = time.perf_counter()
    view._render(ids, decoded)
    return time.perf_counter() - began


def generate_live(
    pipeline: Pipeline,
    labels,
    sink: Callable[[Frame], None],
    generator: torch.Generator | None = None,
    refine: dict | None = None,
    budget: float = DISPLAY_BUDGET,
    cancel: threading.Event | None = None,
    render_cost: float = 0.0,
    **options: Any,
) -> Frame:
    """`pipeline.generate_ids` watched: `sink` gets a Frame after every step, the finished frame (returned) and the
    replay frames.
    Setting `cancel` stops the run at its next step with `Cancelled`; `render_cost` is the expected seconds of a
    partial render (`render_seconds`; 0 lets the first render happen at once and learns from it)."""
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    view = LiveView(pipeline, len(labels), sink, budget, cancel, render_cost)
    generated = pipeline.generate_ids(labels, generator, refine, on_step=view.on_step, **options)
    final = view.finish(generated)
    sink(final)
    for frame in view.replay(generated, final):
        sink(frame)
    return final
