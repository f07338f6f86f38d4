"""Shared fixtures: tiny models and generated images, so no test needs ../shared."""

from __future__ import annotations

import os

# Tests run tiny tensors, where a second OpenMP thread buys nothing; on a loaded 2-core machine its spin-waits
# made a tiny model's training step 60× slower (3 s against 0.05 s beside a training run). One thread, for
# this process and for the CLIs and training runs the tests start. Thread-independence tests ask for more.
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

from attncomp.models import create, save_weights

from .helpers import TINY, smooth_image, spread_latents


# Property tests: a small profile for every run, a long one for `make fuzz` (--hypothesis-profile fuzz).
settings.register_profile("ci", max_examples=100)
settings.register_profile("fuzz", max_examples=20_000)
settings.load_profile("ci")
torch.set_num_threads(1)  # in case torch was imported before this file


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    model = spread_latents(create("attn-hyperprior", **TINY))
    model.eval()
    model.update(force=True)
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """An exported weights file of a tiny (untrained) attention hyperprior, the weights of ``tiny_model``."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    network = spread_latents(create("attn-hyperprior", **TINY))
    save_weights(network, path, "attn-hyperprior", quality=None, lmbda=0.01)
    return path


@pytest.fixture
def png(tmp_path):
    """Write a generated image and return its path."""

    def make(height=64, width=96, mode="RGB", name="image.png", **save_args):
        array = smooth_image(height, width, 1 if mode in ("L", "I;16") else 3)
        if mode == "RGBA":
            array = np.dstack([array, np.full(array.shape[:2], 200, np.uint8)])
        if mode == "I;16":
            image = Image.fromarray(array.astype(np.uint16) * 257)
        else:
            image = Image.fromarray(array)
        if mode == "P":
            image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        path = tmp_path / name
        image.save(path, **save_args)
        return path

    return make
