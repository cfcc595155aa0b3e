"""`argen eval ref`, `argen eval SAMPLES` and `argen report` end to end on tiny data."""

import json

import numpy as np
import torch

from argen.cli import main
from argen.eval.features import Classifier, ClassifierConfig, save_classifier
from argen.eval.npz import write_npz


def test_eval_then_report(tmp_path, capsys):
    torch.manual_seed(0)
    classifier = save_classifier(tmp_path / "classifier",
                                 Classifier(ClassifierConfig(image_size=16, widths=(8, 16), feature_dim=16)))
    reference = tmp_path / "ref.npz"
    assert main(["eval", "ref", "--classifier", str(classifier), "--dataset", "synthetic", "--image-size", "16",
                 "--out", str(reference)]) == 0
    rng = np.random.default_rng(0)
    for name, steps, seconds in (("raster", 64, 2.0), ("par4", 19, 0.7)):
        folder = tmp_path / name
        folder.mkdir()
        write_npz(folder / "samples.npz", rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8),
                  labels=np.arange(40) % 10)
        (folder / "sampling.json").write_text(json.dumps({"steps": steps, "seconds": seconds, "images": 40,
                                                          "images_per_s": 40 / seconds}))
        assert main(["eval", str(folder / "samples.npz"), "--ref", str(reference), "--classifier", str(classifier),
                     "--out", str(folder / "metrics.json")]) == 0
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["samples"] == 40 and metrics["reference_samples"] == 512
        assert metrics["fid"] > 0 and 0 <= metrics["class_accuracy"] <= 1
        assert metrics["extractor"] == "cnn" and len(metrics["checksum"]) == 64
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"step": s, "model_loss": 1 / s}) for s in range(1, 5)))
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--metrics", f"raster={tmp_path / 'raster' / 'metrics.json'}",
                 str(tmp_path / "par4" / "metrics.json"), "--samples", str(tmp_path / "raster" / "samples.npz"),
                 "--log", str(log)]) == 0
    page = (out / "index.html").read_text()
    assert page.count("<table>") == 1 and "<td>par4</td>" in page and "<td>raster</td>" in page
    # grid + fid/IS/accuracy against steps and wall time + training curves
    assert page.count("<img ") == 1 + 6 + 1
    assert main(["eval", str(tmp_path / "raster" / "samples.npz"), "--ref", str(reference)]) == 2
    assert "exactly one feature extractor" in capsys.readouterr().err
    assert main(["report", "--out", str(out), "--metrics", str(tmp_path / "missing.json")]) == 2
