"""Make the reference numbers of Prologue's released AR (tests/data/prologue-ar/) with the official code, once.

    .venv/bin/python scripts/prologue_reference.py --official DIR --out tests/data/prologue-ar

DIR holds the official `models.py` (github.com/Zyriix/prologue, commit 3b6db41) and a `utils.py` defining
`print0` (the official one imports the training stack); `einops` must be importable. The script builds the
official `ARModel` at a tiny size in the released models' configuration (configs/ar/_defaults.yaml,
configs/tokenizer/prologue.yaml, use_eos=True: GEGLU 11/4, QK-norm, RoPE axes [12, 10, 10] on the sequence index,
the condition MLP of `conditional_injection: llamagen`), draws every parameter at random (seeded; the official
initialisation's near-zero gates would hide the layers), and writes

- `model.safetensors`: its state dict, as Accelerate saves it (`argen convert prologue-ar` reads this layout);
- `reference.safetensors`: a teacher-forced batch (`idx`, `labels`) with the official logits, and greedy samples
  (`topK=1`) without guidance and with a constant guidance of 2, as `ids_*`;
- `config.json`: the sizes above and the commit of the official code.

The parity test (tests/test_prologue_released.py) converts `model.safetensors` with argen and compares.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

DIM, LAYERS, HEADS, AXES = 64, 2, 2, [12, 10, 10]  # head_dim 32 = 12 + 10 + 10, as 64 = 24 + 20 + 20 at Base
CLASSES, COND_DIM, VISUAL, PROLOGUE, Z_LEN, GRID = 5, 8, 16, 8, 4, 4  # 4 classes + the null one; a 4x4 grid


class Config(dict):
    """The mapping OmegaConf gives the official code: item and attribute access."""

    def __getattr__(self, name):
        return self[name]

    def __init__(self, base=(), **more):
        super().__init__(base, **more)


def official_config() -> Config:
    ar = {
        "input_dim": 14, "output_dim": VISUAL, "max_seq_len": Z_LEN + GRID * GRID, "input_bias": False,
        "input_layer": False, "cond_dim": COND_DIM, "cond_input_dim": CLASSES, "emb_dropout": 0.0, "drop": 0.0,
        "attn_drop": 0.0, "attn_norm": True, "context_type": "none", "rope_input_type": "l", "rope_ctx_type": "l",
        "rope_theta": 10000, "rope_ctx_theta": 10000, "rope_axes_dim": AXES, "abs_pos": False, "rope": True,
        "causal": True, "out_act": False, "out_norm": True, "out_layer": True, "ffn_bias": False, "out_bias": False,
        "attn_out_bias": False, "norm_layer": "RMSNorm", "ffn_type": "geglu", "mlp_ratio": "11/4", "zero_out": False,
        "temperature": 1.0, "use_label": True, "conditional_injection": "llamagen", "ste_ar_embedding": False,
        "dim": DIM, "layer_num": LAYERS, "heads": HEADS, "rope_hybrid_l_len": Z_LEN,
    }  # fmt: skip
    return Config({
        "ARModel": Config(ar), "Prologue": True, "share_semantic_codebook": False, "z_len": Z_LEN, "use_eos": True,
        "Quantizer": {"codebook_size": VISUAL}, "SemanticQuantizer": {"codebook_size": PROLOGUE},
    })  # fmt: skip


def segment_mask() -> torch.Tensor:
    """The per-step logit mask the official sampler takes (before its EOS padding): prologue ids, then visual."""
    mask = torch.full((Z_LEN + GRID * GRID, VISUAL + PROLOGUE), float("-inf"))
    mask[:Z_LEN, VISUAL:] = 0.0
    mask[Z_LEN:, :VISUAL] = 0.0
    return mask


# The tokenizer: 32x32 RGB images in 8x8 patches (a 4x4 grid), codes of 6 dims; same widths and RoPE axes as the AR.
IMAGE, PATCH, CODE_DIM = 32, 8, 6


def official_tokenizer_config() -> Config:
    patch_dim, x_len = PATCH * PATCH * 3, (IMAGE // PATCH) ** 2
    block = {
        "cond_dim": COND_DIM, "cond_input_dim": CLASSES, "dim": DIM, "layer_num": LAYERS, "mlp_ratio": "8/3",
        "heads": HEADS, "emb_dropout": 0.0, "drop": 0.0, "attn_drop": 0.0, "attn_norm": True, "causal": False,
        "out_act": False, "norm_layer": "RMSNorm", "ffn_type": "geglu", "use_label": True, "rope": True,
        "abs_pos": False, "rope_axes_dim": [10, 10, 12],
    }  # fmt: skip
    encoder = Config(block, input_dim=patch_dim, output_dim=DIM, max_seq_len=Z_LEN, ctx_max_seq_len=x_len,
                     out_norm=False, out_layer=False, input_bias=True, input_layer=True, context_type="concat",
                     rope_input_type="l", rope_ctx_type="hw", rope_theta=10000, rope_ctx_theta=2000)  # fmt: skip
    decoder = Config(block, input_dim=CODE_DIM, output_dim=patch_dim, max_seq_len=x_len, ctx_max_seq_len=Z_LEN,
                     input_bias=True, input_layer=True, out_norm=True, out_layer=True, zero_out=True,
                     context_type="none", rope_input_type="hw", rope_ctx_type="l", rope_theta=2000,
                     rope_ctx_theta=10000)  # fmt: skip
    quantizer = {"z_dim": CODE_DIM, "dim": DIM, "cond_dim": COND_DIM, "vq_beta": 0.25, "use_entropy_loss": False,
                 "monitor_metrics": True, "codebook_init": "simvq", "z_norm_type": "l2", "frozen_codebook": False,
                 "codebook_proj": "l2"}  # fmt: skip
    return Config({
        "Prologue": True, "share_semantic_encoder": True, "share_semantic_codebook": False, "z_len": Z_LEN,
        "x_len": x_len, "Encoder": encoder, "Decoder": decoder,
        "Quantizer": Config(quantizer, codebook_size=VISUAL, length=x_len, temperature=1.0, use_quant_loss=True,
                            ste="VQ"),
        "SemanticQuantizer": Config(quantizer, codebook_size=PROLOGUE, length=Z_LEN, temperature=0.1,
                                    use_quant_loss=False, ste="ProbQ"),
    })  # fmt: skip


def official_post_tokenizer_config() -> Config:
    """Prologue-Post (configs/tokenizer/prologue_post.yaml): the encoder without queries, a separate semantic
    encoder (FFN 11/4) over its outputs with the queries."""
    config = official_tokenizer_config()
    x_len = config["x_len"]
    encoder = Config(config["Encoder"], max_seq_len=x_len, context_type="none", rope_input_type="hw",
                     rope_theta=2000)  # fmt: skip
    semantic = Config(config["Encoder"], input_dim=DIM, output_dim=DIM, mlp_ratio="11/4")
    return Config(config, Encoder=encoder, SemanticEncoder=semantic, share_semantic_encoder=False,
                  semantic_input_type="encoder_output")  # fmt: skip


def tokenizer_reference(out: Path, post: bool = False) -> None:
    """The official Encoder and Decoder at a tiny size (random weights): their state dicts as Accelerate saves them
    (one file each), and the ids of random images and the images decoded from random ids."""
    from models import Decoder, Encoder  # the official code

    torch.manual_seed(2)
    config = official_post_tokenizer_config() if post else official_tokenizer_config()
    encoder, decoder = Encoder(config).eval(), Decoder(config).eval()
    with torch.no_grad():
        for parameter in [*encoder.parameters(), *decoder.parameters()]:
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    tokenizer = out.parent / ("prologue-post-tokenizer" if post else "prologue-tokenizer")
    tokenizer.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, tokenizer / "model.safetensors")
    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, tokenizer / "model_1.safetensors")
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, IMAGE, IMAGE, generator=generator) * 2 - 1
    ids = torch.randint(0, VISUAL, (2, (IMAGE // PATCH) ** 2), generator=generator)
    null = torch.nn.functional.one_hot(torch.full((2,), CLASSES - 1), CLASSES).float()  # ae_no_label=True

    def patchify(x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // PATCH) * (w // PATCH), PATCH * PATCH * c)  # (p1 p2 c), as the official patchify

    def unpatchify(x):
        side = IMAGE // PATCH
        x = x.reshape(len(x), side, side, PATCH, PATCH, 3).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(len(x), 3, IMAGE, IMAGE)

    with torch.no_grad():
        encoded = encoder.encode_idx(patchify(images), null)  # [prologue ids, visual ids]
        decoded = unpatchify(decoder(encoder.get_visual_codes(torch.cat([torch.zeros(2, Z_LEN, dtype=torch.long),
                                                                         ids], 1), null), null))  # fmt: skip
    save_file({"images": images, "encoded": encoded, "ids": ids, "decoded": decoded.contiguous()},
              tokenizer / "reference.safetensors")  # fmt: skip
    (tokenizer / "config.json").write_text(json.dumps({
        "official_commit": "3b6db41", "image_size": IMAGE, "patch_size": PATCH, "dim": DIM, "layers": LAYERS,
        "heads": HEADS, "rope_axes_dim": [10, 10, 12], "code_dim": CODE_DIM, "visual_codes": VISUAL,
        "prologue_codes": PROLOGUE, "prologue_length": Z_LEN, "classes": CLASSES, "cond_dim": COND_DIM, "post": post,
    }, indent=2) + "\n")  # fmt: skip
    print(f"{tokenizer}: encoded {encoded.tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, type=Path, help="folder with the official models.py")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    from models import ARModel  # the official code

    torch.manual_seed(0)
    model = ARModel(official_config()).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    model.set_logit_mask(segment_mask())
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, args.out / "model.safetensors")

    generator = torch.Generator().manual_seed(1)
    length = Z_LEN + 1 + GRID * GRID
    prologue = torch.randint(VISUAL, VISUAL + PROLOGUE, (3, Z_LEN), generator=generator)
    visual = torch.randint(0, VISUAL, (3, GRID * GRID), generator=generator)
    idx = torch.cat([prologue, torch.full((3, 1), VISUAL + PROLOGUE), visual], dim=1)  # the EOS between
    labels = torch.tensor([1, 3, CLASSES - 1])  # two classes and the null one
    one_hot = torch.nn.functional.one_hot(labels, CLASSES).float()
    sample_labels = torch.nn.functional.one_hot(torch.tensor([0, 2]), CLASSES).float()
    with torch.no_grad():
        logits = model(idx, one_hot).logits
        plain = model.sampling(2, sample_labels, temperature=1.0, topK=1, cfg=0.0)
        guided = model.sampling(2, sample_labels, temperature=1.0, topK=1, cfg=2.0, cfg_schedule="constant")
    assert idx.shape[1] == length and logits.shape == (3, length, VISUAL + PROLOGUE + 1)
    save_file({"idx": idx, "labels": labels, "logits": logits.contiguous(), "ids_plain": plain, "ids_guided": guided},
              args.out / "reference.safetensors")  # fmt: skip
    (args.out / "config.json").write_text(json.dumps({
        "official_commit": "3b6db41", "dim": DIM, "layers": LAYERS, "heads": HEADS, "rope_axes_dim": AXES,
        "classes": CLASSES, "cond_dim": COND_DIM, "visual_codes": VISUAL, "prologue_codes": PROLOGUE,
        "prologue_length": Z_LEN, "grid": [GRID, GRID], "use_eos": True, "guided_scale": 2.0,
    }, indent=2) + "\n")  # fmt: skip
    print(f"{args.out}: {sum(p.numel() for p in model.parameters())} parameters; greedy ids {plain.tolist()}")
    tokenizer_reference(args.out)
    tokenizer_reference(args.out, post=True)


if __name__ == "__main__":
    main()
