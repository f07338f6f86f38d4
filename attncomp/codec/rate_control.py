"""Encoding to a byte budget: the highest quality of a variable-rate model whose stream fits.

What ``cwebp -size`` does for WebP. A variable-rate model codes every quality in hundredths
(:data:`~attncomp.catalog.QUALITY_STEPS`), and its streams grow with the quality, so a
bisection over those hundredths finds the quality in at most 12 trials. Its analysis
transforms (g_a, h_a) do not depend on the quality (the gains act on the latents they
output), so they run once per tile, and a trial only entropy-codes those latents again.
"""

from __future__ import annotations

import torch

from .. import image as imageio
from ..catalog import QUALITY_STEPS, quality_steps
from ..errors import AttncompError, WeightsError
from ..models import CodingModel, zoo
from .codec import coding_context, encode, packed
from .container import DEFAULT_TILE
from .tiles import coded_tiles


@torch.inference_mode()
def encode_to_fit(
    source, max_bytes: int, model: CodingModel | None = None, tile_size: int = DEFAULT_TILE, refine_steps: int = 0,
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS, context: int | None = None,
) -> bytes:
    """The stream of ``source`` at the highest quality of ``model`` (default: the zoo's default, a variable-rate
    model) whose stream is at most ``max_bytes`` long; the other arguments are :func:`~attncomp.codec.encode`'s.

    Streams grow with the quality, though not strictly at every hundredth of every image: where they do not,
    the quality found fits but a higher one might too. The search holds every tile's latents (1/256 of the
    pixels × M channels, float32: 144 MB at 48 megapixels with M = 192). With ``refine_steps``, the quality
    the search finds is refined once: the refined stream if it fits, else the plain one (refining every
    trial would cost a dozen refinements). Raises :class:`~attncomp.errors.AttncompError` when even the
    lowest quality does not fit.
    """
    model = model if model is not None else zoo.load()
    if not model.variable_rate:
        raise WeightsError(f"a byte budget needs a variable-rate model: {model.name} codes at one quality")
    if max_bytes < 1:
        raise ValueError("the byte budget must be at least 1")
    low, high = (quality_steps(q) for q in model.network.qualities)
    context = coding_context(model.at(low / QUALITY_STEPS), tile_size, refine_steps, context)  # refinement needs a λ
    image = imageio.open_image(source, max_pixels)
    latents = [model.analysis(tile, core) for _, tile, core in coded_tiles(image, model, tile_size, context)]

    def stream_at(steps: int) -> bytes:
        at = model.at(steps / QUALITY_STEPS)
        return packed(image, at, tile_size, context, [at.compress_latents(tile) for tile in latents])

    fitting = stream_at(low)
    if len(fitting) > max_bytes:
        raise AttncompError(
            f"even quality {low / QUALITY_STEPS:g}, the lowest, needs {len(fitting)} bytes, more than {max_bytes}"
        )
    largest = stream_at(high)
    if len(largest) <= max_bytes:
        low, fitting = high, largest
    while high - low > 1:  # the stream at ``low`` fits, the one at ``high`` does not
        middle = (low + high) // 2
        stream = stream_at(middle)
        if len(stream) <= max_bytes:
            low, fitting = middle, stream
        else:
            high = middle
    if refine_steps:
        refined = encode(image, model.at(low / QUALITY_STEPS), tile_size, refine_steps, max_pixels, context)
        return refined if len(refined) <= max_bytes else fitting
    return fitting
