"""The stream container: a documented byte layout that rejects anything malformed."""

import struct
import zlib

import pytest

from attncomp.codec.container import FORMAT_VERSION, MAGIC, MAX_TILE, Stream, pack, unpack
from attncomp.errors import StreamError


def sample(width=200, height=100, tile=128):
    stream = Stream("attn-hyperprior", 3, bytes(range(8)), width, height, "RGB", tile)
    for i, _ in enumerate(stream.tile_boxes()):
        stream.tiles.append(((2, 2), [bytes([i]) * (10 + i), b"zz"]))
    return stream


def test_round_trip_keeps_every_field():
    stream = sample()
    again = unpack(pack(stream))
    assert again == stream
    assert again.grid == (1, 2)


def test_layout_starts_with_magic_version_and_name():
    data = pack(sample())
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION
    assert data[5] == len("attn-hyperprior") and data[6:21] == b"attn-hyperprior"
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


def with_name(data: bytes, name: bytes) -> bytes:
    """``data`` with another model name and a valid CRC: what a crafted stream can say."""
    body = data[:5] + bytes([len(name)]) + name + data[6 + data[5] : -4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("name", [b"\x1b[2J\x1b[31mX", b"a b", b"caf\xc3\xa9", b""])
def test_a_model_name_that_could_control_a_terminal_is_refused(name):
    data = pack(sample())
    assert unpack(with_name(data, b"attn-hyperprior-vbr")).model == "attn-hyperprior-vbr"
    with pytest.raises(StreamError, match="names no valid model"):
        unpack(with_name(data, name))
    with pytest.raises(ValueError, match="model name is 1-255 letters"):
        pack(Stream(name.decode("utf-8", "replace"), 3, bytes(8), 8, 8, "RGB", 128))


@pytest.mark.parametrize("cut", [1, 5, 20, 40, 60])
def test_truncated_streams_are_rejected(cut):
    data = pack(sample())
    with pytest.raises(StreamError):
        unpack(data[:-cut])


def test_every_single_bit_flip_is_detected():
    data = pack(sample())
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 1 << (position % 8)
        with pytest.raises(StreamError):
            unpack(bytes(flipped))


def test_wrong_magic_and_version_have_their_own_messages():
    data = pack(sample())
    with pytest.raises(StreamError, match="not an attncomp stream"):
        unpack(b"PNG!" + data[4:])
    newer = bytearray(data[:-4])
    newer[4] = FORMAT_VERSION + 1
    with pytest.raises(StreamError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        unpack(bytes(newer) + struct.pack("<I", zlib.crc32(newer)))
    with pytest.raises(StreamError, match="corrupted"):  # a flipped version byte is damage, not a newer format
        unpack(bytes(newer) + data[-4:])


def test_fractional_qualities_are_kept_in_hundredths():
    stream = sample()
    stream.quality = 3.25
    assert unpack(pack(stream)).quality == 3.25


def older(stream, version: int) -> bytes:
    """``stream`` in an earlier layout: versions 1 and 2 have no context byte, version 1 a one-byte quality."""
    current = pack(stream)[:-4]
    name_end = 6 + len(stream.model)
    context = name_end + 2 + 8 + 4 + 4 + 1 + 2  # after quality, hash, width, height, mode, tile size
    old = bytearray(current[:context] + current[context + 1 :])
    if version == 1:
        old = old[:name_end] + bytes([stream.quality]) + old[name_end + 2 :]
    old[4] = version
    return bytes(old) + struct.pack("<I", zlib.crc32(old))


@pytest.mark.parametrize("version", [1, 2])
def test_earlier_versions_are_still_read_as_tiles_without_context(version):
    stream = sample()
    assert unpack(older(stream, version)) == stream and stream.context == 0


def test_the_context_round_trips_and_an_absurd_one_is_refused():
    stream = sample()
    stream.context = 2
    assert unpack(pack(stream)).context == 2
    stream.context = 200
    with pytest.raises(StreamError, match="context 200 exceeds"):
        unpack(pack(stream))


def test_absurd_dimensions_are_rejected_before_allocation():
    data = pack(sample(width=20000, height=20000, tile=2048))
    with pytest.raises(StreamError, match="exceeds the limit of 100000000 pixels"):
        unpack(data, max_pixels=10**8)


def test_a_tile_larger_than_a_decoder_holds_is_rejected():
    """A few header bytes must not make a decoder synthesise one huge tile (gigabytes of activations)."""
    assert unpack(pack(sample(width=3000, height=100, tile=MAX_TILE))).tile_size == MAX_TILE
    with pytest.raises(StreamError, match=f"tile of {MAX_TILE + 64} px exceeds the limit of {MAX_TILE}"):
        unpack(pack(sample(width=3000, height=100, tile=MAX_TILE + 64)))


def test_lengths_pointing_past_the_end_are_rejected():
    stream = sample()
    body = bytearray(pack(stream)[:-4])
    first_length = body.index(bytes([0]) * 10) - 4  # the u32 before tile 0's first string
    body[first_length : first_length + 4] = struct.pack("<I", 10**6)
    with pytest.raises(StreamError, match="truncated"):
        unpack(bytes(body) + struct.pack("<I", zlib.crc32(body)))
