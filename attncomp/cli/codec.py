"""attncomp-codec: compress images to attncomp streams and back.

examples:
  attncomp-codec encode photo.png photo.atc                 bundled model, quality 3
  attncomp-codec encode photo.png photo.atc --quality 1.5   smaller file, lower quality (any of 1-8)
  attncomp-codec encode photo.png photo.atc --max-bytes 20000   the highest quality that fits 20,000 bytes
  attncomp-codec encode photo.png out.atc --weights run/weights.pt
  attncomp-codec encode photo.png photo.atc --refine 50     fewer bits at equal PSNR, much slower
  attncomp-codec decode photo.atc photo.png                 format from the extension
  attncomp-codec decode photo.atc photo.png --precision bf16   faster on AVX-512 CPUs, ~0.02 dB lower PSNR
  attncomp-codec encode *.png -o streams/                   many images, one model load
  attncomp-codec decode streams/*.atc -o images/ --format webp
  attncomp-codec info photo.atc
  cat photo.png | attncomp-codec encode - - > photo.atc     "-" is stdin/stdout
"""

# Start-up: --help, bad arguments, a missing input or an existing output are answered without importing
# torch (seconds): this module imports only the torch-free catalog, container and file helpers, and the
# codec and models are imported once an image or stream is about to be coded (tests/test_startup.py).
from __future__ import annotations

import argparse
import functools
import io
import sys
import time
from pathlib import Path

from ..catalog import CATALOG, DEFAULT_MODEL, DEFAULT_PRECISION, DEFAULT_QUALITY, SYNTHESIS_PRECISIONS, check_quality
from ..codec.container import DEFAULT_TILE, MAGIC, MAX_TILE, check_magic, unpack
from ..errors import AttncompError
from ..files import atomic_write, read_all, read_bytes
from . import non_negative, positive, reuse_freed_memory

PROG = "attncomp-codec"
SAVE_OPTIONS = {"PNG": {"compress_level": 1}}
"""Pillow's options for a decoded image, per format. PNG at zlib level 1, as OpenCV writes it by default:
Pillow's level 6 took 0.11 s of a 0.5 s decode of kodim23 beyond the import of torch, level 1 0.02 s, for a
file 18% larger (453 against 383 kB)."""


def read_input(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else read_bytes(path)


def read_stream(path: str) -> bytes:
    """A stream's bytes, refused after the first four if they are not a stream's magic bytes (``info`` on a
    large file that is not a stream, or on an endless stdin, reads no more)."""
    if path == "-":
        return read_all(sys.stdin.buffer, check_magic, len(MAGIC))
    return read_bytes(path, check_start=check_magic, start=len(MAGIC))


def check_output(path: str, force: bool) -> None:
    """Refuse before any work is done: an existing output is kept unless --force."""
    if path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise AttncompError(f"{path} is a directory")
    if target.exists() and not force:
        raise AttncompError(f"{path} exists; use --force to overwrite it")
    if not target.parent.is_dir():
        raise AttncompError(f"folder {target.parent} does not exist")


def write_output(path: str, data: bytes, force: bool) -> None:
    """Write atomically: a temporary file in the same folder, renamed when complete (over a file only with --force)."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(path, lambda f: f.write(data), overwrite=force)


def image_format(path: str, requested: str | None) -> str:
    """The Pillow format to write: --format (a name or an extension: PNG, jpg, tif…), else the extension."""
    from PIL import Image

    Image.init()
    extensions = Image.registered_extensions()
    if requested:
        fmt = extensions.get("." + requested.lower().lstrip("."), requested.upper())
        if fmt not in Image.SAVE:
            raise AttncompError(f"cannot write images in format {requested!r}; try PNG, WEBP, JPEG or TIFF")
        return fmt
    if path == "-":
        return "PNG"
    extension = Path(path).suffix.lower()
    if extensions.get(extension) not in Image.SAVE:
        raise AttncompError(f"cannot tell the image format of {path}; use .png, .webp, .jpg… or --format")
    return extensions[extension]


def check_model_args(args) -> None:
    """Refuse a model and quality that cannot go together before anything is read (no torch needed)."""
    if args.weights and args.model is not None:  # the file names its model (and its λ, unless variable-rate)
        raise AttncompError("--weights names its own model: drop --model")
    if args.weights and not Path(args.weights).is_file():
        raise AttncompError(f"weights file not found: {args.weights}")
    if args.max_bytes is not None:
        if args.quality is not None:
            raise AttncompError("--max-bytes picks the quality: drop --quality")
        name = args.model or DEFAULT_MODEL
        if not args.weights and not CATALOG[name].variable_rate:
            raise AttncompError(f"--max-bytes needs a variable-rate model: {name} codes at fixed qualities")
    if args.quality is None or args.weights:
        return
    check_quality(args.model or DEFAULT_MODEL, args.quality)


def load_model(args, quality=None):
    """The --weights file's model, else the zoo's, at ``quality`` if given (imports torch: called once
    there is something to code). A decoder passes none: each stream says its quality."""
    from ..models import zoo

    if args.weights:
        model = zoo.load_weights(args.weights)
        if quality is None or model.variable_rate:
            return model if quality is None else model.at(quality)
        if quality != model.quality:  # the file's own λ would silently win
            raise AttncompError(f"--weights {args.weights} holds fixed-rate weights: drop --quality "
                                "(only a variable-rate model takes one)")
        return model
    return zoo.load(args.model or DEFAULT_MODEL, DEFAULT_QUALITY if quality is None else quality)


def coding_model(args):
    """What encode codes with: a variable-rate weights file at --quality, or at the default one."""
    model = load_model(args, args.quality)
    return model.at(DEFAULT_QUALITY) if model.variable_rate and model.quality is None else model


def jobs(args, suffix: str) -> list[tuple[str, str]]:
    """(input, output) pairs: ``INPUT OUTPUT``, or ``INPUT... -o FOLDER`` (FOLDER/<name><suffix> each)."""
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise AttncompError("give INPUT OUTPUT, or INPUT... -o FOLDER")
        return [tuple(args.paths)]
    folder = Path(args.out_dir)
    if not folder.is_dir():
        raise AttncompError(f"folder {folder} does not exist")
    if "-" in args.paths:
        raise AttncompError("- (stdin) cannot be one of several inputs")
    pairs = [(path, str(folder / (Path(path).stem + suffix))) for path in args.paths]
    outputs = [output for _, output in pairs]
    twice = sorted({o for o in outputs if outputs.count(o) > 1})
    if twice:
        raise AttncompError(f"several inputs would write {', '.join(twice)}: give them other names")
    return pairs


def run_jobs(pairs, code_one) -> int:
    """``code_one(input, output)`` for each pair; with several, a failure is reported and the rest still run.

    ``code_one`` returns its one-line report and (bytes, pixels) for the summary.
    """
    if len(pairs) == 1:  # the single-file form: an error ends the command with one line
        line, _ = code_one(*pairs[0])
        print(line, file=sys.stderr)
        return 0
    from tqdm import tqdm

    failed, total_bytes, total_pixels = 0, 0, 0
    with tqdm(total=len(pairs), unit="file", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        for source, output in pairs:
            try:
                line, (size, pixels) = code_one(source, output)
                total_bytes, total_pixels = total_bytes + size, total_pixels + pixels
                tqdm.write(line, file=sys.stderr)
            except (AttncompError, ValueError, OSError) as exc:
                failed += 1
                tqdm.write(f"{PROG}: error: {source}: {exc}", file=sys.stderr)
            bar.update()
    done = len(pairs) - failed
    rate = f", {8 * total_bytes / total_pixels:.4f} bpp" if total_pixels else ""
    print(f"{done} of {len(pairs)} files, {total_bytes} bytes of streams{rate}"
          + (f"; {failed} failed" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


@functools.cache  # once per process, however many files a call codes
def prepare_process_for_coding() -> None:
    """This process is the CLI's: tune it for coding images, once torch work is about to start.

    Pillow's decompression-bomb guard is aligned with attncomp's pixel limit (Pillow warns above
    89 megapixels and refuses above 179; camera and panorama images up to the codec's limit,
    attncomp.image.DEFAULT_MAX_PIXELS, checked on every image, are what it is for), and freed
    tile activations are kept for reuse (:func:`attncomp.cli.reuse_freed_memory`).
    """
    import warnings

    from PIL import Image

    from ..image import DEFAULT_MAX_PIXELS

    Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    reuse_freed_memory()


def cmd_encode(args) -> int:
    check_model_args(args)
    pairs = jobs(args, ".atc")
    model_once = functools.cache(lambda: coding_model(args))
    if len(pairs) > 1:  # a bad model, weights file or tile size: one error for the batch, before any file
        from ..codec import check_tile_size

        check_tile_size(args.tile, model_once())
        if args.max_bytes is not None and not model_once().variable_rate:
            raise AttncompError(
                f"--max-bytes needs a variable-rate model: --weights {args.weights} holds fixed-rate weights"
            )

    def encode_one(source_path: str, output: str):
        check_output(output, args.force)
        source = read_input(source_path)
        from ..codec import encode  # torch: there is an image to code

        prepare_process_for_coding()

        model = model_once()
        start = time.perf_counter()
        if args.max_bytes is None:
            data = encode(source, model, tile_size=args.tile, refine_steps=args.refine)
        else:
            from ..codec import encode_to_fit

            data = encode_to_fit(source, args.max_bytes, model, tile_size=args.tile, refine_steps=args.refine)
        seconds = time.perf_counter() - start
        write_output(output, data, args.force)
        header = unpack(data)
        pixels = header.width * header.height
        name = f"{header.model} {f'q{header.quality:g}' if header.quality else 'custom weights'}"
        line = f"{output}: {len(data)} bytes, {8 * len(data) / pixels:.4f} bpp, {name}, {seconds:.2f} s"
        return line, (len(data), pixels)

    return run_jobs(pairs, encode_one)


def cmd_decode(args) -> int:
    pairs = jobs(args, "." + (args.format or "png").lower().lstrip("."))
    weights_once = functools.cache(lambda: load_model(args))
    if len(pairs) > 1 and args.weights:
        weights_once()  # a bad weights file: one error for the batch, before any file
    if len(pairs) > 1 and args.format:
        image_format("-", args.format)  # likewise a format Pillow cannot write
    bundled = {}  # one load per bundled model the streams name

    def decode_one(source: str, output: str):
        check_output(output, args.force)
        fmt = image_format(output, args.format)
        data = read_stream(source)
        stream = unpack(data)  # a truncated or corrupt stream is refused before torch is imported
        from ..codec import decode, model_for  # torch: there is a stream to decode

        prepare_process_for_coding()
        if args.weights:
            model = weights_once()
        else:
            key = (stream.model, stream.quality, stream.weights_hash)
            if key not in bundled:  # its errors say which weights the stream needs
                bundled[key] = model_for(stream)
            model = bundled[key]
        precision = model.synthesis_precision(args.precision)
        start = time.perf_counter()
        image = decode(data, model, precision=precision)
        seconds = time.perf_counter() - start
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
        except (KeyError, OSError, ValueError) as exc:
            raise AttncompError(f"cannot write {fmt}: {exc}") from None
        write_output(output, buffer.getvalue(), args.force)
        line = f"{output}: {image.width}×{image.height} {image.mode}, {seconds:.2f} s, {precision}"
        return line, (len(data), image.width * image.height)

    return run_jobs(pairs, decode_one)


def cmd_info(args) -> None:
    data = read_stream(args.input)
    stream = unpack(data)
    payload = sum(len(s) for _, strings in stream.tiles for s in strings)
    print(f"model:        {stream.model}")
    print(f"quality:      {f'{stream.quality:g}' if stream.quality else 'custom weights'}")
    print(f"weights hash: {stream.weights_hash.hex()}")
    print(f"image:        {stream.width}×{stream.height} {stream.mode}")
    context = f", each reading {stream.context} latents of its neighbours" if stream.context else ", each decoded alone"
    print(f"tiles:        {len(stream.tiles)} of {stream.tile_size} px{context}")
    print(f"latents:      {', '.join('×'.join(map(str, shape)) for shape, _ in stream.tiles)}")
    print(f"size:         {len(data)} bytes ({payload} entropy-coded), {8 * len(data) / (stream.width * stream.height):.4f} bpp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{encode,decode,info}")

    enc = commands.add_parser("encode", help="compress an image into a stream")
    enc.add_argument("paths", nargs="+", metavar="INPUT OUTPUT",
                     help="image file (png, jpg, webp, …) or - for stdin, then the stream file or - for stdout; "
                     "or several images with -o FOLDER")
    enc.add_argument("-o", "--out-dir", metavar="FOLDER", help="write FOLDER/<name>.atc for each input image")
    enc.add_argument("--model", choices=sorted(CATALOG), metavar="NAME",
                     help=f"zoo model (default {DEFAULT_MODEL}): "
                     + "; ".join(f"{name}, {CATALOG[name].description}" for name in sorted(CATALOG)))
    enc.add_argument("--quality", type=float, metavar="Q",
                     help=f"1 (smallest) … 8 (best); CompressAI's λ for that quality (default {DEFAULT_QUALITY}); "
                     "a variable-rate model also codes fractional ones, e.g. 3.5")
    enc.add_argument("--max-bytes", type=positive, metavar="N",
                     help="code at the highest quality whose stream fits in N bytes (a variable-rate model; "
                     "the image's analysis once, then at most 12 entropy codings; one refinement with --refine)")
    enc.add_argument("--weights", metavar="FILE", help="exported weights (attncomp-train's weights.pt) instead of the zoo")
    enc.add_argument("--tile", type=int, metavar="PX", default=DEFAULT_TILE,
                     help=f"tile side for large images, a multiple of 64 up to {MAX_TILE} (default {DEFAULT_TILE}; "
                     "tiles read context across their borders, and 1024 saves well under 1%% of the bits on large "
                     "photos for more memory)")
    enc.add_argument("--refine", type=non_negative, default=0, metavar="STEPS",
                     help="optimise the latents for this image (e.g. 50): smaller files at the same quality, "
                     "slower encoding, same decoder (default 0)")
    enc.add_argument("--force", action="store_true", help="overwrite an existing output")
    enc.set_defaults(run=cmd_encode)

    dec = commands.add_parser("decode", help="decompress a stream into an image")
    dec.add_argument("paths", nargs="+", metavar="INPUT OUTPUT",
                     help="stream file or - for stdin, then the image file (format from the extension) or - for PNG "
                     "on stdout; or several streams with -o FOLDER")
    dec.add_argument("-o", "--out-dir", metavar="FOLDER", help="write FOLDER/<name>.png (or --format) for each stream")
    dec.add_argument("--weights", metavar="FILE", help="the weights file the stream was encoded with, if not bundled")
    dec.add_argument("--format", help="image format when the extension does not tell (PNG, WEBP, JPEG…)")
    dec.add_argument("--precision", choices=SYNTHESIS_PRECISIONS, default=DEFAULT_PRECISION,
                     help="how the image is synthesised from the exactly decoded latents: mixed (default) computes "
                     "a residual post-filter's correction in bf16 (about 0.85x the decode time, PSNR within "
                     "thousandths of a dB), bf16 all of it (0.6-0.7x, a few hundredths of a dB lower), float32 none; "
                     "either bf16 form only where it is fast (AVX-512 CPU, GPU), else float32")
    dec.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="the same as --precision bf16")
    dec.add_argument("--force", action="store_true", help="overwrite an existing output")
    dec.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="describe a stream without decoding it")
    info.add_argument("input", help="stream file, or - for stdin")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except (AttncompError, ValueError, OSError) as exc:  # OSError: e.g. a closed stdout pipe
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:  # e.g. an image far larger than this machine's memory
        print(f"{PROG}: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
