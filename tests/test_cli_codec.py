"""attncomp-codec as a user runs it, with real files: in this process (fast), and once in a subprocess."""

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attncomp.cli.codec import main

from .helpers import TINY, run_main

CODEC = [sys.executable, "-m", "attncomp.cli.codec"]


def run(*args, stdin=b""):
    return run_main(main, args, stdin)


def assert_clean_error(result, *words):
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("attncomp-codec: error:"), err
    for word in words:
        assert word in lines[0], lines[0]


def encode(src, dst, weights, *extra):
    result = run("encode", src, dst, "--weights", weights, *extra)
    assert result.returncode == 0, result.stderr.decode()
    return result


def test_help_lists_the_commands_and_examples_and_encode_help_its_options():
    result = run("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for word in ("encode", "decode", "info", "examples"):
        assert word in text
    assert "--quality" in run("encode", "--help").stdout.decode()


def test_the_installed_command_round_trips_in_its_own_process(tmp_path, png, tiny_weights):
    for args in (["encode", png(), tmp_path / "a.atc", "--weights", tiny_weights],
                 ["decode", tmp_path / "a.atc", tmp_path / "b.png", "--weights", tiny_weights]):
        result = subprocess.run([*CODEC, *map(str, args)], capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr.decode()
    assert Image.open(tmp_path / "b.png").size == (96, 64)


@pytest.mark.parametrize("size", [(1, 1), (65, 97), (64, 64)])
def test_round_trip_any_size(tmp_path, png, tiny_weights, size):
    src = png(*size)
    result = encode(src, tmp_path / "a.atc", tiny_weights)
    assert "bpp" in result.stderr.decode() and "custom weights" in result.stderr.decode()  # no quality: not "q0"
    assert run("decode", tmp_path / "a.atc", tmp_path / "b.png", "--weights", tiny_weights).returncode == 0
    out = Image.open(tmp_path / "b.png")
    assert out.size == (size[1], size[0]) and out.mode == "RGB"


def test_bundled_models_need_no_weights_file_either_way(tmp_path, png):
    """What `make demo` does: the stream names its bundled model, so decode needs nothing else."""
    src = png(96, 128)
    for model in ("attn-hyperprior", "spatial-ae"):
        assert run("encode", src, tmp_path / f"{model}.atc", "--model", model).returncode == 0
        decoded = run("decode", tmp_path / f"{model}.atc", tmp_path / f"{model}.png")
        assert decoded.returncode == 0, decoded.stderr.decode()
        assert Image.open(tmp_path / f"{model}.png").size == (128, 96)


def test_without_model_or_quality_the_codec_uses_the_variable_rate_model_at_quality_3(tmp_path, png):
    assert run("encode", png(64, 64), tmp_path / "a.atc").returncode == 0
    info = run("info", tmp_path / "a.atc").stdout.decode()
    assert "attn-hyperprior-vbr" in info and "quality:      3\n" in info, info


@pytest.mark.parametrize("mode,expected", [("L", "L"), ("RGBA", "RGB"), ("P", "RGB"), ("I;16", "L")])
def test_gray_16_bit_palette_and_alpha_images_decode_as_l_or_rgb(tmp_path, png, tiny_weights, mode, expected):
    encode(png(40, 50, mode=mode), tmp_path / "a.atc", tiny_weights)
    assert run("decode", tmp_path / "a.atc", tmp_path / "b.png", "--weights", tiny_weights).returncode == 0
    assert Image.open(tmp_path / "b.png").mode == expected


def test_decoded_file_equals_library_decode_and_info_describes_it(tmp_path, png, tiny_weights):
    from attncomp.codec import decode
    from attncomp.models import load_weights

    encode(png(70, 90), tmp_path / "a.atc", tiny_weights)
    run("decode", tmp_path / "a.atc", tmp_path / "b.png", "--weights", tiny_weights)
    expected = decode((tmp_path / "a.atc").read_bytes(), load_weights(tiny_weights))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), np.asarray(expected))
    idat = (tmp_path / "b.png").read_bytes().split(b"IDAT", 1)[1]
    assert idat[1] >> 6 == 0  # the zlib header's FLEVEL: written at the fastest level, not Pillow's default
    info = run("info", tmp_path / "a.atc").stdout.decode()
    assert "attn-hyperprior" in info and "90×70" in info and "custom weights" in info


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_decodes_in_bf16_only_where_it_is_fast(tmp_path, png, tiny_weights, monkeypatch, fast):
    monkeypatch.setattr("attncomp.models.layers.bfloat16_is_fast", lambda device: fast)
    encode(png(70, 90), tmp_path / "a.atc", tiny_weights)
    result = run("decode", tmp_path / "a.atc", tmp_path / "bf16.png", "--weights", tiny_weights, "--bf16")
    default = run("decode", tmp_path / "a.atc", tmp_path / "default.png", "--weights", tiny_weights)
    run("decode", tmp_path / "a.atc", tmp_path / "float32.png", "--weights", tiny_weights, "--precision", "float32")
    assert result.returncode == 0 and result.stderr.decode().rstrip().endswith(", bf16" if fast else ", float32")
    # the default, mixed, rounds only a residual post-filter's correction: this model's sigmoid filter stays float32
    assert default.stderr.decode().rstrip().endswith(", float32")
    bf16, default, float32 = (np.asarray(Image.open(tmp_path / f"{name}.png"), np.int16)
                              for name in ("bf16", "default", "float32"))  # fmt: skip
    assert (0 < np.abs(bf16 - float32).max() <= 2) if fast else np.array_equal(bf16, float32)
    assert np.array_equal(default, float32)


def test_an_unknown_precision_is_refused(tmp_path, tiny_weights):
    result = run("decode", tmp_path / "a.atc", tmp_path / "a.png", "--weights", tiny_weights, "--precision", "fp16")
    assert result.returncode == 2 and b"invalid choice: 'fp16'" in result.stderr


def test_a_dash_reads_stdin_and_writes_stdout(tmp_path, png, tiny_weights):
    stream = run("encode", "-", "-", "--weights", tiny_weights, stdin=png(33, 44).read_bytes())
    assert stream.returncode == 0 and stream.stdout[:4] == b"ATNC"
    image = run("decode", "-", "-", "--weights", tiny_weights, stdin=stream.stdout)
    assert image.returncode == 0 and image.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_output_is_kept_without_force(tmp_path, png, tiny_weights):
    out = tmp_path / "a.atc"
    out.write_bytes(b"precious")
    assert_clean_error(run("encode", png(), out, "--weights", tiny_weights), "exists", "--force")
    assert out.read_bytes() == b"precious"
    encode(png(), out, tiny_weights, "--force")
    assert out.read_bytes()[:4] == b"ATNC"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a folder nobody can create files in")
def test_an_unwritable_output_folder_is_a_one_line_error(png, tiny_weights):
    assert_clean_error(run("encode", png(), "/proc/out.atc", "--weights", tiny_weights), "cannot write /proc/out.atc")


def test_missing_and_non_image_inputs_are_one_line_errors_that_write_nothing(tmp_path, tiny_weights):
    assert_clean_error(run("encode", tmp_path / "nope.png", tmp_path / "a.atc", "--weights", tiny_weights), "no such file")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert_clean_error(run("encode", text, tmp_path / "a.atc", "--weights", tiny_weights), "not an image")
    assert_clean_error(run("decode", text, tmp_path / "b.png"), "not an attncomp stream")
    assert not (tmp_path / "a.atc").exists() and not (tmp_path / "b.png").exists()


def test_what_is_not_a_stream_is_refused_after_its_first_four_bytes():
    class Unclosed(io.BytesIO):
        def close(self):  # run_main's text wrapper closes its buffer when it goes: tell() comes after
            pass

    endless = Unclosed(bytes(1_000_000))  # e.g. info - < /dev/zero
    assert_clean_error(run("info", "-", stdin=endless), "not an attncomp stream")
    assert endless.tell() == 4


def test_corrupted_and_truncated_streams_leave_no_output(tmp_path, png, tiny_weights):
    encode(png(), tmp_path / "a.atc", tiny_weights)
    data = (tmp_path / "a.atc").read_bytes()
    (tmp_path / "cut.atc").write_bytes(data[: len(data) // 2])
    assert_clean_error(run("decode", tmp_path / "cut.atc", tmp_path / "b.png", "--weights", tiny_weights), "CRC")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flip.atc").write_bytes(bytes(flipped))
    assert_clean_error(run("decode", tmp_path / "flip.atc", tmp_path / "b.png", "--weights", tiny_weights), "corrupted")
    newer = bytearray(data[:-4])
    newer[4] = 99  # a stream from a future attncomp: intact, so its CRC is valid
    (tmp_path / "v99.atc").write_bytes(bytes(newer) + struct.pack("<I", zlib.crc32(newer)))
    assert_clean_error(run("decode", tmp_path / "v99.atc", tmp_path / "b.png"), "version 99")
    assert not (tmp_path / "b.png").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_weights_that_did_not_write_the_stream_are_refused_with_a_hint(tmp_path, png, tiny_weights):
    import torch

    from attncomp.models import create, save_weights

    encode(png(), tmp_path / "a.atc", tiny_weights)
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_weights(create("attn-hyperprior", **TINY), other, "attn-hyperprior")
    assert_clean_error(run("decode", tmp_path / "a.atc", tmp_path / "b.png", "--weights", other), "not by")
    assert_clean_error(run("decode", tmp_path / "a.atc", tmp_path / "b.png"), "--weights")

    # a user's run records its quality (from λ) too: without --weights, the hint is the same
    for quality in (3, 4):  # one that is bundled (another hash) and one that is not
        trained = tmp_path / f"q{quality}.pt"
        save_weights(create("attn-hyperprior", **TINY), trained, "attn-hyperprior", quality=quality)
        encode(png(), tmp_path / f"q{quality}.atc", trained)
        assert_clean_error(run("decode", tmp_path / f"q{quality}.atc", tmp_path / "b.png"), "--weights")


def test_an_unknown_model_or_quality_and_unreadable_weights_are_refused(tmp_path, png):
    src = png()
    bad_model = run("encode", src, tmp_path / "a.atc", "--model", "nope")
    assert bad_model.returncode == 2 and "invalid choice" in bad_model.stderr.decode()
    assert_clean_error(run("encode", src, tmp_path / "a.atc", "--quality", "42"), "quality 42")
    junk = tmp_path / "w.pt"
    junk.write_bytes(b"junk")
    assert_clean_error(run("encode", src, tmp_path / "a.atc", "--weights", junk), "weights")


def test_weights_and_a_zoo_choice_together_are_refused(tmp_path, png, tiny_weights):
    both = run("encode", png(), tmp_path / "a.atc", "--weights", tiny_weights, "--quality", "5")
    assert_clean_error(both, "--weights", "--quality")  # the file's own λ would silently win
    assert not (tmp_path / "a.atc").exists()


def test_an_output_another_process_writes_while_coding_is_kept(tmp_path, png, tiny_weights, monkeypatch):
    import attncomp.codec

    out, encode_now = tmp_path / "a.atc", attncomp.codec.encode

    def encode_while_another_writes(*args, **kwargs):
        out.write_bytes(b"theirs")  # after the check that the output does not exist
        return encode_now(*args, **kwargs)

    monkeypatch.setattr(attncomp.codec, "encode", encode_while_another_writes)
    assert_clean_error(run("encode", png(), out, "--weights", tiny_weights), "exists", "--force")
    assert out.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["a.atc", "image.png"]
    out.unlink()
    encode(png(), out, tiny_weights, "--force")  # --force replaces what appears meanwhile
    assert out.read_bytes()[:4] == b"ATNC"


def test_a_tile_beyond_what_a_decoder_holds_is_refused(tmp_path, png, tiny_weights):
    assert_clean_error(run("encode", png(), tmp_path / "a.atc", "--weights", tiny_weights, "--tile", "4096"), "2048")
    assert not (tmp_path / "a.atc").exists()


def test_unknown_output_format_is_refused_before_decoding(tmp_path, png, tiny_weights):
    encode(png(), tmp_path / "a.atc", tiny_weights)
    assert_clean_error(run("decode", tmp_path / "a.atc", tmp_path / "b.xyz", "--weights", tiny_weights), "format")
    assert_clean_error(run("decode", tmp_path / "a.atc", tmp_path / "b.img", "--weights", tiny_weights, "--format", "xyz"), "xyz")
    assert not (tmp_path / "b.xyz").exists() and not (tmp_path / "b.img").exists()


def test_format_accepts_names_and_extensions(tmp_path, png, tiny_weights):
    encode(png(), tmp_path / "a.atc", tiny_weights)
    for requested, expected in (("jpg", "JPEG"), ("JPEG", "JPEG"), ("tif", "TIFF"), ("webp", "WEBP")):
        out = tmp_path / f"out-{requested}"
        result = run("decode", tmp_path / "a.atc", out, "--weights", tiny_weights, "--format", requested)
        assert result.returncode == 0, result.stderr.decode()
        assert Image.open(out).format == expected


def test_many_files_in_one_call_one_bad_file_does_not_stop_the_others(tmp_path, png, tiny_weights):
    images = [png(64, 96, name=f"img{i}.png") for i in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    streams, decoded = tmp_path / "streams", tmp_path / "decoded"
    streams.mkdir()
    decoded.mkdir()
    result = run("encode", *images, broken, "-o", streams, "--weights", tiny_weights)
    err = result.stderr.decode()
    assert result.returncode == 1 and "broken.png: input is not an image" in err and "Traceback" not in err, err
    assert sorted(p.name for p in streams.iterdir()) == ["img0.atc", "img1.atc", "img2.atc"]
    total = sum(p.stat().st_size for p in streams.iterdir())
    assert f"3 of 4 files, {total} bytes of streams" in err and "1 failed" in err

    result = run("decode", *sorted(streams.iterdir()), "-o", decoded, "--weights", tiny_weights, "--format", "webp")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in decoded.iterdir()) == ["img0.webp", "img1.webp", "img2.webp"]
    assert Image.open(decoded / "img0.webp").size == (96, 64)

    before = (streams / "img0.atc").read_bytes()
    again = run("encode", images[0], images[1], "-o", streams, "--weights", tiny_weights)
    assert again.returncode == 1 and again.stderr.decode().count("exists; use --force") == 2
    assert (streams / "img0.atc").read_bytes() == before


def test_many_files_mistakes_are_refused_before_any_work(tmp_path, png, tiny_weights):
    a, b = png(name="a.png"), png(name="b.png")
    (tmp_path / "other").mkdir()
    same_name = tmp_path / "other" / "a.png"
    same_name.write_bytes(a.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    assert_clean_error(run("encode", a, b, tmp_path / "c.atc", "--weights", tiny_weights), "-o FOLDER")
    assert_clean_error(run("encode", a, b, "-o", tmp_path / "missing", "--weights", tiny_weights), "does not exist")
    assert_clean_error(run("encode", a, same_name, "-o", out, "--weights", tiny_weights), "several inputs would write")
    # said once for the batch, not once a file
    assert_clean_error(run("encode", a, b, "-o", out, "--weights", tiny_weights, "--tile", "100"), "tile size")
    assert_clean_error(run("decode", a, b, "-o", out, "--format", "xyz"), "cannot write images in format")
    assert list(out.iterdir()) == []


def test_the_bundled_variable_rate_model_codes_any_quality_and_a_higher_one_in_more_bits(tmp_path, png):
    """One bundled file for every quality from 1 to 8, fractional ones too; the stream records the quality."""
    src = png(96, 128)
    original = np.asarray(Image.open(src), dtype=float)
    sizes, errors = [], []
    for quality in ("1", "3.5", "8"):
        stream, image = tmp_path / f"q{quality}.atc", tmp_path / f"q{quality}.png"
        assert run("encode", src, stream, "--model", "attn-hyperprior-vbr", "--quality", quality).returncode == 0
        assert run("decode", stream, image).returncode == 0
        sizes.append(stream.stat().st_size)
        errors.append(np.mean((np.asarray(Image.open(image), dtype=float) - original) ** 2))
    assert sizes == sorted(sizes) and errors == sorted(errors, reverse=True), (sizes, errors)
    assert "quality:      3.5" in run("info", tmp_path / "q3.5.atc").stdout.decode()


def test_max_bytes_codes_each_file_at_the_highest_quality_that_fits(tmp_path, png):
    images, out = [png(96, 128, name="a.png"), png(64, 64, name="b.png")], tmp_path / "streams"
    out.mkdir()
    done = run("encode", *images, "-o", out, "--max-bytes", "700")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr.decode().count("attn-hyperprior-vbr q") == 2
    assert all(0 < (out / f"{stem}.atc").stat().st_size <= 700 for stem in "ab")


def test_max_bytes_with_fixed_rate_weights_is_one_error_for_the_whole_batch(tmp_path, png, tiny_weights):
    out = tmp_path / "streams"
    out.mkdir()
    refused = run("encode", png(name="a.png"), png(name="b.png"), "-o", out, "--max-bytes", "900", "--weights", tiny_weights)
    assert_clean_error(refused, "--max-bytes needs a variable-rate model", "holds fixed-rate weights")
    assert not any(out.iterdir())


def test_a_quality_or_model_without_bundled_weights_names_what_is_bundled(tmp_path, png):
    src = png()
    assert_clean_error(run("encode", src, tmp_path / "a.atc", "--model", "attn-hyperprior", "--quality", "2"),
                       "bundled qualities: [1, 3, 5, 7]", "--model attn-hyperprior-vbr codes it")
    assert_clean_error(run("encode", src, tmp_path / "a.atc", "--model", "plain-hyperprior"), "no bundled weights")
    assert not (tmp_path / "a.atc").exists()


def test_a_truncated_image_file_is_a_one_line_error_and_writes_nothing(tmp_path, png, tiny_weights):
    data = png(64, 96).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    assert_clean_error(run("encode", cut, tmp_path / "a.atc", "--weights", tiny_weights), "cannot decode input: image file is truncated")
    assert not (tmp_path / "a.atc").exists()


def test_decode_keeps_an_existing_image_without_force_and_refuses_a_folder_as_output(tmp_path, png, tiny_weights):
    encode(png(), tmp_path / "a.atc", tiny_weights)
    out = tmp_path / "b.png"
    out.write_bytes(b"precious")
    assert_clean_error(run("decode", tmp_path / "a.atc", out, "--weights", tiny_weights), "exists", "--force")
    assert out.read_bytes() == b"precious"
    assert run("decode", tmp_path / "a.atc", out, "--weights", tiny_weights, "--force").returncode == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "folder.png").mkdir()
    assert_clean_error(run("decode", tmp_path / "a.atc", tmp_path / "folder.png", "--weights", tiny_weights), "is a directory")


def test_decoding_many_streams_one_corrupt_stream_does_not_stop_the_others(tmp_path, png, tiny_weights):
    streams, decoded = tmp_path / "streams", tmp_path / "decoded"
    streams.mkdir()
    decoded.mkdir()
    for i in range(2):
        encode(png(64, 96, name=f"img{i}.png"), streams / f"img{i}.atc", tiny_weights)
    data = (streams / "img1.atc").read_bytes()
    (streams / "cut.atc").write_bytes(data[: len(data) // 2])
    result = run("decode", *sorted(streams.iterdir()), "-o", decoded, "--weights", tiny_weights)
    err = result.stderr.decode()
    assert result.returncode == 1 and "cut.atc: stream is corrupted or truncated" in err and "1 failed" in err, err
    assert sorted(p.name for p in decoded.iterdir()) == ["img0.png", "img1.png"]
