"""Real bitstreams: ``encode`` an image to bytes, ``decode`` bytes to an image.

>>> from attncomp.codec import encode, decode
>>> data = encode("kodim23.png")        # bundled default model, quality 3
>>> image = decode(data)                 # the model is named inside the stream
>>> smaller = encode("kodim23.png", refine_steps=50)   # slower encoder, same decoder
>>> fits = encode_to_fit("kodim23.png", 10_000)   # the highest quality within 10,000 bytes

Each name is imported at its first use (PEP 562): the container alone needs no
torch, so ``attncomp-codec info`` and the CLI's checks of a stream run without it.
"""

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "DEFAULT_TILE": ".container",
    "check_tile_size": ".codec",
    "coded_tiles": ".tiles",
    "decode": ".codec",
    "encode": ".codec",
    "encode_to_fit": ".rate_control",
    "model_for": ".codec",
    "FORMAT_VERSION": ".container",
    "Stream": ".container",
    "pack": ".container",
    "tile_boxes": ".container",
    "unpack": ".container",
}
__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from .codec import check_tile_size, decode, encode, model_for
    from .rate_control import encode_to_fit
    from .container import DEFAULT_TILE, FORMAT_VERSION, Stream, pack, tile_boxes, unpack
    from .tiles import coded_tiles


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
