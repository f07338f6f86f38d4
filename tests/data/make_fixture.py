"""How the frozen stream fixture was made (run once; tests only read its outputs).

    .venv/bin/python -m tests.data.make_fixture

tiny.pt: a tiny untrained attention hyperprior (seed 0); tiny.atc: a 72×56 generated image
coded with it in two tiles; tiny_y.npy: the quantised latents of every tile, which every
future decoder must reproduce exactly; tiny.png: the decoded image (float synthesis, so a
decoder on other hardware may differ by a level or so).
"""

from pathlib import Path

import numpy as np
import torch

from attncomp.codec import decode, encode, unpack
from attncomp.models import load_weights
from attncomp.models.zoo import create, save_weights

from ..helpers import TINY, smooth_image

HERE = Path(__file__).parent


if __name__ == "__main__":
    torch.manual_seed(0)
    model = create("attn-hyperprior", **TINY)
    with torch.no_grad():  # untrained latents round to 0 and scales sit at the bound: spread them
        model.g_a[6].weight.mul_(40)
        model.h_a[4].weight.mul_(100)
        model.h_s[4].weight.mul_(20)
        model.h_s[4].bias.add_(1.5)
    save_weights(model, HERE / "tiny.pt", "attn-hyperprior", lmbda=0.01, half=True)
    model = load_weights(HERE / "tiny.pt")
    data = encode(smooth_image(72, 56), model, tile_size=64)
    (HERE / "tiny.atc").write_bytes(data)
    stream = unpack(data)
    with torch.inference_mode():
        latents = [model.decompress([[s] for s in strings], shape)["y_hat"].numpy() for shape, strings in stream.tiles]
    np.save(HERE / "tiny_y.npy", np.concatenate([y.reshape(-1) for y in latents]).astype(np.int16))
    decode(data, model).save(HERE / "tiny.png")
