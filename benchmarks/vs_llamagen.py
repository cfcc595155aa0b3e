"""argen's decoder against LlamaGen's own `generate()`, on the same GPT-B weights, alternated in one run.

    .venv/bin/python benchmarks/vs_llamagen.py --llamagen PATH      # PATH: a FoundationVision/LlamaGen checkout

LlamaGen's GPT-B (16x16 tokens, 16384 codes, 1000 classes) is built from the user's checkout with random
weights (its zero output head randomised too, so sampling is not uniform), converted with
`argen.io.convert.convert_llamagen_gpt` and loaded into argen's Transformer. For each batch size and guidance
scale the two decoders run in turn, `--repeats` times each (after one untimed warm-up of both), sampling at
temperature 1 without top-k/top-p; the table gives the median seconds per image and LlamaGen's time over
argen's. Nothing of LlamaGen is copied into this repository: it is imported from PATH.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from argen.config import LayoutConfig
from argen.io.checkpoint import load_state_into
from argen.io.convert import convert_llamagen_gpt, infer_llamagen_config
from argen.layout import Layout
from argen.machine import OtherLoad, cpu_model
from argen.model import Transformer
from argen.precision import PRECISIONS, resolve
from argen.sample import SamplingOptions, decode_rows, generate

GRID = 16
LLAMAGEN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def llamagen_model(checkout: Path, dtype: torch.dtype):
    """LlamaGen's GPT-B and its generate(), imported from the checkout, with random weights."""
    if not (checkout / "autoregressive" / "models" / "gpt.py").is_file():
        raise SystemExit(f"{checkout} is not a LlamaGen checkout (no autoregressive/models/gpt.py)")
    sys.path.insert(0, str(checkout))
    from autoregressive.models.generate import generate as llamagen_generate
    from autoregressive.models.gpt import GPT_models

    torch.manual_seed(0)
    model = GPT_models["GPT-B"](
        vocab_size=16384, block_size=GRID * GRID, num_classes=1000, cls_token_num=1, model_type="c2i"
    )
    torch.nn.init.normal_(model.output.weight, std=model.config.initializer_range)
    return model.to(dtype).eval(), llamagen_generate


def argen_model(llamagen) -> Transformer:
    weights = convert_llamagen_gpt({name: value.float() for name, value in llamagen.state_dict().items()})
    config, n_transition = infer_llamagen_config(weights)
    model = Transformer(config, n_transition)
    load_state_into(model, weights, "LlamaGen GPT-B")
    return model.eval()


def seconds(run) -> float:
    begin = time.perf_counter()
    run()
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llamagen", required=True, type=Path, help="a FoundationVision/LlamaGen checkout")
    parser.add_argument("--llamagen-dtype", default="fp32", choices=list(LLAMAGEN_DTYPES))
    parser.add_argument("--dtype", default="auto", choices=PRECISIONS, help="argen's precision")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--cfg", default="1,2", help="comma-separated guidance scales")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    llamagen, llamagen_generate = llamagen_model(args.llamagen, LLAMAGEN_DTYPES[args.llamagen_dtype])
    model = argen_model(llamagen)
    layout = Layout(LayoutConfig(grid=(GRID, GRID)), model.config.vocab_size)
    print(
        f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; LlamaGen in "
        f"{args.llamagen_dtype}, argen --dtype {args.dtype}; median of {args.repeats} runs each\n"
    )
    print("| batch | guidance | argen precision | LlamaGen s/image | argen s/image | LlamaGen / argen | other load |")
    print("|---|---|---|---|---|---|---|")
    for batch in (int(value) for value in args.batches.split(",")):
        for guidance in (float(value) for value in args.cfg.split(",")):
            labels = torch.arange(batch) % 1000
            options = SamplingOptions(guidance=guidance, dtype=args.dtype)
            rows = batch * (2 if guidance != 1.0 else 1)
            runs = {
                "llamagen": lambda: llamagen_generate(
                    llamagen,
                    labels,
                    GRID * GRID,
                    cfg_scale=guidance,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    sample_logits=True,
                ),
                "argen": lambda: generate(model, layout, labels, options=options),
            }
            for run in runs.values():
                run()  # warm-up: caches, packed weights
            times = {name: [] for name in runs}
            load = OtherLoad()
            load.start()
            for _ in range(args.repeats):
                for name, run in runs.items():
                    times[name].append(seconds(run) / batch)
            others = load.stop()
            llamagen_s, argen_s = (statistics.median(times[name]) for name in runs)
            precision = resolve(options.dtype, decode_rows(layout, rows), torch.device("cpu"))
            print(
                f"| {batch} | {guidance:g} | {precision} | {llamagen_s:.3f} | {argen_s:.3f} | "
                f"{llamagen_s / argen_s:.2f}x | {others if others is None else round(others, 2)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
