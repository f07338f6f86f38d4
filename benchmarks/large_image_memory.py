"""Peak memory (RSS) of encoding and of decoding 1, 12 and 48-megapixel images, against importing torch.

Each measurement runs in a fresh process and reads its own peak RSS from getrusage, so
encode and decode are measured separately, from a JPEG file and a stream file as the
command line codes them, and everything the process ever held counts (imports, model,
Pillow's decoded image, the codec). The first line is the floor: a process that only
imports torch and compressai. The parent imports neither and has the test images written
by a child too: Linux carries the parent's RSS at fork into the child's ru_maxrss, so a
large parent would raise every figure. ``--refine STEPS`` also measures encoding the
first size with encoder-side refinement (backpropagation keeps activations; the peak
does not grow with the number of steps).

    python benchmarks/large_image_memory.py [--sizes 1024x1024 4000x3000 8000x6000] [--tile 512]
                                            [--model NAME | --weights FILE] [--refine 2]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attncomp.catalog import DEFAULT_MODEL


BASELINE = "import torch, compressai"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def load_model(weights, model_name):
    from attncomp.models import load, load_weights

    return load_weights(weights) if weights else load(model_name, 3)


def child_encode(image_path, stream_path, weights, model_name, tile, refine):
    from attncomp.cli.codec import prepare_process_for_coding
    from attncomp.codec import DEFAULT_TILE, encode

    prepare_process_for_coding()  # as attncomp-codec runs: Pillow's limit, freed blocks reused
    model = load_model(weights, model_name)
    tile = tile or DEFAULT_TILE
    start = time.perf_counter()
    data = encode(image_path, model, tile_size=tile, refine_steps=refine)
    seconds = time.perf_counter() - start
    Path(stream_path).write_bytes(data)
    return dict(peak_mb=peak_mb(), seconds=seconds, bytes=len(data), tile=tile)


def child_decode(stream_path, weights, model_name):
    from attncomp.cli.codec import prepare_process_for_coding
    from attncomp.codec import decode

    prepare_process_for_coding()
    model = load_model(weights, model_name)
    start = time.perf_counter()
    image = decode(stream_path, model)
    return dict(peak_mb=peak_mb(), seconds=time.perf_counter() - start, size=list(image.size))


def child_write(size, image_path):
    """A photo-sized JPEG of a smooth test pattern (its content matters to the rate, not to memory)."""
    import numpy as np
    from PIL import Image

    width, height = map(int, size.split("x"))
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    planes = [(128 + 90 * np.sin(x / (37 + 9 * c) + c) * np.cos(y / (23 + 5 * c))).astype(np.uint8) for c in range(3)]
    Image.fromarray(np.stack(planes, axis=-1)).save(image_path, quality=92)
    return {}


def run_child(*args):
    cmd = [sys.executable, __file__, "--child", *map(str, args)]
    return json.loads(subprocess.run(cmd, capture_output=True, check=True, text=True).stdout.strip().splitlines()[-1])


def measure(size, folder, model_options, tile, refine=0, decode=True):
    """Peak RSS and time of encoding ``size`` (and decoding it); ``model_options``: the children's --model/--weights."""
    image_path, stream_path = Path(folder) / f"{size}.jpg", Path(folder) / f"{size}.atc"
    if not image_path.exists():
        run_child("write", size, image_path)
    encoded = run_child("encode", image_path, stream_path, "--tile", tile or 0, "--refine", refine, *model_options)
    return encoded, run_child("decode", stream_path, *model_options) if decode else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1024x1024", "4000x3000", "8000x6000"])
    parser.add_argument("--tile", type=int, default=None, help="encoder tile size (default: the codec's)")
    parser.add_argument("--weights", help="a fixed-rate weights file (default: --model's bundled quality 3)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo model, at quality 3 (default {DEFAULT_MODEL})")
    parser.add_argument("--refine", type=int, default=0, help="also encode the first size refined with this many steps")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *paths = args.child
        if kind == "baseline":
            exec(BASELINE)
            result = dict(peak_mb=peak_mb())
        elif kind == "write":
            result = child_write(*paths)
        elif kind == "encode":
            result = child_encode(*paths, args.weights, args.model, args.tile, args.refine)
        else:
            result = child_decode(*paths, args.weights, args.model)
        print(json.dumps(result))
        return
    model_options = ["--model", args.model] + (["--weights", args.weights] if args.weights else [])
    baseline = run_child("baseline")["peak_mb"]
    print(f"{args.weights or args.model}; `{BASELINE}`: peak {baseline:.0f} MB")
    print("| image | Mpix | peak RSS (MB): encode / decode | above the import | encode / decode (s) | bytes |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            width, height = map(int, size.split("x"))
            enc, dec = measure(size, folder, model_options, args.tile)
            print(f"| {size}, tile {enc['tile']} | {width * height / 1e6:.1f} "
                  f"| {enc['peak_mb']:.0f} / {dec['peak_mb']:.0f} "
                  f"| {enc['peak_mb'] - baseline:.0f} / {dec['peak_mb'] - baseline:.0f} "
                  f"| {enc['seconds']:.1f} / {dec['seconds']:.1f} | {enc['bytes']} |", flush=True)
        if args.refine:
            enc, _ = measure(args.sizes[0], folder, model_options, args.tile, args.refine, decode=False)
            print(f"{args.sizes[0]} with --refine {args.refine}: encode peak {enc['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
