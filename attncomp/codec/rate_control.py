"""Encoding to a byte budget: the highest quality of a variable-rate model whose stream fits.

What ``cwebp -size`` does for WebP. A variable-rate model codes every quality in hundredths
(:data:`~attncomp.catalog.QUALITY_STEPS`), and its streams grow with the quality, so a
bisection over those hundredths finds the quality in at most 12 encodes of the image.
"""

from __future__ import annotations

from .. import image as imageio
from ..catalog import QUALITY_STEPS, quality_steps
from ..errors import AttncompError, WeightsError
from ..models import CodingModel, zoo
from .codec import encode


def encode_to_fit(source, max_bytes: int, model: CodingModel | None = None, refine_steps: int = 0, **options) -> bytes:
    """The stream of ``source`` at the highest quality of ``model`` (default: the zoo's default, a variable-rate
    model) whose stream is at most ``max_bytes`` long.

    ``options`` go to each :func:`~attncomp.codec.encode` (tile size, pixel limit). Streams grow with the
    quality, though not strictly at every hundredth of every image: where they do not, the quality found
    fits but a higher one might too. With ``refine_steps``, the search encodes plainly and the quality it
    finds is refined once: the refined stream if it fits, else the plain one (refining every trial would
    cost a dozen refinements). Raises :class:`~attncomp.errors.AttncompError` when even the lowest quality
    does not fit.
    """
    model = model if model is not None else zoo.load()
    if not model.variable_rate:
        raise WeightsError(f"a byte budget needs a variable-rate model: {model.name} codes at one quality")
    if max_bytes < 1:
        raise ValueError("the byte budget must be at least 1")
    image = imageio.open_image(source, options.get("max_pixels", imageio.DEFAULT_MAX_PIXELS))  # read once

    def stream_at(steps: int, refine: int = 0) -> bytes:
        return encode(image, model.at(steps / QUALITY_STEPS), refine_steps=refine, **options)

    low, high = (quality_steps(q) for q in model.network.qualities)
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
        refined = stream_at(low, refine_steps)
        return refined if len(refined) <= max_bytes else fitting
    return fitting
