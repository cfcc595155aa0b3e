"""Watching a decode (argen.live): a frame per step in the layout's order, renders within the budget, the same
samples as an unwatched run, CTF's coarse map and Prologue's tokens first, cancellation."""

import base64
import io
import math
import threading

import pytest
import torch
from PIL import Image

from argen.catalog import METHODS, SHIPPED
from argen.live import UNDECODED_GREY, Cancelled, generate_live
from argen.pipeline import load

BY_NAME = {method.name: method for method in METHODS}


def shipped(name: str):
    method = BY_NAME[name]
    return load(
        SHIPPED / method.checkpoint,
        tokenizer=SHIPPED / method.tokenizer,
        refiner=SHIPPED / method.refiner if method.refiner else None,
    )


@pytest.fixture(scope="module")
def par16():
    return shipped("PAR-16x")


def watch(pipeline, budget, labels=(1, 3), **options):
    """The frames of each step and the finished one (the replay frames after it are checked on their own)."""
    frames = []
    final = generate_live(
        pipeline, list(labels), frames.append, torch.Generator().manual_seed(0), budget=budget, guidance=2.0, **options
    )
    return [frame for frame in frames if frame.stage != "replay"], final


def test_a_frame_per_step_in_the_layouts_order_and_the_same_samples(par16):
    frames, final = watch(par16, budget=0.0)
    layout = par16.layout
    assert [frame.step for frame in frames] == list(range(1, layout.num_steps + 1)) + [layout.num_steps]
    assert [int(frame.decoded.sum()) for frame in frames[:-1]] == [step.output_end for step in layout.steps]
    assert all(frame.images is None for frame in frames[:-1])  # a zero budget renders nothing partial
    assert frames[-1] is final and final.stage == "done" and bool(final.decoded.all())
    unwatched = par16.generate_ids([1, 3], torch.Generator().manual_seed(0), guidance=2.0)
    assert torch.equal(final.images, par16.decode(unwatched.visual))
    # PAR's regions (4x4 tokens each) fill in together: their counts never differ by more than one.
    for frame in frames:
        counts = frame.decoded.view(4, 4, 4, 4).sum(dim=(1, 3))
        assert int(counts.max() - counts.min()) <= 1


def test_renders_grey_out_what_is_not_decoded(par16):
    frames, _ = watch(par16, budget=math.inf, labels=[1])
    rendered = [frame for frame in frames[:-1] if frame.images is not None]
    assert len(rendered) == par16.layout.num_steps - 1  # all but the last step, which the finished frame shows
    frame = rendered[20]
    pixels = frame.decoded.repeat_interleave(4, 0).repeat_interleave(4, 1)
    assert bool((frame.images[0, 0][~pixels] == UNDECODED_GREY).all())
    page = frame.to_json()
    assert page["decoded"] == "".join(str(int(v)) for v in frame.decoded.flatten().tolist())
    png = Image.open(io.BytesIO(base64.b64decode(page["images"][0].split(",", 1)[1])))
    assert png.size == (64, 64) and page["steps"] == 31 and page["ms_per_step"] > 0


def test_ctf_shows_its_coarse_map_then_the_refined_images():
    pipeline = shipped("CTF")
    frames, final = watch(pipeline, budget=math.inf, labels=[2])
    assert {frame.stage for frame in frames[:-1]} == {"coarse"}
    assert frames[-2].images.shape == (1, 3, 64, 64)  # coarse labels as colours
    assert final.step == final.steps == pipeline.layout.num_steps + 1  # the refiner pass counts as a step
    assert final.images.shape == (1, 1, 64, 64)


def test_prologue_tokens_come_first():
    pipeline = shipped("Prologue")
    frames, final = watch(pipeline, budget=0.0, labels=[5])
    prologue = pipeline.layout.prologue_length
    assert [frame.stage for frame in frames[: prologue + 1]] == ["prologue"] * (prologue + 1)  # + the separator
    assert [frame.prologue.shape[1] for frame in frames[:prologue]] == list(range(1, prologue + 1))
    assert frames[prologue + 1].stage == "visual" and torch.equal(frames[prologue - 1].prologue, final.prologue)


def test_a_set_cancel_event_stops_the_run(par16):
    cancel, seen = threading.Event(), []

    def sink(frame):
        seen.append(frame)
        if frame.step == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        generate_live(par16, [0], sink, cancel=cancel)
    assert len(seen) == 3


def test_replay_frames_are_the_live_renders_of_earlier_steps(par16):
    frames = []
    final = generate_live(par16, [4], frames.append, torch.Generator().manual_seed(0), budget=math.inf)
    replay = frames[frames.index(final) + 1 :]
    assert 1 <= len(replay) <= 8 and all(frame.stage == "replay" for frame in replay)
    assert [frame.step for frame in replay] == sorted({frame.step for frame in replay})
    for frame in replay:
        live = frames[frame.step - 1]
        assert torch.equal(frame.decoded, live.decoded) and torch.equal(frame.images, live.images)
