"""Print the markdown tables of docs/results.md from the outputs of `scripts/reproduce.sh`.

.venv/bin/python scripts/results_table.py par|ctf|ctf-speed|prologue|demo [STAGE]|demo-speed|combined|video|video3d
"""

import json
import sys
from pathlib import Path

RUNS = Path("runs")
PAR_MODELS = {  # run name -> what differs from the sequential baseline
    "ar1x": "1x raster (sequential)",
    "par4": "PAR-4x: region order, 4 tokens per step",
    "par16": "PAR-16x: region order, 16 tokens per step",
    "raster4": "raster order, 4 tokens per step",
    "par4-noinit": "PAR-4x without the 4 sequential initial tokens",
    "par4-causal": "PAR-4x with causal attention inside a group",
}


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def scores(metrics: dict) -> str:
    """The quality cells every table ends with: FID ± its bootstrap std, IS, precision, recall, class accuracy."""
    return (
        f"{metrics['fid']:.1f} ± {metrics['fid_bootstrap_std']:.1f} | {metrics['inception_score']:.2f} | "
        f"{metrics['precision']:.3f} | {metrics['recall']:.3f} | {metrics['class_accuracy']:.1%} |"
    )


def par() -> None:
    print(
        "| model | steps | train min | loss | s/image (batch 1) | speed-up | FID (± bootstrap std) | IS | precision "
        "| recall | class acc. |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    baseline_seconds = None
    for name, description in PAR_MODELS.items():
        metrics = read(RUNS / "eval64" / name / "metrics.json")
        bench = read(RUNS / "eval64" / name / "bench-b1.json")
        log = RUNS / f"fmnist64-{name}" / "log.jsonl"
        if not metrics or not bench or not log.is_file():
            print(f"| {description} | (not run) |")
            continue
        last = json.loads(log.read_text().splitlines()[-1])
        seconds = bench["ms_per_step_median"] * bench["steps"] / 1e3
        baseline_seconds = baseline_seconds or seconds
        print(
            f"| {description} | {bench['steps']} | {last['elapsed_s'] / 60:.1f} | {last['model_loss']:.3f} | "
            f"{seconds:.3f} | {baseline_seconds / seconds:.2f}x | {scores(metrics)}"
        )


def final(log: Path, key: str = "model_loss") -> str:
    """`loss (minutes)` of a training log's last entry, or '' when the run is missing."""
    if not log.is_file():
        return ""
    last = json.loads(log.read_text().splitlines()[-1])
    return f"{last[key]:.3f} ({last['elapsed_s'] / 60:.1f} min)"


def trained(run: str, refiner: str | None = None) -> str:
    """The training column of a run under runs/ (and of the CTF refiner that decodes it)."""
    text = final(RUNS / run / "log.jsonl")
    return f"{text}; refiner {final(RUNS / refiner / 'log.jsonl')}" if refiner else text


def quality_rows(rows: list[tuple[str, Path, str]]) -> None:
    """Rows of (description, evaluation folder, training column text): steps, FID, IS, precision, recall, acc."""
    print(
        "| model | steps | training: final loss (time) | FID (± bootstrap std) | IS | precision | recall | class acc. |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for description, folder, training in rows:
        metrics, sampling = read(folder / "metrics.json"), read(folder / "sampling.json")
        if not metrics:
            print(f"| {description} | (not run) |")
            continue
        print(f"| {description} | {sampling.get('steps', '')} | {training} | {scores(metrics)}")


CTF_MODELS = {  # eval name -> (description, coarse AR run, refiner run)
    "ar1x": ("baseline 1x (fine ids)", "ar1x", None),
    "ctf128": ("CTF, 128 spherical k-means clusters", "ctf128", "ctf128-refiner"),
    "ctf128-balanced": ("CTF, 128 size-balanced k-means clusters", "ctf128-balanced", "ctf128-balanced-refiner"),
    "ctf64-random": ("CTF, 64 random groups", "ctf64-random", "ctf64-random-refiner"),
    "ctf128-random": ("CTF, 128 random groups", "ctf128-random", "ctf128-random-refiner"),
    "ctf256-random": ("CTF, 256 random groups", "ctf256-random", "ctf256-random-refiner"),
    "ctf128-random-refiner-small": (
        "CTF, 128 random groups, refiner 2 x 96",
        "ctf128-random",
        "ctf128-random-refiner-small",
    ),
    "ctf128-random-T1.0-R1.0": (
        "CTF, 128 random groups, coarse T 1.0, refiner T 1.0",
        "ctf128-random",
        "ctf128-random-refiner",
    ),
    "ctf128-random-par4": ("CTF + PAR-4x, 128 random groups", "ctf128-random-par4", "ctf128-random-refiner"),
}


def ctf() -> None:
    rows = []
    for name, (description, ar, refiner) in CTF_MODELS.items():
        training = trained(f"fmnist64-{ar}", refiner and f"fmnist64-{refiner}")
        rows.append((description, RUNS / "eval64" / name, training))
    quality_rows(rows)


def speed_rows(models: list[tuple[str, Path]], batches: tuple[int, int]) -> None:
    """Rows of (description, evaluation folder holding bench-cfg-b{batch}.json): steps, images/s, refiner share."""
    print(
        f"| model | AR steps | images/s, batch {batches[0]} | refiner share | images/s, batch {batches[1]} "
        "| refiner share |"
    )
    print("|---|---|---|---|---|---|")
    for description, folder in models:
        cells = [description]
        for batch in batches:
            bench = read(folder / f"bench-cfg-b{batch}.json")
            if batch == batches[0]:
                cells.append(str(bench.get("steps", "")))
            cells += [
                f"{bench['images_per_s']:.2f}" if bench else "",
                f"{bench['refiner_share']:.1%}" if "refiner_share" in bench else "-",
            ]
        print("| " + " | ".join(cells) + " |")


def ctf_speed() -> None:
    speed_rows(
        [
            (description, RUNS / "eval64" / name)
            for name, description in (
                ("ar1x", "1x"),
                ("par4", "PAR-4x"),
                ("ctf128-random", "CTF 128"),
                ("ctf128-random-par4", "CTF 128 + PAR-4x"),
            )
        ],
        (1, 64),
    )


def demo_speed() -> None:
    speed_rows(
        [
            (description, RUNS / "eval64" / f"demo-{name}")
            for name, (description, _) in DEMO_MODELS.items()
            if (RUNS / "eval64" / f"demo-{name}" / "bench-cfg-b1.json").is_file()
        ],
        (1, 40),
    )


def prologue() -> None:
    rows = []
    for name, description, ar in (
        ("ar1x", "baseline 1x", "ar1x"),
        ("prologue", "Prologue (joint)", "prologue-ar"),
        ("prologue-post", "Prologue-Post", "prologue-post-ar"),
        ("prologue-post-k64", "Prologue-Post, 64 codes, entropy weight 0.1", "prologue-post-k64-ar"),
        ("prologue-k64", "Prologue (joint), 64 codes, entropy weight 0.1", "prologue-k64-ar"),
    ):
        training = final(RUNS / f"fmnist64-{ar}" / "log.jsonl")
        rows += [
            (f"{description}, guidance 2, T 0.8", RUNS / "eval64" / name, training),
            (f"{description}, no guidance, T 1", RUNS / "eval64" / f"{name}-noguidance", ""),
        ]
    quality_rows(rows)
    print("\n| tokenizer | PSNR (dB) | rFID | codebook usage |\n|---|---|---|---|")
    for name in ("tokenizer", "prologue", "prologue-post", "prologue-k64"):
        metrics = read(RUNS / "eval64" / f"tokenizer-{name}" / "metrics.json")
        if metrics:
            print(f"| {name} | {metrics['psnr_db']:.2f} | {metrics['rfid']:.2f} | {metrics['codebook_usage']:.1%} |")
    print("\n| cache | prologue ids: probe accuracy | first visual ids: probe accuracy |\n|---|---|---|")
    for name in ("prologue", "prologue-post", "prologue-post-k64", "prologue-k64"):
        probe = read(RUNS / "eval64" / name / "probe.json")
        if probe:
            prologue_ids, first_visual = probe["prologue"], probe["first_visual"]
            print(f"| {name} | {prologue_ids['test_accuracy']:.1%} | {first_visual['test_accuracy']:.1%} |")


DEMO_MODELS = {  # demo run name -> (description, refiner run)
    "ar1x": ("1x raster", None),
    "region1x": ("1x in PAR-4x's region order", None),
    "raster4": ("4 per step in raster order", None),
    "par4": ("PAR-4x", None),
    "par16": ("PAR-16x", None),
    "ctf": ("CTF, 128 random groups", "demo64-ctf-refiner"),
    "prologue": ("Prologue (Post, 64 codes)", None),
    "combined": ("Prologue (4 per step) + CTF + PAR-16x, no sequential initial tokens", "demo64-ctf-refiner"),
    "ctf-par16": ("CTF + PAR-16x, no sequential initial tokens", "demo64-ctf-refiner"),
    "prologue-par16": ("Prologue (4 per step) + PAR-16x, no sequential initial tokens", None),
}


def demo(stage: str = "1") -> None:
    """The demo's models: the settings chosen on the validation split, its FID there, and the test scores; stage 2
    is the continuation (scripts/reproduce.sh: DEMO_STAGE=2), its training column that continuation's."""
    suffix = "" if stage == "1" else f"-stage{stage}"
    print(
        "| model | forward passes | training: final loss (time) | chosen: guidance, T, weights | validation FID "
        "| test FID (± bootstrap std) | IS | precision | recall | class acc. |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (description, refiner) in DEMO_MODELS.items():
        folder = RUNS / "eval64" / f"demo-{name}{suffix}"
        metrics, sampling = read(folder / "metrics.json"), read(folder / "sampling.json")
        chosen = best_validation(folder / "validation")
        if not metrics or not chosen:
            print(f"| {description} | (not run) |")
            continue
        (cfg, temperature, ema), validation_fid = chosen
        training = trained(f"demo64-{name}{suffix}", refiner)
        print(
            f"| {description} | {sampling['steps']} | {training} | {cfg}, {temperature}, "
            f"{'EMA' if ema else 'last'} | {validation_fid:.1f} | {scores(metrics)}"
        )
    real = read(RUNS / "eval64" / "demo-real-validation" / "metrics.json")
    if real:
        print(f"| 1,000 real validation images (the floor) | - | - | - | - | {scores(real)}")


def combined() -> None:
    """The combination at 3 M parameters beside the single methods of the same size and recipe."""
    models = (
        ("ar1x", "1x raster", "fmnist64-ar1x", None),
        ("par4", "PAR-4x", "fmnist64-par4", None),
        ("par16", "PAR-16x", "fmnist64-par16", None),
        ("ctf128-random", "CTF, 128 random groups", "fmnist64-ctf128-random", "fmnist64-ctf128-random-refiner"),
        (
            "ctf128-random-par4",
            "CTF + PAR-4x, 128 random groups",
            "fmnist64-ctf128-random-par4",
            "fmnist64-ctf128-random-refiner",
        ),
        ("prologue-post-k64", "Prologue-Post, 64 codes", "fmnist64-prologue-post-k64-ar", None),
        (
            "combined",
            "Prologue (4 per step) + CTF + PAR-16x, no sequential initial tokens",
            "fmnist64-combined",
            "fmnist64-ctf128-random-refiner",
        ),
    )
    rows = [(description, RUNS / "eval64" / name, trained(run, refiner)) for name, description, run, refiner in models]
    rows.append((f"{models[-1][1]}, no guidance, T 1", RUNS / "eval64" / "combined-noguidance", ""))
    quality_rows(rows)


def video(evaluations: str = "evalmfm", runs: str = "mfm") -> None:
    print(
        "| model | steps | training: final loss (time) | s/video (batch 1) | frame FID | temporal distance "
        "(real) | video acc. | frame acc. |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, description in (("real", "real training videos"), ("1x", "1x"), ("par4", "PAR-4x"), ("par16", "PAR-16x")):
        folder = RUNS / evaluations / name
        if name == "real" and not (folder / "metrics.json").is_file():
            continue  # the floor row only where `reproduce.sh` scored real videos (video3d)
        metrics, bench = read(folder / "metrics.json"), read(folder / "bench-b1.json")
        if not metrics:
            print(f"| {description} | (not run) |")
            continue
        seconds = f"{bench['seconds_per_batch_median']:.3f}" if bench else ""
        training = final(RUNS / f"{runs}-{name}" / "log.jsonl")
        fid, accuracy = f"{metrics['frame_fid']:.1f}", f"{metrics['video_class_accuracy']:.1%}"
        if "frame_fid_bootstrap_std" in metrics:  # `argen eval video --bootstrap`
            fid += f" ± {metrics['frame_fid_bootstrap_std']:.1f}"
            accuracy += f" ± {metrics['video_class_accuracy_bootstrap_std']:.1%}"
        print(
            f"| {description} | {bench.get('steps', '')} | {training} | {seconds} | {fid} | "
            f"{metrics['temporal_distance']:.3f} ({metrics['real_temporal_distance']:.3f}) | {accuracy} | "
            f"{metrics['frame_class_accuracy']:.1%} |"
        )


def video3d() -> None:
    """The per-frame and the two causal 3D tokenizers on the same 17-frame test clips, then the AR models on the
    3D grid."""
    frames = 17  # configs/mfm17-*.yaml
    print(
        "| tokenizer | tokens per clip | PSNR per frame | codebook usage | perplexity | "
        "training: final reconstruction loss (time) |"
    )
    print("|---|---|---|---|---|---|")
    for name, description, per_frame in (
        ("mfm17-tokenizer", "per frame (17, 8, 8), VQ", True),
        ("mfm17-causal3d-tokenizer", "causal 3D (5, 8, 8), VQ", False),
        ("mfm17-causal3d-lfq-tokenizer", "causal 3D (5, 8, 8), LFQ", False),
    ):
        metrics = read(RUNS / name / "eval" / "metrics.json")
        if not metrics:
            print(f"| {description} | (not run) |")
            continue
        tokens = metrics["tokens_per_item"] * (frames if per_frame else 1)
        print(
            f"| {description} | {tokens} | {metrics['psnr_db']:.2f} dB | {metrics['codebook_usage']:.1%} | "
            f"{metrics['perplexity']:.0f} | {final(RUNS / name / 'log.jsonl', 'reconstruction_loss')} |"
        )
    print()
    video("evalmfm17", "mfm17")


RECOGNISABLE = 0.8  # the class accuracy a setting must reach on validation before its FID competes (issue #24)


def best_setting(folder: Path) -> tuple[str, float] | None:
    """The name of the validation run under `folder` (one sub-folder per setting) with the lowest classifier-FID
    among those whose samples the classifier recognises at least RECOGNISABLE of the time (among all when none
    does), and that FID."""
    scored = [
        (read(run / "metrics.json"), run.name) for run in sorted(folder.glob("*")) if (run / "metrics.json").is_file()
    ]
    candidates = [run for run in scored if run[0]["class_accuracy"] >= RECOGNISABLE] or scored
    if not candidates:
        return None
    fid, name = min((metrics["fid"], name) for metrics, name in candidates)
    return name, fid


def best_validation(folder: Path) -> tuple[tuple[str, str, bool], float] | None:
    """(guidance, temperature, EMA weights) of the best validation run under `folder` (best_setting; sub-folders
    cfgG-tT-ema|raw, as `scripts/reproduce.sh demo` writes them), and its FID."""
    best = best_setting(folder)
    if best is None:
        return None
    name, fid = best
    cfg, temperature, weights = name.split("-")
    return (cfg[3:], temperature[1:], weights == "ema"), fid


def choose(folder: str) -> None:
    """Print the sampling options of the best validation run under `folder` (see best_validation)."""
    chosen = best_validation(Path(folder))
    if chosen is None:
        sys.exit(f"no validation metrics under {folder}")
    (cfg, temperature, ema), _ = chosen
    print(f"--cfg {cfg} --temperature {temperature}" + (" --ema" if ema else ""))


if __name__ == "__main__":
    if sys.argv[1:2] == ["choose"]:
        choose(sys.argv[2])
        sys.exit()
    if sys.argv[1:2] == ["best"]:  # the best setting's folder name (any naming)
        print((best_setting(Path(sys.argv[2])) or sys.exit(f"no validation metrics under {sys.argv[2]}"))[0])
        sys.exit()
    tables = {
        "par": par,
        "ctf": ctf,
        "ctf-speed": ctf_speed,
        "prologue": prologue,
        "demo": demo,
        "demo-speed": demo_speed,
        "combined": combined,
        "video": video,
        "video3d": video3d,
    }
    tables[sys.argv[1] if len(sys.argv) > 1 else "par"](*sys.argv[2:])
