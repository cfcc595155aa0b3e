"""The VQ image tokenizer (LlamaGen-compatible, optionally with a Prologue head), its training losses."""

from argen.tokenizer.losses import (PatchDiscriminator, PerceptualLoss, hinge_discriminator_loss,
                                    hinge_generator_loss, reconstruction_loss)
from argen.tokenizer.prologue import PrologueHead, PrologueOutput
from argen.tokenizer.vq import (QuantizerOutput, VectorQuantizer, VQModel, convert_llamagen_vq, load_llamagen_vq,
                                read_llamagen_vq, validate_vq_config, vq_config_from_state)

__all__ = [
    "PatchDiscriminator", "PerceptualLoss", "PrologueHead", "PrologueOutput", "QuantizerOutput", "VQModel",
    "VectorQuantizer", "convert_llamagen_vq",
    "hinge_discriminator_loss", "hinge_generator_loss", "load_llamagen_vq", "read_llamagen_vq",
    "reconstruction_loss", "validate_vq_config", "vq_config_from_state",
]
