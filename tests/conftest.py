import os

import pytest
import torch

# Deterministic, quiet, and fair to a shared 2-core machine.
torch.set_num_threads(1)
os.environ.setdefault("ARGEN_NO_PROGRESS", "1")


@pytest.fixture
def digits_dataset():
    from argen.config import DataConfig
    from argen.data import load_dataset

    return load_dataset(DataConfig(name="digits", image_size=8, channels=1))
