"""How the codec cuts an image into tiles, and the context each tile reads across its borders.

Tiles bound memory: one tile at a time is float32 and goes through a transform. Coded
alone, each tile's transforms see zero padding at its borders, and the borders cost
bits (about 1% on Kodak with 512-px tiles, more on large photos) and show as seams at
low rates. With ``context`` c > 0, a tile's analysis reads c latents' worth of the
image around it and codes only its own latents (its ``core``), and a tile's synthesis
reads c latents of its neighbours' ŷ: tiles then join as one image would. c = 2 (32 px
for the hyperprior) is all that g_a reaches (four 5×5 stride-2 convolutions: 30 px) and
all that g_s and the post-filter reach (five-tap transposed convolutions, three 3×3
convolutions), so tiles code and synthesise as the whole image would wherever the
transforms have no global step (the channel attention's pooling has one).
Entropy coding stays per tile, exact and unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from PIL import Image

from .. import image as imageio
from ..errors import StreamError
from ..models import CodingModel
from ..models.hyperprior import Core
from ..models.layers import HALO
from .container import DEFAULT_TILE, tile_boxes

CONTEXT = 2
"""Latents of context an encoder gives each tile, for a model that codes tiles with context."""

def tile_context(model: CodingModel) -> int:
    """The context this codec writes for ``model``: :data:`CONTEXT`, or 0 for a model whose tiles code alone."""
    return CONTEXT if model.latent_stride else 0


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def coded_tiles(image: Image.Image, model: CodingModel, tile_size: int = DEFAULT_TILE, context: int = 0):
    """(box, tile, core) for each tile of an ``L``/``RGB`` image as the codec codes it, on the model's device.

    A tile is float32, padded (replicating the last row and column) to the model's downsampling
    factor. With ``context``, it also holds up to ``context`` latents of the image around it, as far
    as the padded image reaches, and ``core`` (latent rows, columns) names its own latents; without,
    ``core`` is None. The image stays 8-bit: one tile at a time is float.
    """
    factor, channels = model.downsampling_factor, model.image_channels
    margin = context * model.latent_stride
    height, width = _ceil_to(image.height, factor), _ceil_to(image.width, factor)
    for box in tile_boxes(image.height, image.width, tile_size):
        if not margin:
            tile = imageio.pad_to_multiple(imageio.tile_to_tensor(image, box, channels), factor)
            yield box, tile.to(model.device), None
            continue
        top, left, h, w = box
        bottom, right = top + _ceil_to(h, factor), left + _ceil_to(w, factor)
        t0, l0 = max(top - margin, 0), max(left - margin, 0)
        t1, l1 = min(bottom + margin, height), min(right + margin, width)
        inside = (t0, l0, min(t1, image.height) - t0, min(l1, image.width) - l0)
        tile = imageio.tile_to_tensor(image, inside, channels)
        tile = F.pad(tile, (0, l1 - l0 - tile.shape[-1], 0, t1 - t0 - tile.shape[-2]), mode="replicate")
        stride = model.latent_stride
        core = (slice((top - t0) // stride, (bottom - t0) // stride), slice((left - l0) // stride, (right - l0) // stride))
        yield box, tile.to(model.device), core


def synthesis_window(box, context: int, stride: int, latent_size: tuple[int, int]) -> tuple[Core, Core, tuple]:
    """Where a tile's synthesis reads and writes: (the latents it reads, its own and up to ``context`` of its
    neighbours' on each side within ``latent_size``; the pixels of g_s's output over them that the post-filter
    needs, the tile's and :data:`HALO` around them; where the tile starts in the post-filter's output).

    g_s reads the context but computes, at each resolution, only what the tile's pixels and the
    post-filter's halo depend on (:class:`~attncomp.models.transforms.SynthesisTransform`); the
    post-filter, three 3×3 convolutions, filters the tile and its halo.
    """
    top, left, h, w = box
    first_row, first_col = max(top // stride - context, 0), max(left // stride - context, 0)
    last_row = min(-(-(top + h) // stride) + context, latent_size[0])
    last_col = min(-(-(left + w) // stride) + context, latent_size[1])
    window = (slice(first_row, last_row), slice(first_col, last_col))
    dy, dx = top - first_row * stride, left - first_col * stride  # the tile in g_s's output
    keep = (slice(max(dy - HALO, 0), dy + h + HALO), slice(max(dx - HALO, 0), dx + w + HALO))
    return window, keep, (dy - keep[0].start, dx - keep[1].start)


def latent_size(model: CodingModel, image_size: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of the ŷ of a whole image of ``image_size`` (height, width), padded as its tiles are coded."""
    return tuple(_ceil_to(side, model.downsampling_factor) // model.latent_stride for side in image_size)


class LatentBands:
    """The ŷ a decoder is synthesising from, one band per row of tiles, never the whole image's.

    ``bands`` yields each tile row's ŷ, top to bottom, at the image's latent width. A band is decoded
    when a window first reads it and dropped once a window starts below it: windows come in the
    tiles' row-major order, and one reads ``context`` latents of the rows above and below, so with
    the codec's context and tiles three bands are held at most (37 MB for 48 megapixels at M = 192,
    where a latent canvas of the whole image would take 144 MB).
    """

    def __init__(self, bands: Iterator[torch.Tensor]):
        self._bands = bands
        self._held: list[tuple[int, torch.Tensor]] = []  # (first latent row, band)
        self._decoded = 0  # latent rows decoded so far
        self._start = 0  # the first latent row the last window read

    @property
    def held_rows(self) -> int:
        """Latent rows held now (what :meth:`window` bounds)."""
        return sum(band.shape[-2] for _, band in self._held)

    def window(self, rows: slice, cols: slice) -> torch.Tensor:
        """ŷ[..., rows, cols] of the whole image; ``rows`` must not start above an earlier window's."""
        assert rows.start >= self._start, "windows must come in the tiles' row-major order"
        self._start = rows.start
        # drop what no later window reads before decoding more: at most the bands this window needs are held
        self._held = [(first, band) for first, band in self._held if first + band.shape[-2] > rows.start]
        while self._decoded < rows.stop:
            band = next(self._bands, None)
            if band is None:
                raise StreamError(f"stream's tiles end at latent row {self._decoded}, its image needs {rows.stop}")
            self._held.append((self._decoded, band))
            self._decoded += band.shape[-2]
        parts = [band[..., max(rows.start - first, 0) : rows.stop - first, cols]
                 for first, band in self._held if first < rows.stop]  # fmt: skip
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)
