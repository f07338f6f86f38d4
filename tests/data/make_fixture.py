"""How the frozen stream fixtures were made (run once per format; tests only read the outputs).

    .venv/bin/python -m tests.data.make_fixture

Format 1 (made by this script as of commit 41263e4, attncomp's first weights and stream format):
tiny.pt, a tiny untrained attention hyperprior (seed 0); tiny.atc, a 72×56 generated image coded
with it in two tiles; tiny_y.npy, the quantised latents of every tile, which every future decoder
must reproduce exactly; tiny.png, the decoded image (float synthesis: another machine may differ
by a level or so).

Format 2 (as of commit 916002c): the same files named tiny_vbr.*, for a tiny untrained variable-rate
model with residual attention, a residual post-filter and a mean-scale prior, coded at quality
3.25; tiny_vbr_y.npy holds its dequantised latents ŷ (means and gains included) in float32.

Format 3 (this script now: tiles with context): tiny_ctx.atc, tiny_ctx_y.npy and tiny_ctx.png,
the same image coded with tiny_vbr.pt at the same quality, its two tiles reading context across
their border.
"""

from pathlib import Path

import numpy as np
import torch

from attncomp.codec import decode, encode, unpack
from attncomp.models import load_weights
from attncomp.models.zoo import create, save_weights

from ..helpers import TINY, smooth_image, spread_latents

HERE = Path(__file__).parent
QUALITY = 3.25


def make_tiny_vbr_weights():
    """Format 2's weights, kept for format 3: the same model, so the two fixtures differ only in the stream."""
    torch.manual_seed(0)
    model = spread_latents(create("attn-hyperprior-vbr", **TINY))
    save_weights(model, HERE / "tiny_vbr.pt", "attn-hyperprior-vbr", half=True)


if __name__ == "__main__":
    if not (HERE / "tiny_vbr.pt").exists():
        make_tiny_vbr_weights()
    model = load_weights(HERE / "tiny_vbr.pt").at(QUALITY)
    data = encode(smooth_image(72, 56), model, tile_size=64)
    assert unpack(data).context > 0
    (HERE / "tiny_ctx.atc").write_bytes(data)
    stream = unpack(data)
    with torch.inference_mode():
        latents = [model.decompress_latents([[s] for s in strings], shape).numpy() for shape, strings in stream.tiles]
    np.save(HERE / "tiny_ctx_y.npy", np.concatenate([y.reshape(-1) for y in latents]).astype(np.float32))
    decode(data, model).save(HERE / "tiny_ctx.png")
