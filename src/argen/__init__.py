"""argen: autoregressive image generation with PAR, CTF and Prologue decoding."""

__version__ = "0.1.0"


def load(path, device="cpu", tokenizer=None, ema=False, refiner=None):
    """A pipeline (tokenizer + AR transformer [+ CTF refiner]) from a checkpoint directory; see argen.pipeline."""
    from argen.pipeline import load as load_pipeline

    return load_pipeline(path, device=device, tokenizer=tokenizer, ema=ema, refiner=refiner)


__all__ = ["load", "__version__"]
