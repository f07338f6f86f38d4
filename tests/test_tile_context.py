"""Tiles with context: each codes the latents the whole image would have, and tiles join without seams."""

import numpy as np
import pytest
import torch

from attncomp import image as imageio
from attncomp.codec import decode, encode, pack, unpack
from attncomp.codec.tiles import CONTEXT, coded_tiles
from attncomp.errors import StreamError
from attncomp.models import CodingModel, create

from .helpers import TINY, smooth_image

TILE = 64
HEIGHT, WIDTH = 100, 150  # 2×3 tiles, the last row and column partial


@pytest.fixture(scope="module")
def without_attention():
    """Without channel attention, whose global pooling sees only a tile's window, tiles equal the whole image."""
    torch.manual_seed(0)
    return CodingModel.from_network(create("attn-hyperprior", **TINY, attention="none"), "attn-hyperprior")


@torch.no_grad()
def test_each_tile_codes_the_latents_of_the_whole_image(without_attention):
    model = without_attention
    image = imageio.open_image(smooth_image(HEIGHT, WIDTH))
    whole, _ = model.analysis(imageio.pad_to_multiple(imageio.to_tensor(image), model.downsampling_factor))
    stride = model.latent_stride
    for (top, left, _, _), tile, core in coded_tiles(image, model, TILE, CONTEXT):
        y, _ = model.analysis(tile, core)
        rows, cols = y.shape[-2:]
        expected = whole[..., top // stride : top // stride + rows, left // stride : left // stride + cols]
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_tiles_join_as_the_whole_latent_decodes(without_attention):
    model = without_attention
    data = encode(smooth_image(HEIGHT, WIDTH), model, tile_size=TILE)
    stream = unpack(data)
    assert stream.context == CONTEXT
    latents = torch.zeros(1, model.network.M, 128 // 16, 192 // 16)  # the image padded to 64, in latents
    for (top, left, _, _), (shape, strings) in zip(stream.tile_boxes(), stream.tiles):
        y_hat = model.decompress_latents([[s] for s in strings], shape)
        latents[..., top // 16 : top // 16 + y_hat.shape[-2], left // 16 : left // 16 + y_hat.shape[-1]] = y_hat
    whole = np.asarray(imageio.to_image(model.synthesize(latents)[..., :HEIGHT, :WIDTH], "RGB"), np.int16)
    tiled = np.asarray(decode(data, model), np.int16)
    assert np.abs(tiled - whole).max() <= 1  # float summation order only


def test_tiles_coded_alone_are_as_many_and_decode_to_another_image(without_attention):
    image = smooth_image(HEIGHT, WIDTH)
    with_context = unpack(encode(image, without_attention, tile_size=TILE))
    alone = unpack(encode(image, without_attention, tile_size=TILE, context=0))
    assert alone.context == 0 and len(alone.tiles) == len(with_context.tiles)
    assert decode(pack(alone), without_attention).tobytes() != decode(pack(with_context), without_attention).tobytes()


def test_a_model_that_codes_tiles_alone_refuses_a_stream_with_context():
    torch.manual_seed(0)
    model = CodingModel.from_network(create("spatial-ae"), "spatial-ae")
    stream = unpack(encode(smooth_image(64, 64, 1), model, tile_size=TILE))
    assert stream.context == 0
    stream.context = CONTEXT
    with pytest.raises(StreamError, match="across their borders, which spatial-ae does not code"):
        decode(pack(stream), model)
