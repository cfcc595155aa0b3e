"""argen's decoder against LlamaGen's own `generate()` at its best precision, on the same GPT-B weights, in one run.

    .venv/bin/python benchmarks/vs_llamagen.py --llamagen PATH      # PATH: a FoundationVision/LlamaGen checkout

LlamaGen's GPT-B (16x16 tokens, 16384 codes, 1000 classes) is built from the user's checkout with random
weights (its zero output head randomised too, so sampling is not uniform), converted with
`argen.io.convert.convert_llamagen_gpt` and loaded into argen's Transformer. LlamaGen runs in fp32 and cast to
bf16 (its sample scripts' `--precision`), and the faster of the two is the peer. For each batch size and
guidance scale the decoders run in turn, `--repeats` times each (after one untimed warm-up of each), sampling at
temperature 1 without top-k/top-p; the table gives the median seconds per image and the peer's time over
argen's. `--speculative W` adds argen with speculative Jacobi decoding (its forward passes per image beside):
on random weights the acceptance is not that of a trained model, so that column times the window passes only.
Nothing of LlamaGen is copied into this repository: it is imported from PATH.
"""

import argparse
import copy
import dataclasses
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


def llamagen_model(checkout: Path):
    """LlamaGen's GPT-B (fp32) and its generate(), imported from the checkout, with random weights."""
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
    return model.eval(), llamagen_generate


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
    parser.add_argument("--dtype", default="auto", choices=PRECISIONS, help="argen's precision")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--cfg", default="1,2", help="comma-separated guidance scales")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--speculative", type=int, default=0, help="also argen with this speculative window")
    args = parser.parse_args()

    llamagen, llamagen_generate = llamagen_model(args.llamagen)
    # the same weights cast to bf16, as LlamaGen's sample scripts do with --precision bf16
    peers = {"fp32": llamagen, "bf16": copy.deepcopy(llamagen).to(torch.bfloat16)}
    model = argen_model(llamagen)
    layout = Layout(LayoutConfig(grid=(GRID, GRID)), model.config.vocab_size)
    print(
        f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; argen --dtype {args.dtype}; "
        f"median of {args.repeats} runs each\n"
    )
    speculative = (
        f" | argen SJD W={args.speculative} s/image (passes) | best LlamaGen / SJD" if args.speculative else ""
    )
    print(
        "| batch | guidance | argen precision | LlamaGen fp32 s/image | LlamaGen bf16 s/image | argen s/image | "
        f"best LlamaGen / argen{speculative} | other load |"
    )
    print("|---|---|---|---|---|---|---|" + ("---|---|" if args.speculative else "") + "---|")
    for batch in (int(value) for value in args.batches.split(",")):
        for guidance in (float(value) for value in args.cfg.split(",")):
            labels = torch.arange(batch) % 1000
            options = SamplingOptions(guidance=guidance, dtype=args.dtype)
            rows = batch * (2 if guidance != 1.0 else 1)
            runs = {
                f"llamagen {name}": lambda peer=peer: llamagen_generate(
                    peer,
                    labels,
                    GRID * GRID,
                    cfg_scale=guidance,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    sample_logits=True,
                )
                for name, peer in peers.items()
            }
            runs["argen"] = lambda: generate(model, layout, labels, options=options)
            passes = []
            if args.speculative:
                fast = dataclasses.replace(options, speculative=args.speculative)
                runs["sjd"] = lambda: passes.append(generate(model, layout, labels, options=fast).forward_passes)
            for run in runs.values():
                run()  # warm-up: caches, packed weights
            times = {name: [] for name in runs}
            load = OtherLoad()
            load.start()
            for _ in range(args.repeats):
                for name, run in runs.items():
                    times[name].append(seconds(run) / batch)
            others = load.stop()
            median = {name: statistics.median(values) for name, values in times.items()}
            best = min(median["llamagen fp32"], median["llamagen bf16"])
            precision = resolve(options.dtype, decode_rows(layout, rows), torch.device("cpu"))
            row = (
                f"| {batch} | {guidance:g} | {precision} | {median['llamagen fp32']:.3f} | "
                f"{median['llamagen bf16']:.3f} | {median['argen']:.3f} | {best / median['argen']:.2f}x |"
            )
            if args.speculative:
                row += f" {median['sjd']:.3f} ({statistics.median(passes):.0f}) | {best / median['sjd']:.2f}x |"
            print(f"{row} {others if others is None else round(others, 2)} |", flush=True)


if __name__ == "__main__":
    main()
