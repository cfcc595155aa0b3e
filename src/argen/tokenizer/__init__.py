"""The VQ image tokenizer (LlamaGen-compatible, VQ or lookup-free quantisation, optionally with a Prologue head),
its training losses."""

from argen.tokenizer.code_usage import QuantizerOutput
from argen.tokenizer.lfq import LookupFreeQuantizer
from argen.tokenizer.losses import (
    PatchDiscriminator,
    hinge_discriminator_loss,
    hinge_generator_loss,
    reconstruction_loss,
)
from argen.tokenizer.lpips import LPIPS, FeatureDistance, load_lpips
from argen.tokenizer.prologue import PrologueHead, PrologueOutput
from argen.tokenizer.vq import VectorQuantizer, VQModel

__all__ = [
    "FeatureDistance",
    "LPIPS",
    "LookupFreeQuantizer",
    "PatchDiscriminator",
    "PrologueHead",
    "PrologueOutput",
    "QuantizerOutput",
    "VQModel",
    "VectorQuantizer",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "reconstruction_loss",
    "load_lpips",
]
