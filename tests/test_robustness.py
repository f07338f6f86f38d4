"""Hostile streams, unusual images, deterministic decoding and crash-safe training."""

import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from attncomp import image as imageio
from attncomp.cli.train import main as train_main
from attncomp.codec import decode, encode, pack, unpack
from attncomp.codec.container import MAGIC, READABLE_VERSIONS
from attncomp.errors import AttncompError, ImageError, StreamError, WeightsError
from attncomp.models import load_weights

from .helpers import run_main, smooth_image, with_threads

# how many examples: the profile's (tests/conftest.py: "ci" by default, "fuzz" for `make fuzz`)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


VARIABLE_RATE = Path(__file__).parent / "data" / "tiny_vbr.pt"  # mean-scale prior, residual blocks, as the default


@pytest.fixture(scope="module", params=["scale prior", "variable-rate mean-scale"])
def load_model(request, tiny_weights):
    """Each kind of model the zoo codes with: the decoder is hardened for both."""
    if request.param == "scale prior":
        return lambda: load_weights(tiny_weights)
    return lambda: load_weights(VARIABLE_RATE).at(3.5)


@pytest.fixture(scope="module")
def model(load_model):
    return load_model()


@pytest.fixture(scope="module")
def stream(model):
    return encode(smooth_image(70, 130), model, tile_size=64)  # 2×3 tiles


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


# --- decoder hardening --------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_are_rejected(model, data):
    with pytest.raises(StreamError):
        decode(data, model)


@FUZZ
@given(st.sampled_from(READABLE_VERSIONS), st.binary(max_size=300))
def test_random_headers_with_a_valid_crc_never_crash(model, version, data):
    """Past the magic bytes, the version and the CRC, random bytes reach the header parser and the coder."""
    forged = with_crc(MAGIC + bytes([version]) + data)
    try:
        image = decode(forged, model)
    except AttncompError:
        return
    header = unpack(forged)
    assert image.size == (header.width, header.height)


@FUZZ
@given(st.data())
def test_truncation_at_any_offset_is_rejected(model, stream, data):
    cut = data.draw(st.integers(0, len(stream) - 1))
    with pytest.raises(StreamError):
        decode(stream[:cut], model)


@FUZZ
@given(st.data())
def test_a_bit_flip_anywhere_is_rejected(model, stream, data):
    position = data.draw(st.integers(0, len(stream) - 1))
    flipped = bytearray(stream)
    flipped[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(StreamError):
        decode(bytes(flipped), model)


@FUZZ
@given(st.data())
def test_hostile_streams_with_a_valid_crc_never_crash(model, stream, data):
    """An attacker can recompute the CRC: the decoder must still end in our exception or an image."""
    body = bytearray(stream[:-4])
    for _ in range(data.draw(st.integers(1, 8))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    try:
        image = decode(with_crc(bytes(body)), model)
    except AttncompError:
        return
    header = unpack(with_crc(bytes(body)))
    assert image.size == (header.width, header.height)


def test_garbage_range_coded_strings_still_decode_to_an_image_of_the_stream_size(model, stream):
    parsed = unpack(stream)
    rng = np.random.default_rng(0)
    for _ in range(50):
        parsed.tiles = [(shape, [rng.bytes(int(rng.integers(0, 40))) for _ in strings]) for shape, strings in parsed.tiles]
        assert decode(pack(parsed), model).size == (130, 70)


def test_a_stream_with_the_wrong_number_of_strings_per_tile_is_refused(model, stream):
    parsed = unpack(stream)
    parsed.tiles = [(shape, strings[:1]) for shape, strings in parsed.tiles]  # valid CRC, one string short
    with pytest.raises(StreamError, match="strings per tile"):
        decode(pack(parsed), model)


def test_absurd_dimensions_are_refused_before_allocation(model, stream):
    parsed = unpack(stream)
    parsed.width = parsed.height = 1_000_000
    with pytest.raises(StreamError, match="limit"):
        decode(pack(parsed), model)


def test_latent_shapes_that_do_not_fit_the_image_are_refused(model, stream):
    parsed = unpack(stream)
    parsed.tiles[0] = ((9, 9), parsed.tiles[0][1])
    with pytest.raises(StreamError, match="shape"):
        decode(pack(parsed), model)


def test_pixel_limit_is_a_parameter_and_pillows_own_guard_is_left_alone(model, tmp_path):
    data = encode(smooth_image(40, 40), model)
    with pytest.raises(ImageError, match="limit of 1000 pixels"):
        encode(smooth_image(40, 40), model, max_pixels=1000)
    with pytest.raises(StreamError, match="limit of 1000 pixels"):
        decode(data, model, max_pixels=1000)
    before = Image.MAX_IMAGE_PIXELS
    Image.fromarray(smooth_image(40, 40)).save(tmp_path / "a.png")
    try:
        Image.MAX_IMAGE_PIXELS = 500  # the caller's setting: 40×40 is then a "bomb" to Pillow
        with pytest.raises(ImageError, match="Pillow's decompression-bomb limit"):
            encode(tmp_path / "a.png", model)
        assert Image.MAX_IMAGE_PIXELS == 500
    finally:
        Image.MAX_IMAGE_PIXELS = before


# --- deterministic decoding ---------------------------------------------------------------


@torch.inference_mode()
def decoded_latents(model, data):
    parsed = unpack(data)
    shape, strings = parsed.tiles[0]
    return model.decompress([[s] for s in strings], shape)["y_hat"]


def test_decoding_is_bit_identical_across_threads_and_memory_formats(load_model, model):
    data = encode(smooth_image(128, 192), model)
    reference = decoded_latents(model, data)
    two_threads = with_threads(2, decoded_latents, model, data)
    nchw = load_model().to(memory_format=torch.contiguous_format)
    assert torch.equal(two_threads, reference)
    assert torch.equal(decoded_latents(nchw, data), reference)
    # pixels come from float synthesis: equal up to a rare one-level rounding difference
    difference = np.abs(np.asarray(decode(data, nchw), int) - np.asarray(decode(data, model), int))
    assert difference.max() <= 1 and difference.mean() < 1e-3


# --- unusual images -----------------------------------------------------------------------


def roundtrip(model, source):
    return decode(encode(source, model), model)


def test_cmyk_jpeg_is_converted_to_rgb(model):
    buffer = io.BytesIO()
    Image.fromarray(smooth_image(40, 60)).convert("CMYK").save(buffer, format="JPEG", quality=95)
    assert roundtrip(model, buffer.getvalue()).mode == "RGB"


def test_exif_orientation_codes_the_image_as_a_viewer_shows_it(model):
    source = smooth_image(40, 60)
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(source).save(buffer, format="JPEG", quality=95, exif=exif)
    shown = np.asarray(imageio.open_image(buffer.getvalue()), dtype=float)
    error = lambda turned: np.abs(shown - turned).mean()  # noqa: E731
    assert shown.shape == (60, 40, 3)
    assert error(np.rot90(source, -1)) < 5 and error(np.rot90(source, 1)) > 20  # turned clockwise, within JPEG's loss
    assert roundtrip(model, buffer.getvalue()).size == (40, 60)
    opened = Image.open(io.BytesIO(buffer.getvalue()))  # a PIL image from the caller: the same, and left as it is
    assert np.array_equal(np.asarray(imageio.open_image(opened)), shown.astype(np.uint8)) and opened.size == (60, 40)


def test_library_misuse_is_a_clear_error(model):
    """A raw network instead of a CodingModel, arrays that are not 8-bit images, an empty image."""
    with pytest.raises(WeightsError, match="take a CodingModel"):
        encode(smooth_image(64, 64), model.network)
    for array in (smooth_image(16, 16).astype(np.float64), np.zeros((16, 16, 2), np.uint8)):
        with pytest.raises(ImageError, match="arrays must be uint8 of shape"):
            encode(array, model)
    with pytest.raises(ImageError, match="image size 10×0 is empty"):
        encode(np.zeros((0, 10, 3), np.uint8), model)


def test_floating_point_images_are_refused_not_coded_black(model):
    image = Image.fromarray(np.linspace(0.1, 0.9, 40 * 60, dtype=np.float32).reshape(40, 60), "F")
    with pytest.raises(ImageError, match="floating-point"):
        encode(image, model)


@pytest.mark.parametrize("height,width", [(1, 1), (7, 3000), (3000, 7)])
def test_one_pixel_and_very_thin_images_round_trip_at_their_size(model, height, width):
    assert roundtrip(model, smooth_image(height, width)).size == (width, height)


def test_alpha_is_dropped_and_said_so_in_the_mode(model):
    rgba = np.dstack([smooth_image(30, 40), np.full((30, 40), 128, np.uint8)])
    assert roundtrip(model, rgba).mode == "RGB"


def test_tiled_images_decode_to_the_full_size(model):
    data = encode(smooth_image(150, 200), model, tile_size=64)
    assert len(unpack(data).tiles) == 3 * 4
    assert decode(data, model).size == (200, 150)


# --- training survives faults -------------------------------------------------------------


def train_args(folder, out, *extra):
    return ["--lmbda", "0.01", "--model.model_config", "{N: 16, M: 24, postfilter_channels: 8, reduction: 4}",
            "--data", str(folder), "--val-data", str(folder), "--data.crop_size", "64", "--data.batch_size", "2",
            "--out", str(out), "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1", *extra]


def train_cmd(folder, out, *extra):
    return [sys.executable, "-m", "attncomp.cli.train", *train_args(folder, out, *extra)]


def train(args):
    """attncomp-train in this process (only the kill -9 test needs a process of its own)."""
    return run_main(train_main, args)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("train")
    for seed in range(2):
        Image.fromarray(smooth_image(72, 72, seed=seed)).save(path / f"{seed}.png")
    return path


def test_kill_9_then_resume_loses_nothing_before_the_last_checkpoint(tmp_path, folder):
    out = tmp_path / "run"
    process = subprocess.Popen(train_cmd(folder, out, "--max-steps", "100000", "--checkpoint_every", "3"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not (last.is_file() and torch.load(last, weights_only=True)["global_step"] >= 6):
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved = torch.load(last, weights_only=True)["global_step"]  # intact: written by rename
    assert saved >= 6 and saved % 3 == 0
    assert not [p for p in last.parent.iterdir() if p.suffix not in (".ckpt",)]
    result = subprocess.run(train_cmd(folder, out, "--max-steps", str(saved + 2), "--resume", "last"),
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == saved + 2


def test_corrupt_or_mismatched_checkpoints_give_one_clear_line(tmp_path, folder):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"\x80\x02garbage")
    result = train(train_args(folder, tmp_path / "r", "--max-steps", "1", "--resume", broken))
    assert result.returncode == 1 and "cannot read checkpoint" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()

    first = train(train_args(folder, tmp_path / "a", "--max-steps", "1"))
    assert first.returncode == 0
    other = train_args(folder, tmp_path / "b", "--max-steps", "2", "--resume", tmp_path / "a" / "checkpoints" / "last.ckpt")
    other[other.index("{N: 16, M: 24, postfilter_channels: 8, reduction: 4}")] = "{N: 8, M: 16, postfilter_channels: 8, reduction: 4}"
    result = train(other)
    assert result.returncode == 1 and "different model" in result.stderr.decode()
    # the same shapes, another block: the paper's gates resumed as residual ones would train the wrong model
    switched = train_args(folder, tmp_path / "c", "--max-steps", "2", "--resume", tmp_path / "a" / "checkpoints" / "last.ckpt")
    switched[switched.index("{N: 16, M: 24, postfilter_channels: 8, reduction: 4}")] = (
        "{N: 16, M: 24, postfilter_channels: 8, reduction: 4, attention: residual}")
    result = train(switched)
    assert result.returncode == 1 and "different model" in result.stderr.decode()


def test_configuration_mistakes_give_one_clear_line(tmp_path, folder):
    bad_interval = train(train_args(folder, tmp_path / "c", "--max-steps", "1", "--checkpoint_every", "-1"))
    err = bad_interval.stderr.decode()
    assert bad_interval.returncode == 1 and "every_n_train_steps" in err and "Traceback" not in err, err[-2000:]

    assert train(train_args(folder, tmp_path / "a", "--max-steps", "1")).returncode == 0
    resized = train_args(folder, tmp_path / "b", "--max-steps", "1", "--model.init_weights", tmp_path / "a" / "weights.pt")
    resized[resized.index("{N: 16, M: 24, postfilter_channels: 8, reduction: 4}")] = "{N: 16, M: 32}"
    result = train(resized)
    err = result.stderr.decode()
    assert result.returncode == 1 and "fixes the model's M" in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "b" / "weights.pt").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--data.crop_size", "100", "positive multiple of 64"),  # y and z would not line up
    ("--data.crop_size", "0", "positive multiple of 64"),
    ("--data.batch_size", "0", "at least 1"),
])
def test_crop_and_batch_sizes_the_model_cannot_train_on_give_one_clear_line(tmp_path, folder, option, value, message):
    result = train(train_args(folder, tmp_path / "run", "--max-steps", "1", option, value))
    err = result.stderr.decode()
    assert result.returncode == 1 and message in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_an_epoch_of_crops_still_trains(tmp_path, folder):
    result = train(train_args(folder, tmp_path / "run", "--max-steps", "1", "--data.batch_size", "64"))
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_a_run_without_validation_ends_well_and_writes_no_validation_point(tmp_path, folder):
    result = train(train_args(folder, tmp_path / "run", "--max-steps", "1", "--trainer.limit_val_batches", "0"))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert (tmp_path / "run" / "weights.pt").is_file() and not (tmp_path / "run" / "validation.json").exists()
