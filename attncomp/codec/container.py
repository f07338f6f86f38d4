"""The attncomp bitstream: a small self-describing container around the range-coded strings.

All integers are little-endian. Offsets are in bytes::

    field              size   notes
    magic              4      b"ATNC"
    version            1      FORMAT_VERSION; a decoder refuses any other
    name length n      1
    model name         n      zoo name: letters, digits, ".", "_", "-", e.g. "attn-hyperprior"
    quality            2      100·q: the quality q the stream was coded at (3.5 → 350), 0 for custom weights
    weights hash       8      first 8 bytes of SHA-256 of the state dict
    width, height      4, 4   pixels of the source image
    mode               1      0 = grayscale (L), 1 = RGB
    tile size          2      pixels per tile side (a multiple of the model's downsampling factor)
    context            1      latent rows and columns of neighbouring tiles the synthesis reads (0: tiles
                              decode independently); version 3 on
    strings per tile k 1      2 for the hyperprior (y, z), 1 for the autoencoder
    tiles, row-major:
      latent h, w      2, 2   shape of the entropy model's smallest latent
      k × (length 4 + bytes)
    crc32              4      over every byte before it

The CRC is checked before anything is parsed, so a corrupted or truncated
stream is rejected with a clear error, never decoded into a wrong image.

Version 1 stored the quality in one byte as a whole number (fixed-rate models
only); versions 1 and 2 have no context byte (their tiles decode independently).
Both are still read.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

from ..catalog import QUALITY_STEPS, quality_steps
from ..errors import StreamError

# Pixels a side of the tiles an encoder cuts by default. Memory is a tile's activations plus the 8-bit image,
# so 512 bounds the peak lower than 1024 does, for tile borders that cost more bits on large photos (the trade
# is measured in the README, "Memory"). Any multiple of the model's downsampling factor up to MAX_TILE is valid.
DEFAULT_TILE = 512
# A decoder holds one tile's activations at a time (about 0.4 GB for a 1024² tile): a larger tile in a stream's
# header would let a few bytes make it allocate gigabytes.
MAX_TILE = 2048
MAGIC = b"ATNC"
MODEL_NAME = re.compile(rb"[A-Za-z0-9._-]{1,255}")
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MAX_CONTEXT = 8  # more is never written, and would let a stream make each tile synthesise a large part of the image
MODES = ("L", "RGB")
_HEADER_TAIL = struct.Struct("<H8sIIBHBB")
_HEADER_TAIL_V2 = struct.Struct("<H8sIIBHB")
_HEADER_TAIL_V1 = struct.Struct("<B8sIIBHB")
_TILE = struct.Struct("<HH")
_LENGTH = struct.Struct("<I")
MIN_SIZE = len(MAGIC) + 2 + _HEADER_TAIL_V1.size + 4


@dataclass
class Stream:
    model: str
    quality: float  # 0: coded with custom weights, which the decoder must be given
    weights_hash: bytes
    width: int
    height: int
    mode: str
    tile_size: int
    context: int = 0  # latents of the neighbouring tiles that each tile's synthesis reads; 0: independent tiles
    tiles: list = field(default_factory=list)  # [(latent_shape, [bytes, ...]), ...]

    @property
    def grid(self) -> tuple[int, int]:
        """Tiles down and across."""
        return -(-self.height // self.tile_size), -(-self.width // self.tile_size)

    def tile_boxes(self):
        """(top, left, height, width) of each tile, row-major."""
        return tile_boxes(self.height, self.width, self.tile_size)


def tile_boxes(height: int, width: int, tile_size: int):
    """(top, left, height, width) of each tile of a ``height``×``width`` image, row-major, as the codec codes it."""
    for top in range(0, height, tile_size):
        for left in range(0, width, tile_size):
            yield top, left, min(tile_size, height - top), min(tile_size, width - left)


def pack(stream: Stream) -> bytes:
    name = stream.model.encode("ascii", errors="replace")
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"a stream's model name is 1-255 letters, digits, '.', '_' or '-', not {stream.model!r}")
    strings_per_tile = len(stream.tiles[0][1]) if stream.tiles else 0
    parts = [
        MAGIC,
        bytes([FORMAT_VERSION, len(name)]),
        name,
        _HEADER_TAIL.pack(
            quality_steps(stream.quality),
            stream.weights_hash,
            stream.width,
            stream.height,
            MODES.index(stream.mode),
            stream.tile_size,
            stream.context,
            strings_per_tile,
        ),
    ]
    for shape, strings in stream.tiles:
        parts.append(_TILE.pack(*shape))
        for s in strings:
            parts += [_LENGTH.pack(len(s)), s]
    body = b"".join(parts)
    return body + _LENGTH.pack(zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise StreamError("stream is truncated or its lengths are inconsistent")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack(self.take(fmt.size))


def check_magic(start: bytes) -> None:
    """Refuse what does not begin as a stream does, from its first ``len(MAGIC)`` bytes."""
    if start != MAGIC:
        raise StreamError("not an attncomp stream (bad magic bytes)")


def unpack(data: bytes, max_pixels: int | None = None) -> Stream:
    """Parse and validate a stream; raises StreamError for anything malformed."""
    data = bytes(data)
    check_magic(data[: len(MAGIC)])
    if len(data) < MIN_SIZE:
        raise StreamError("stream is truncated")
    body, (crc,) = data[:-4], _LENGTH.unpack(data[-4:])
    if zlib.crc32(body) != crc:  # first: a flipped version byte is corruption, not a newer stream
        raise StreamError("stream is corrupted or truncated (CRC mismatch)")
    version = data[4]
    if version not in READABLE_VERSIONS:
        raise StreamError(
            f"stream format version {version} is not supported (this attncomp reads {', '.join(map(str, READABLE_VERSIONS))})"
        )

    reader = _Reader(body)
    reader.take(5)
    (name_length,) = reader.take(1)
    name = reader.take(name_length)
    if not MODEL_NAME.fullmatch(name):  # printed by info and in errors: no terminal control bytes
        raise StreamError("stream names no valid model")
    model = name.decode("ascii")
    context = 0
    if version == 1:
        quality, weights_hash, width, height, mode, tile_size, per_tile = reader.unpack(_HEADER_TAIL_V1)
    else:
        if version == 2:
            steps, weights_hash, width, height, mode, tile_size, per_tile = reader.unpack(_HEADER_TAIL_V2)
        else:
            steps, weights_hash, width, height, mode, tile_size, context, per_tile = reader.unpack(_HEADER_TAIL)
        quality = steps / QUALITY_STEPS
        quality = int(quality) if quality.is_integer() else quality
    if mode >= len(MODES):
        raise StreamError(f"unknown image mode {mode} in stream")
    if width < 1 or height < 1 or tile_size < 1 or per_tile < 1:
        raise StreamError("stream header has an empty image, tile or string list")
    if tile_size > MAX_TILE:
        raise StreamError(f"stream tile of {tile_size} px exceeds the limit of {MAX_TILE}")
    if context > MAX_CONTEXT:
        raise StreamError(f"stream tile context {context} exceeds {MAX_CONTEXT} latents")
    if max_pixels is not None and width * height > max_pixels:
        raise StreamError(f"stream image of {width}×{height} exceeds the limit of {max_pixels} pixels")
    stream = Stream(model, quality, weights_hash, width, height, MODES[mode], tile_size, context)
    rows, cols = stream.grid
    if rows * cols * (_TILE.size + per_tile * _LENGTH.size) > len(body):
        raise StreamError("stream is truncated (fewer tiles than the image needs)")
    for _ in range(rows * cols):
        shape = reader.unpack(_TILE)
        strings = [reader.take(reader.unpack(_LENGTH)[0]) for _ in range(per_tile)]
        stream.tiles.append((shape, strings))
    if reader.pos != len(body):
        raise StreamError("stream has trailing bytes after its last tile")
    return stream
