"""`argen sample` and `argen eval` under torchrun: the same samples and metrics as one process, one streamed .npz."""

import io
import json
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from argen.cli import main
from argen.eval.npz import SampleFileError, open_npz, read_npz, write_npz, write_npz_chunks
from argen.io.checkpoint import write_checked
from argen.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "fmnist64"
SAMPLE = [
    "sample",
    "--model",
    str(SHIPPED / "ar-par16"),
    "--classes",
    "3,7,1",
    "--count",
    "7",
    "--batch",
    "2",
    "--seed",
    "5",
]
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "ARGEN_NO_PROGRESS": "1",
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
}


def test_streamed_npz_equals_numpy_and_holds_one_chunk_at_a_time(tmp_path):
    chunk, chunks = (100, 32, 32, 3), 20  # 20 chunks of 300 KiB: 6 MiB in all

    def make():
        for index in range(chunks):
            yield np.full(chunk, index, dtype=np.uint8)

    labels = np.arange(chunks * chunk[0]) % 10
    tracemalloc.start()
    path = write_npz_chunks(tmp_path / "big.npz", make(), chunks * chunk[0], labels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * np.prod(chunk)  # one chunk at a time, never the whole array
    expected = np.concatenate(list(make()))
    with np.load(path, allow_pickle=False) as data:
        assert np.array_equal(data["arr_0"], expected) and np.array_equal(data["arr_1"], labels)
    mapped = open_npz(path)
    assert np.array_equal(mapped.images[950:1050], expected[950:1050]) and np.array_equal(mapped.labels, labels)
    assert [p.name for p in tmp_path.iterdir()] == ["big.npz"]  # no temporary file left
    with pytest.raises(SampleFileError, match="more than the 5 images announced"):
        write_npz_chunks(tmp_path / "short.npz", make(), 5)
    with pytest.raises(SampleFileError, match="hold 2000 images, 3000 were announced"):
        write_npz_chunks(tmp_path / "short.npz", make(), 3000)
    assert not (tmp_path / "short.npz").exists()


def test_open_npz_reads_compressed_files_whole(tmp_path):
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    with open(tmp_path / "packed.npz", "wb") as handle:
        np.savez_compressed(handle, images)
    assert np.array_equal(open_npz(tmp_path / "packed.npz").images, images)


def test_two_ranks_sample_what_one_process_samples(tmp_path, torchrun):
    assert main(["--threads", "1", *SAMPLE, "--out", str(tmp_path / "one")]) == 0
    two = subprocess.run(
        [*torchrun(), *SAMPLE, "--out", str(tmp_path / "two"), "--save-ids", str(tmp_path / "two-ids.json")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one, both = read_npz(tmp_path / "one" / "samples.npz"), read_npz(tmp_path / "two" / "samples.npz")
    assert both.images.shape == (7, 64, 64, 1)
    assert both.labels.tolist() == [3, 7, 1, 3, 7, 1, 3]  # the class schedule of one process
    assert np.array_equal(one.images, both.images) and np.array_equal(one.labels, both.labels)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["samples.npz", "samples.png", "sampling.json"]
    assert json.loads((tmp_path / "two" / "sampling.json").read_text())["ranks"] == 2
    # --save-ids writes the ids of the same samples, from the same parts, on one process or several.
    assert (
        main(["--threads", "1", *SAMPLE, "--out", str(tmp_path / "ids"), "--save-ids", str(tmp_path / "ids.json")]) == 0
    )
    assert np.array_equal(read_npz(tmp_path / "ids" / "samples.npz").images, one.images)
    ids = json.loads((tmp_path / "ids.json").read_text())
    assert ids == json.loads((tmp_path / "two-ids.json").read_text())
    assert ids["classes"] == both.labels.tolist() and np.shape(ids["ids"]) == (7, *ids["grid"])


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _interrupt_second_batch(monkeypatch) -> None:
    sample, calls = Pipeline.sample, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "sample", interrupted)


def test_an_interrupted_run_keeps_its_finished_batches_and_remakes_damaged_ones(tmp_path, monkeypatch, capsys):
    sample = Pipeline.sample
    _interrupt_second_batch(monkeypatch)
    out = tmp_path / "run"
    assert main(["--threads", "1", *SAMPLE, "--out", str(out)]) == 130
    parts = out / "samples.parts"
    assert sorted(p.name for p in parts.glob("*.npz")) == ["000000000.npz"]
    kept = parts / "000000000.npz"
    with np.load(kept) as part:  # marked: its images set to zero
        marked = {**part, "images": np.zeros_like(part["images"])}
    write_checked(kept, lambda tmp: tmp.write_bytes(npz_bytes(marked)))
    monkeypatch.setattr(Pipeline, "sample", sample)
    assert main(["--threads", "1", *SAMPLE, "--out", str(out)]) == 0
    assert not parts.exists()
    images = read_npz(out / "samples.npz").images
    assert not images[:2].any() and images[2:].any()  # the kept batch was not made again

    # A part damaged after it was written (here cut short) is named and made again, not read as garbage.
    _interrupt_second_batch(monkeypatch)
    assert main(["--threads", "1", *SAMPLE, "--out", str(out)]) == 130
    kept.write_bytes(kept.read_bytes()[:1000])
    monkeypatch.setattr(Pipeline, "sample", sample)
    assert main(["--threads", "1", *SAMPLE, "--out", str(out)]) == 0
    assert f"{kept} is damaged" in capsys.readouterr().out
    assert read_npz(out / "samples.npz").images[:2].any()

    # Parts of another run are refused, not mixed in.
    (parts / "plan.json").parent.mkdir()
    (parts / "plan.json").write_text(json.dumps({"seed": 0}))
    assert main(["--threads", "1", *SAMPLE, "--out", str(out)]) == 2


def test_a_rerun_with_other_weights_at_the_same_path_is_refused(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    shutil.copytree(SHIPPED / "ar-par16", model)
    command = [
        "--threads",
        "1",
        "sample",
        "--model",
        str(model),
        "--tokenizer",
        str(SHIPPED / "tokenizer"),
        "--count",
        "6",
        "--batch",
        "2",
        "--cfg",  # the two models record different settings: fixed here, so that only the weights differ
        "2",
        "--temperature",
        "0.8",
        "--out",
        str(tmp_path / "run"),
    ]
    _interrupt_second_batch(monkeypatch)
    assert main(command) == 130
    shutil.copyfile(SHIPPED / "ar-par4" / "model.safetensors", model / "model.safetensors")  # replaced meanwhile
    shutil.copyfile(SHIPPED / "ar-par4" / "config.json", model / "config.json")
    assert main(command) == 2
    assert "holds the parts of a run with other weights (weights_sha256 differ)" in capsys.readouterr().err


def test_two_ranks_evaluate_as_one_process(tmp_path, torchrun):
    # 600 images: more than one of the classifier's 512-image batches, so both ranks extract features.
    rng = np.random.default_rng(0)
    samples = write_npz(
        tmp_path / "samples.npz", rng.integers(0, 256, (600, 64, 64, 1), dtype=np.uint8), labels=np.arange(600) % 10
    )
    command = [
        "eval",
        "samples",
        str(samples),
        "--ref",
        str(SHIPPED / "reference.npz"),
        "--classifier",
        str(SHIPPED / "classifier"),
        "--bootstrap",
        "3",
    ]
    assert main(["--threads", "1", *command, "--out", str(tmp_path / "one.json")]) == 0
    two = subprocess.run(
        [*torchrun(), *command, "--out", str(tmp_path / "two.json")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one, both = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert one.keys() == both.keys()
    for key, value in one.items():
        assert both[key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), key
