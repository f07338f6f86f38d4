"""Bounded memory: the codec converts one tile at a time, and codes exactly as the whole-image path did."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode

from attncomp import image as imageio
from attncomp.codec import decode, encode, tile_boxes, unpack
from attncomp.codec.tiles import CONTEXT, LatentBands, latent_size, synthesis_window
from attncomp.models import load_weights

from .helpers import smooth_image

TILE = 64
HEIGHT, WIDTH = 100, 150  # 2×3 tiles, the last row and column partial (padded before coding)


@pytest.fixture(scope="module", params=["scale prior", "variable-rate mean-scale"])
def model(request, tiny_weights):
    if request.param == "scale prior":
        return load_weights(tiny_weights)
    return load_weights(Path(__file__).parent / "data" / "tiny_vbr.pt").at(3.5)  # as the default model


def whole_image_tiles(image: np.ndarray, model):
    """What the encoder codes, cut from one float32 tensor of the whole (padded) image: each tile with the
    context around it that the padded image holds."""
    factor, margin = model.downsampling_factor, CONTEXT * model.latent_stride
    x = imageio.pad_to_multiple(imageio.to_tensor(imageio.open_image(image), 3), factor)
    tiles = []
    for top, left, h, w in tile_boxes(*image.shape[:2], TILE):
        bottom, right = top + -(-h // factor) * factor, left + -(-w // factor) * factor
        t0, l0 = max(top - margin, 0), max(left - margin, 0)
        region = x[..., t0 : bottom + margin, l0 : right + margin]
        core = tuple(slice((a - a0) // model.latent_stride, (b - a0) // model.latent_stride)
                     for a, b, a0 in ((top, bottom, t0), (left, right, l0)))  # fmt: skip
        out = model.compress_latents(model.analysis(region, core))
        tiles.append((tuple(out["shape"]), [strings[0] for strings in out["strings"]]))
    return tiles


def whole_canvas_decode(data: bytes, model) -> Image.Image:
    """A float32 canvas of the whole image, rounded to 8 bits at the end, from each tile's window of ŷ."""
    stream = unpack(data)
    latents = None
    for (top, left, _, _), (shape, strings) in zip(stream.tile_boxes(), stream.tiles):
        y_hat = model.decompress_latents([[s + bytes(16)] for s in strings], shape)
        if latents is None:
            latents = y_hat.new_zeros(*y_hat.shape[:-2], *latent_size(model, (stream.height, stream.width)))
        latents[..., top // 16 : top // 16 + y_hat.shape[-2], left // 16 : left // 16 + y_hat.shape[-1]] = y_hat
    canvas = torch.empty(1, 3, stream.height, stream.width)
    for top, left, h, w in stream.tile_boxes():
        (rows, cols), keep, (dy, dx) = synthesis_window((top, left, h, w), stream.context, 16, latents.shape[-2:])
        x_hat = model.synthesize(latents[..., rows, cols], keep=keep)
        canvas[..., top : top + h, left : left + w] = x_hat[..., dy : dy + h, dx : dx + w]
    return imageio.to_image(canvas, stream.mode)


@pytest.mark.parametrize("channels", [3, 1])
def test_tiles_code_and_decode_exactly_as_the_whole_image_did(model, channels):
    image = smooth_image(HEIGHT, WIDTH, channels)
    data = encode(image, model, tile_size=TILE)
    assert unpack(data).tiles == whole_image_tiles(image, model)
    decoded = decode(data, model)
    expected = whole_canvas_decode(data, model)
    assert (decoded.mode, decoded.size) == (expected.mode, expected.size)
    assert decoded.size == (WIDTH, HEIGHT) and decoded.mode == ("L" if channels == 1 else "RGB")
    assert decoded.tobytes() == expected.tobytes()


class LargestImageTensor(TorchFunctionMode):
    """Records the largest height or width of any image-like tensor (3 dims or more: C×H×W, H×W×C,
    N×C×H×W) that a torch function or tensor method returns while active."""

    def __init__(self):
        super().__init__()
        self.side = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor) and value.dim() >= 3:
                self.side = max(self.side, *value.shape[-2:])
        return out


def test_no_tensor_spans_more_than_a_tile_and_its_context(model):
    """Memory grows with the tile, not the image: no float copy of the image, no float canvas.

    Every image-shaped tensor (the input tile, the activations, the decoded tile) fits in
    one tile and the context around it (2 latents of 16 px either side); a float image or
    canvas of the whole 128×256 would be 256 wide. Decoding, g_s computes the tile and only
    the few rows and columns around it that its later layers read.
    """
    with LargestImageTensor() as encoding:
        data = encode(smooth_image(128, 256), model, tile_size=TILE)
    with LargestImageTensor() as decoding:
        assert decode(data, model).size == (256, 128)
    assert encoding.side == TILE + 2 * CONTEXT * 16  # a middle tile and the context g_a reads
    assert TILE < decoding.side < TILE + 16


def test_decoding_holds_the_latents_of_three_rows_of_tiles_at_most(model, monkeypatch):
    """ŷ is never held for the whole image: a row of tiles reads 2 latents of the rows above and below it."""
    held, window = [], LatentBands.window

    def recording_window(self, rows, cols):
        latents = window(self, rows, cols)
        held.append(self.held_rows)  # its peak: bands are dropped before more are decoded
        return latents

    monkeypatch.setattr(LatentBands, "window", recording_window)
    decoded = decode(encode(smooth_image(7 * TILE, TILE), model, tile_size=TILE), model)  # 28 latent rows
    assert decoded.size == (TILE, 7 * TILE)
    assert held == [8, 12, 12, 12, 12, 12, 8]  # 4 latent rows per row of tiles


def test_a_tile_converts_like_the_same_crop_of_the_whole_image():
    box = (64, 128, 50, 70)  # top, left, height, width
    top, left, h, w = box
    for array, channels in ((smooth_image(150, 200), 3), (smooth_image(150, 200), 1), (smooth_image(150, 200, 1), 3)):
        image = imageio.open_image(array)
        whole = imageio.to_tensor(image, channels)[..., top : top + h, left : left + w]
        assert torch.equal(imageio.tile_to_tensor(image, box, channels), whole)


def test_sixteen_bit_samples_reduce_as_before():
    """The in-place int32 reduction equals round(v / 257) clipped, as the int64 one computed it."""
    values = np.array([[0, 1, 128, 129, 385, 386, 32767, 65407, 65408, 65535]], dtype=np.uint16)
    reduced = np.asarray(imageio.normalise_mode(Image.fromarray(values)))
    expected = np.clip((values.astype(np.int64) + 128) // 257, 0, 255)
    assert np.array_equal(reduced, expected)
    wide = np.array([[-5, 0, 255, 300, 70000, 2**31 - 1]], dtype=np.int32)  # mode I: scaled as 16-bit, clipped
    assert np.asarray(imageio.normalise_mode(Image.fromarray(wide))).tolist() == [[0, 0, 1, 1, 255, 255]]
    small = np.array([[0, 7, 255]], dtype=np.int32)  # mode I within 0…255: kept as is
    assert np.asarray(imageio.normalise_mode(Image.fromarray(small))).tolist() == [[0, 7, 255]]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_exif_orientation_is_applied_from_any_format_and_the_image_stays_usable(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    Image.fromarray(smooth_image(40, 60)).save(buffer, format=fmt, exif=exif)
    image = imageio.open_image(buffer.getvalue())
    assert (image.size, image.mode) == ((40, 60), "RGB")
    assert image.getexif().get(0x0112, 1) == 1
    image.crop((0, 0, 8, 8)).load()  # still usable once its compressed bytes are released
