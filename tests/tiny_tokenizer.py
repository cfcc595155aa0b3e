"""The tiny VQ tokenizer the end-to-end tests train on synthetic 16x16 images: 32 codes of 4 dimensions, 4x4
tokens, a few seconds of training."""

TINY_TOKENIZER = [
    "data.name=synthetic",
    "data.image_size=16",
    "model.image_size=16",
    "model.ch=32",
    "model.ch_mult=[1,2]",
    "model.num_res_blocks=1",
    "model.z_channels=16",
    "model.codebook_size=32",
    "model.codebook_dim=4",
    "train.batch_size=16",
]


def tiny_tokenizer(images: int = 64, steps: int = 2) -> list[str]:
    """`argen tokenizer train` overrides for the tiny tokenizer on `images` synthetic images for `steps` steps."""
    return [*TINY_TOKENIZER, f"data.limit={images}", f"train.steps={steps}"]
