"""Real bitstreams: ``encode`` an image to bytes, ``decode`` bytes to an image.

>>> from attncomp.codec import encode, decode
>>> data = encode("kodim23.png")        # bundled default model, quality 3
>>> image = decode(data)                 # the model is named inside the stream
>>> smaller = encode("kodim23.png", refine_steps=50)   # slower encoder, same decoder
"""

from .codec import DEFAULT_TILE, decode, encode, model_for
from .container import FORMAT_VERSION, Stream, pack, tile_boxes, unpack
from .refine import supports_refinement

__all__ = ["DEFAULT_TILE", "FORMAT_VERSION", "Stream", "decode", "encode", "model_for", "pack", "supports_refinement", "tile_boxes", "unpack"]
