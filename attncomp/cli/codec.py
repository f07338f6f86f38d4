"""attncomp-codec: compress images to attncomp streams and back.

examples:
  attncomp-codec encode photo.png photo.atc                 bundled model, quality 3
  attncomp-codec encode photo.png photo.atc --quality 1     smaller file, lower quality
  attncomp-codec encode photo.png out.atc --weights run/weights.pt
  attncomp-codec encode photo.png photo.atc --refine 50     ~18% fewer bits at equal PSNR, slower
  attncomp-codec decode photo.atc photo.png                 format from the extension
  attncomp-codec info photo.atc
  cat photo.png | attncomp-codec encode - - > photo.atc     "-" is stdin/stdout
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from PIL import Image

from ..codec import DEFAULT_TILE
from ..errors import AttncompError
from ..files import atomic_write, read_bytes
from ..models import DEFAULT_MODEL, DEFAULT_QUALITY, ZOO, zoo
from . import non_negative

PROG = "attncomp-codec"


def read_input(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else read_bytes(path)


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


def write_output(path: str, data: bytes) -> None:
    """Write atomically: a temporary file in the same folder, renamed when complete."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(path, lambda f: f.write(data))


def image_format(path: str, requested: str | None) -> str:
    """The Pillow format to write: --format (a name or an extension: PNG, jpg, tif…), else the extension."""
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


def load_model(args):
    if args.weights:
        if args.model is not None or args.quality is not None:  # the file names its model and λ
            raise ValueError("--weights names its own model and quality: drop --model/--quality")
        return zoo.load_weights(args.weights)
    return zoo.load(args.model or DEFAULT_MODEL, DEFAULT_QUALITY if args.quality is None else args.quality)


def cmd_encode(args) -> None:
    from ..codec import encode, unpack

    check_output(args.output, args.force)
    source = read_input(args.input)
    model = load_model(args)
    start = time.perf_counter()
    data = encode(source, model, tile_size=args.tile, refine_steps=args.refine)
    seconds = time.perf_counter() - start
    write_output(args.output, data)
    header = unpack(data)
    pixels = header.width * header.height
    print(
        f"{args.output}: {len(data)} bytes, {8 * len(data) / pixels:.4f} bpp, "
        f"{model.zoo_name} {f'q{model.quality}' if model.quality else 'custom weights'}, {seconds:.2f} s",
        file=sys.stderr,
    )


def cmd_decode(args) -> None:
    from ..codec import decode

    check_output(args.output, args.force)
    fmt = image_format(args.output, args.format)
    data = read_input(args.input)
    model = zoo.load_weights(args.weights) if args.weights else None
    start = time.perf_counter()
    image = decode(data, model)
    seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (KeyError, OSError, ValueError) as exc:
        raise AttncompError(f"cannot write {fmt}: {exc}") from None
    write_output(args.output, buffer.getvalue())
    print(f"{args.output}: {image.width}×{image.height} {image.mode}, {seconds:.2f} s", file=sys.stderr)


def cmd_info(args) -> None:
    from ..codec import unpack

    data = read_input(args.input)
    stream = unpack(data)
    payload = sum(len(s) for _, strings in stream.tiles for s in strings)
    print(f"model:        {stream.model}")
    print(f"quality:      {stream.quality or 'custom weights'}")
    print(f"weights hash: {stream.weights_hash.hex()}")
    print(f"image:        {stream.width}×{stream.height} {stream.mode}")
    print(f"tiles:        {len(stream.tiles)} of {stream.tile_size} px")
    print(f"latents:      {', '.join('×'.join(map(str, shape)) for shape, _ in stream.tiles)}")
    print(f"size:         {len(data)} bytes ({payload} entropy-coded), {8 * len(data) / (stream.width * stream.height):.4f} bpp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{encode,decode,info}")

    enc = commands.add_parser("encode", help="compress an image into a stream")
    enc.add_argument("input", help="image file (png, jpg, webp, …) or - for stdin")
    enc.add_argument("output", help="stream file, or - for stdout")
    enc.add_argument("--model", choices=sorted(ZOO), metavar="NAME",
                     help=f"zoo model (default {DEFAULT_MODEL}): "
                     + "; ".join(f"{name}, {ZOO[name].description}" for name in sorted(ZOO)))
    enc.add_argument("--quality", type=int, metavar="Q",
                     help=f"1 (smallest) … 8 (best); CompressAI's λ for that quality (default {DEFAULT_QUALITY})")
    enc.add_argument("--weights", metavar="FILE", help="exported weights (attncomp-train's weights.pt) instead of the zoo")
    enc.add_argument("--tile", type=int, default=DEFAULT_TILE, metavar="PX",
                     help=f"tile side for large images (default {DEFAULT_TILE})")
    enc.add_argument("--refine", type=non_negative, default=0, metavar="STEPS",
                     help="optimise the latents for this image (e.g. 50): smaller files at the same quality, "
                     "slower encoding, same decoder (default 0)")
    enc.add_argument("--force", action="store_true", help="overwrite an existing output")
    enc.set_defaults(run=cmd_encode)

    dec = commands.add_parser("decode", help="decompress a stream into an image")
    dec.add_argument("input", help="stream file, or - for stdin")
    dec.add_argument("output", help="image file (format from the extension), or - for PNG on stdout")
    dec.add_argument("--weights", metavar="FILE", help="the weights file the stream was encoded with, if not bundled")
    dec.add_argument("--format", help="image format when the extension does not tell (PNG, WEBP, JPEG…)")
    dec.add_argument("--force", action="store_true", help="overwrite an existing output")
    dec.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="describe a stream without decoding it")
    info.add_argument("input", help="stream file, or - for stdin")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (AttncompError, ValueError, OSError) as exc:  # OSError: e.g. a closed stdout pipe
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
