"""Encode images to attncomp streams and back, with CompressAI's range coder writing the bits."""

from __future__ import annotations

import os

import torch
from compressai.entropy_models import EntropyModel
from PIL import Image

from .. import image as imageio
from ..errors import StreamError, WeightsError
from ..files import read_bytes
from ..models import CodingModel, zoo
from ..models.layers import bfloat16_is_fast
from .container import DEFAULT_TILE, Stream, pack, tile_boxes, unpack
from .refine import refine_latents

_GUARD = bytes(16)
_PASS_WEIGHTS = "pass the weights file it was encoded with (--weights)"


def _strings_per_tile(model: CodingModel) -> int:
    """One range-coded string per entropy model: 2 for the hyperprior (y, z), 1 for the autoencoder."""
    return sum(isinstance(module, EntropyModel) for module in model.network.modules())


def _checked(model) -> CodingModel:
    if not isinstance(model, CodingModel):
        raise WeightsError(
            "encode and decode take a CodingModel: attncomp.models.load(), load_weights() or CodingModel.from_network()"
        )
    return model


@torch.inference_mode()
def encode(
    source, model=None, tile_size: int = DEFAULT_TILE, refine_steps: int = 0,
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS,
) -> bytes:
    """Compress an image (path, bytes, PIL image or uint8 array) into an attncomp stream.

    ``refine_steps`` > 0 optimises each tile's latents for that many steps
    (:mod:`attncomp.codec.refine`): slower encoding, fewer bits for the same
    quality, a stream any attncomp decoder reads.
    """
    model = _checked(model if model is not None else zoo.load())
    factor = model.downsampling_factor
    if tile_size < factor or tile_size % factor or tile_size > 65535:
        raise ValueError(f"tile size must be a multiple of {factor} below 65536")
    if refine_steps < 0:
        raise ValueError("refine steps must be 0 or more")
    if refine_steps and not model.supports_refinement:
        raise WeightsError(f"{model.name} does not support encoder-side refinement (--refine)")
    img = imageio.open_image(source, max_pixels)
    stream = Stream(model.name, model.quality or 0, model.weights_hash, img.width, img.height, img.mode, tile_size)
    for (_, _, h, w), tile in coded_tiles(img, model, tile_size):
        if refine_steps:
            out = model.compress_latents(refine_latents(model, tile, (h, w), refine_steps))
        else:
            out = model.compress(tile)
        stream.tiles.append((tuple(out["shape"]), [strings[0] for strings in out["strings"]]))
    return pack(stream)


def coded_tiles(image: Image.Image, model: CodingModel, tile_size: int = DEFAULT_TILE):
    """(box, tile) for each tile of an ``L``/``RGB`` image as the codec codes it: float32, padded to the
    model's downsampling factor, on the model's device. The image stays 8-bit: one tile at a time is float."""
    for box in tile_boxes(image.height, image.width, tile_size):
        tile = imageio.tile_to_tensor(image, box, model.image_channels)
        yield box, imageio.pad_to_multiple(tile, model.downsampling_factor).to(model.device)


def model_for(stream: Stream, model=None):
    """The model that wrote ``stream``: ``model`` if given (checked), else the bundled one."""
    hint = ""
    if model is None:  # a user's weights file records a quality too: every failure here says to pass it
        hint = f"; {_PASS_WEIGHTS}"
        if stream.quality == 0:
            raise WeightsError(f"stream was written with a custom weights file (hash {stream.weights_hash.hex()}){hint}")
        try:
            model = zoo.load(stream.model, stream.quality)
        except WeightsError as exc:
            raise WeightsError(f"{exc}; if the stream came from your own weights file, {_PASS_WEIGHTS}") from None
    model = _checked(model)
    if model.name != stream.model or model.weights_hash != stream.weights_hash:
        raise WeightsError(
            f"stream was written by {stream.model} with weights {stream.weights_hash.hex()}, "
            f"not by {model.name} with weights {model.weights_hash.hex()}{hint}"
        )
    if model.variable_rate:
        return model.at(stream.quality)
    return model


@torch.inference_mode()
def decode(data, model=None, max_pixels: int = imageio.DEFAULT_MAX_PIXELS, bf16: bool = False) -> Image.Image:
    """Decompress an attncomp stream (bytes, or the path of a stream file) into a PIL image (``L`` or ``RGB``).

    ``bf16`` synthesises the image (g_s and post-filter) under bf16 autocast where the device has fast
    bf16 kernels (:func:`~attncomp.models.layers.bfloat16_is_fast`; elsewhere it would be slower, and
    float32 is used): faster, a few hundredths of a dB lower PSNR. The latents are decoded exactly either way.
    """
    if isinstance(data, (str, os.PathLike)):
        data = read_bytes(data, StreamError)
    stream = unpack(data, max_pixels=max_pixels)
    model = model_for(stream, model)
    factor = model.downsampling_factor
    if stream.tile_size % factor:
        raise StreamError(f"stream tile size {stream.tile_size} is not a multiple of {factor}")
    channels = model.image_channels
    per_tile = _strings_per_tile(model)
    bf16 = bf16 and bfloat16_is_fast(model.device)
    mode = "L" if stream.mode == "L" or channels == 1 else "RGB"
    # 8-bit from the start: each tile is rounded as it is decoded, so no float image of the whole size exists
    canvas = Image.new(mode, (stream.width, stream.height))
    for (top, left, h, w), (shape, strings) in zip(stream.tile_boxes(), stream.tiles):
        if len(strings) != per_tile:
            raise StreamError(f"stream has {len(strings)} coded strings per tile, {stream.model} writes {per_tile}")
        expected = (-(-h // factor), -(-w // factor))
        if tuple(shape) != expected:
            raise StreamError(f"tile latent shape {tuple(shape)} does not match the image ({expected})")
        # zero padding keeps the range decoder's look-ahead inside the buffer on hostile input
        x_hat = model.decompress([[s + _GUARD] for s in strings], shape, bf16)["x_hat"]
        canvas.paste(imageio.to_image(x_hat[..., :h, :w], mode), (left, top))
    return canvas
