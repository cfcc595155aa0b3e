"""The VQ image tokenizer (LlamaGen-compatible, optionally with a Prologue head), its training losses."""

from argen.tokenizer.losses import (PatchDiscriminator, hinge_discriminator_loss, hinge_generator_loss,
                                    reconstruction_loss)
from argen.tokenizer.lpips import LPIPS, FeatureDistance, load_lpips
from argen.tokenizer.prologue import PrologueHead, PrologueOutput
from argen.tokenizer.vq import QuantizerOutput, VectorQuantizer, VQModel, validate_vq_config

__all__ = [
    "FeatureDistance", "LPIPS", "PatchDiscriminator", "PrologueHead", "PrologueOutput", "QuantizerOutput", "VQModel",
    "VectorQuantizer", "hinge_discriminator_loss", "hinge_generator_loss", "reconstruction_loss",
    "load_lpips", "validate_vq_config",
]
