"""The VQ image tokenizer (LlamaGen-compatible, optionally with a Prologue head), its training losses."""

from argen.tokenizer.losses import (PatchDiscriminator, PerceptualLoss, hinge_discriminator_loss,
                                    hinge_generator_loss, reconstruction_loss)
from argen.tokenizer.prologue import PrologueHead, PrologueOutput
from argen.tokenizer.vq import QuantizerOutput, VectorQuantizer, VQModel, validate_vq_config

__all__ = [
    "PatchDiscriminator", "PerceptualLoss", "PrologueHead", "PrologueOutput", "QuantizerOutput", "VQModel",
    "VectorQuantizer", "hinge_discriminator_loss", "hinge_generator_loss", "reconstruction_loss",
    "validate_vq_config",
]
