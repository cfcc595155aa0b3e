"""`argen eval ref`, `argen eval SAMPLES` and `argen report` end to end on tiny data."""

import json
from pathlib import Path

import numpy as np
import torch

from argen.cli import main
from argen.config import ClassifierConfig
from argen.eval.features import Classifier, save_classifier
from argen.eval.npz import write_npz

ROOT = Path(__file__).resolve().parents[1]


def test_eval_then_report(tmp_path, capsys):
    torch.manual_seed(0)
    classifier = save_classifier(
        tmp_path / "classifier", Classifier(ClassifierConfig(image_size=16, widths=(8, 16), feature_dim=16))
    )
    reference = tmp_path / "ref.npz"
    assert (
        main(
            [
                "eval",
                "ref",
                "--classifier",
                str(classifier),
                "--dataset",
                "synthetic",
                "--image-size",
                "16",
                "--out",
                str(reference),
            ]
        )
        == 0
    )
    rng = np.random.default_rng(0)
    for name, steps, seconds in (("raster", 64, 2.0), ("par4", 19, 0.7)):
        folder = tmp_path / name
        folder.mkdir()
        write_npz(
            folder / "samples.npz", rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8), labels=np.arange(40) % 10
        )
        (folder / "sampling.json").write_text(
            json.dumps({"steps": steps, "seconds": seconds, "images": 40, "images_per_s": 40 / seconds})
        )
        assert (
            main(
                [
                    "eval",
                    str(folder / "samples.npz"),
                    "--ref",
                    str(reference),
                    "--classifier",
                    str(classifier),
                    "--out",
                    str(folder / "metrics.json"),
                ]
            )
            == 0
        )
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["samples"] == 40 and metrics["reference_samples"] == 512
        assert metrics["fid"] > 0 and 0 <= metrics["class_accuracy"] <= 1
        assert metrics["extractor"] == "cnn" and len(metrics["checksum"]) == 64
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"step": s, "model_loss": 1 / s}) for s in range(1, 5)))
    out = tmp_path / "report"
    assert (
        main(
            [
                "report",
                "--out",
                str(out),
                "--metrics",
                f"raster={tmp_path / 'raster' / 'metrics.json'}",
                str(tmp_path / "par4" / "metrics.json"),
                "--samples",
                str(tmp_path / "raster" / "samples.npz"),
                "--log",
                str(log),
            ]
        )
        == 0
    )
    page = (out / "index.html").read_text()
    assert page.count("<table>") == 1 and "<td>par4</td>" in page and "<td>raster</td>" in page
    # grid + fid/IS/accuracy against steps and wall time + training curves
    assert page.count("<img ") == 1 + 6 + 1
    assert main(["eval", str(tmp_path / "raster" / "samples.npz"), "--ref", str(reference)]) == 2
    assert "exactly one feature extractor" in capsys.readouterr().err
    assert main(["report", "--out", str(out), "--metrics", str(tmp_path / "missing.json")]) == 2


def test_reference_statistics_of_an_image_folder_are_read_batch_by_batch(tmp_path):
    """`eval ref` over an image folder (read per batch, never whole in memory) equals the same images in one array."""
    from PIL import Image

    from argen.config import DataConfig
    from argen.data import image_batches, load_dataset
    from argen.eval.features import ClassifierExtractor
    from argen.eval.reference import ReferenceStatistics, compute_reference

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for index in range(5):
            picture = Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8))
            picture.save(tmp_path / "images" / label / f"{index}.png")
    torch.manual_seed(0)  # a classifier that records no training data: any dataset may be named
    classifier = save_classifier(tmp_path / "classifier", Classifier(ClassifierConfig(image_size=64)))
    assert (
        main(
            [
                "eval",
                "ref",
                "--dataset",
                "imagefolder",
                "--data-dir",
                str(tmp_path / "images"),
                "--image-size",
                "64",
                "--channels",
                "1",
                "--classifier",
                str(classifier),
                "--out",
                str(tmp_path / "ref.npz"),
            ]
        )
        == 0
    )
    dataset = load_dataset(
        DataConfig(name="imagefolder", path=str(tmp_path / "images"), image_size=64, channels=1), training=False
    )
    batches = list(image_batches(dataset, batch_size=4))
    assert [len(batch) for batch in batches] == [4, 4, 2] and batches[0].shape[1:] == (64, 64, 1)
    whole = compute_reference(np.concatenate(batches), ClassifierExtractor.from_checkpoint(classifier))
    assert np.allclose(ReferenceStatistics.load(tmp_path / "ref.npz").mu, whole.mu, atol=1e-5)


def test_a_reference_is_of_the_classifiers_own_dataset_and_says_so(tmp_path, capsys):
    """Without --dataset the classifier's dataset is used; another one is refused; the file records it, and samples
    of another image size are refused against it."""
    from argen.eval.reference import ReferenceStatistics

    classifier = ROOT / "checkpoints" / "fmnist64" / "classifier"
    reference = tmp_path / "ref.npz"
    assert main(["eval", "ref", "--classifier", str(classifier), "--limit", "300", "--out", str(reference)]) == 0
    assert "of 300 fashion-mnist test images, 32x32" in capsys.readouterr().out
    recorded = ReferenceStatistics.load(reference).dataset
    assert recorded == {
        "name": "fashion-mnist",
        "path": "",
        "split": "test",
        "skip": 0,
        "image_size": 32,
        "channels": 1,
    }
    assert (
        main(
            [
                "eval",
                "ref",
                "--classifier",
                str(classifier),
                "--dataset",
                "digits",
                "--out",
                str(tmp_path / "digits.npz"),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert "was trained on fashion-mnist, not digits: its features mean nothing on other data" in error
    assert not (tmp_path / "digits.npz").exists()
    samples = write_npz(tmp_path / "samples.npz", np.zeros((20, 64, 64, 1), np.uint8), labels=np.arange(20) % 10)
    assert main(["eval", str(samples), "--ref", str(reference), "--classifier", str(classifier)]) == 2
    assert "the samples are 64x64 images but the reference is of 32x32 ones" in capsys.readouterr().err
    small = write_npz(tmp_path / "small.npz", np.zeros((20, 32, 32, 1), np.uint8), labels=np.arange(20) % 10)
    assert main(["eval", str(small), "--ref", str(reference), "--classifier", str(classifier)]) == 0
    assert '"reference": "300 fashion-mnist test images, 32x32"' in capsys.readouterr().out


def test_tokenizer_eval_reports_rfid_and_the_class_accuracy_of_reconstructions(tmp_path, capsys):
    shipped = ROOT / "checkpoints" / "fmnist64"
    assert (
        main(
            [
                "tokenizer",
                "eval",
                "--tokenizer",
                str(shipped / "tokenizer"),
                "--classifier",
                str(shipped / "classifier"),
                "--count",
                "200",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 200 and metrics["psnr_db"] > 24 and metrics["rfid"] > 0
    assert 0.7 < metrics["reconstruction_class_accuracy"] <= 1  # the classifier still sees the classes
