"""argen: autoregressive image generation with PAR, CTF and Prologue."""
__version__ = "0.1.0"
