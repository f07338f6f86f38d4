"""Encode images to attncomp streams and back, with CompressAI's range coder writing the bits."""

from __future__ import annotations

import os

import torch
from compressai.entropy_models import EntropyModel
from PIL import Image

from .. import image as imageio
from ..catalog import DEFAULT_PRECISION
from ..errors import StreamError, WeightsError
from ..files import read_bytes
from ..models import CodingModel, zoo
from .container import DEFAULT_TILE, MAX_CONTEXT, MAX_TILE, Stream, pack, unpack
from .refine import check_refinable, refine_latents
from .tiles import LatentBands, coded_tiles, latent_size, synthesis_window, tile_context

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


def check_tile_size(tile_size: int, model: CodingModel) -> None:
    factor = model.downsampling_factor
    if tile_size < factor or tile_size % factor or tile_size > MAX_TILE:
        raise ValueError(f"tile size must be a multiple of {factor} up to {MAX_TILE}")


@torch.inference_mode()
def encode(
    source, model=None, tile_size: int = DEFAULT_TILE, refine_steps: int = 0,
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS, context: int | None = None,
) -> bytes:
    """Compress an image (path, bytes, PIL image or uint8 array) into an attncomp stream.

    ``refine_steps`` > 0 optimises each tile's latents for that many steps
    (:mod:`attncomp.codec.refine`): slower encoding, fewer bits for the same
    quality, a stream any attncomp decoder reads. ``context``: latents each
    tile reads across its borders (:mod:`attncomp.codec.tiles`; default: all
    the model's transforms reach, 0 for tiles that code alone).
    """
    model = _checked(model if model is not None else zoo.load())
    context = coding_context(model, tile_size, refine_steps, context)
    img = imageio.open_image(source, max_pixels)
    coded = []
    for (_, _, h, w), tile, core in coded_tiles(img, model, tile_size, context):
        if refine_steps:
            coded.append(model.compress_latents(refine_latents(model, tile, (h, w), refine_steps, core=core)))
        else:
            coded.append(model.compress(tile, core))
    return packed(img, model, tile_size, context, coded)


def coding_context(model: CodingModel, tile_size: int, refine_steps: int, context: int | None) -> int:
    """The context an encoder gives each tile (``context``, or the model's own), once the settings are checked."""
    check_tile_size(tile_size, model)
    if refine_steps < 0:
        raise ValueError("refine steps must be 0 or more")
    if refine_steps:
        check_refinable(model)
    context = tile_context(model) if context is None else context
    if not 0 <= context <= MAX_CONTEXT:
        raise ValueError(f"context must be 0 to {MAX_CONTEXT} latents")
    if context and not model.latent_stride:
        raise ValueError(f"{model.name} codes its tiles alone: its context must be 0")
    return context


def packed(image: Image.Image, model: CodingModel, tile_size: int, context: int, coded: list[dict]) -> bytes:
    """The stream of ``image``'s tiles, each coded by ``model`` (its compress's strings and shape)."""
    stream = Stream(model.name, model.quality or 0, model.weights_hash, image.width, image.height, image.mode,
                    tile_size, context)  # fmt: skip
    stream.tiles = [(tuple(out["shape"]), [strings[0] for strings in out["strings"]]) for out in coded]
    return pack(stream)


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
def decode(
    data, model=None, max_pixels: int = imageio.DEFAULT_MAX_PIXELS, precision: str = DEFAULT_PRECISION
) -> Image.Image:
    """Decompress an attncomp stream (bytes, or the path of a stream file) into a PIL image (``L`` or ``RGB``).

    ``precision`` is how the image is synthesised from the latents, which are decoded exactly whatever it is
    (:data:`~attncomp.catalog.SYNTHESIS_PRECISIONS`): ``mixed`` computes a residual post-filter's
    correction in bf16 (thousandths of a dB, 0.85× the time), ``bf16`` all of the synthesis (hundredths
    of a dB, about 0.7×), ``float32`` none. Either bf16 form applies only where the device has fast bf16
    kernels (:func:`~attncomp.models.layers.bfloat16_is_fast`); elsewhere it would be slower, and float32 is used.
    """
    if isinstance(data, (str, os.PathLike)):
        data = read_bytes(data, StreamError)
    stream = unpack(data, max_pixels=max_pixels)
    model = model_for(stream, model)
    factor = model.downsampling_factor
    if stream.tile_size % factor:
        raise StreamError(f"stream tile size {stream.tile_size} is not a multiple of {factor}")
    if stream.context and not model.latent_stride:
        raise StreamError(f"stream's tiles read context across their borders, which {stream.model} does not code")
    precision = model.synthesis_precision(precision)
    mode = "L" if stream.mode == "L" or model.image_channels == 1 else "RGB"
    # 8-bit from the start: each tile is rounded as it is decoded, so no float image of the whole size exists
    canvas = Image.new(mode, (stream.width, stream.height))
    tiles = _tiles_with_context(stream, model, precision) if stream.context else _tiles_alone(stream, model, precision)
    for (top, left, h, w), x_hat in tiles:
        canvas.paste(imageio.to_image(x_hat[..., :h, :w], mode), (left, top))
    return canvas


def _coded_strings(stream: Stream, model: CodingModel):
    """(box, strings, shape) of each tile, checked against the image and the model."""
    factor, per_tile = model.downsampling_factor, _strings_per_tile(model)
    for box, (shape, strings) in zip(stream.tile_boxes(), stream.tiles):
        if len(strings) != per_tile:
            raise StreamError(f"stream has {len(strings)} coded strings per tile, {stream.model} writes {per_tile}")
        expected = (-(-box[2] // factor), -(-box[3] // factor))
        if tuple(shape) != expected:
            raise StreamError(f"tile latent shape {tuple(shape)} does not match the image ({expected})")
        # zero padding keeps the range decoder's look-ahead inside the buffer on hostile input
        yield box, [[s + _GUARD] for s in strings], shape


def _tiles_alone(stream: Stream, model: CodingModel, precision: str):
    """(box, image) of each tile, decoded on its own (streams without context)."""
    for box, strings, shape in _coded_strings(stream, model):
        yield box, model.decompress(strings, shape, precision)["x_hat"]


def _tiles_with_context(stream: Stream, model: CodingModel, precision: str):
    """(box, image) of each tile, synthesised with ``stream.context`` latents of its neighbours around it.

    Each tile's window of ŷ comes from :class:`~attncomp.codec.tiles.LatentBands`, which decodes the rows
    of tiles as the windows reach them and keeps only those that later windows read.
    """
    size = latent_size(model, (stream.height, stream.width))
    latents = LatentBands(_latent_bands(stream, model, size[1]))
    for box in stream.tile_boxes():
        window, keep, (dy, dx) = synthesis_window(box, stream.context, model.latent_stride, size)
        yield box, model.synthesize(latents.window(*window), precision, keep)[..., dy:, dx:]


def _latent_bands(stream: Stream, model: CodingModel, width: int):
    """Each row of tiles' ŷ, entropy-decoded tile by tile into one band ``width`` latents wide."""
    band, band_top, stride = None, None, model.latent_stride
    for (top, left, _, _), strings, shape in _coded_strings(stream, model):
        y_hat = model.decompress_latents(strings, shape)
        if top != band_top:
            if band is not None:
                yield band
            band, band_top = y_hat.new_zeros(*y_hat.shape[:-1], width), top
        band[..., left // stride : left // stride + y_hat.shape[-1]] = y_hat
    if band is not None:
        yield band
