"""Peak memory of encoding and decoding a very large image, tiled, against a 1-megapixel image.

Each measurement runs in a fresh process (peak RSS from getrusage). ``--refine STEPS`` also
measures the 1-megapixel image with encoder-side refinement (backpropagation keeps
activations; the peak does not grow with the number of steps).

    python benchmarks/large_image_memory.py [--size 8000x6000] [--weights FILE] [--refine 2]
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def child(width, height, weights, tile, refine):
    import numpy as np

    from attncomp.codec import decode, encode
    from attncomp.models import load, load_weights

    model = load_weights(weights) if weights else load("attn-hyperprior", 3)
    yy, xx = np.mgrid[0:height, 0:width]
    image = (128 + 60 * np.sin(xx / 37.0)[..., None] * np.cos(yy / 23.0)[..., None] * np.ones(3)).astype(np.uint8)
    start = time.perf_counter()
    data = encode(image, model, tile_size=tile, refine_steps=refine)
    encoded = time.perf_counter() - start
    start = time.perf_counter()
    decode(data, model)
    print(json.dumps(dict(peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          encode_s=encoded, decode_s=time.perf_counter() - start, bytes=len(data))))


def measure(width, height, weights, tile, refine=0):
    cmd = [sys.executable, __file__, "--child", f"{width}x{height}", "--tile", str(tile), "--refine", str(refine)]
    if weights:
        cmd += ["--weights", weights]
    return json.loads(subprocess.run(cmd, capture_output=True, check=True, text=True).stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="8000x6000")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--weights")
    parser.add_argument("--refine", type=int, default=0, help="also measure 1024x1024 refined with this many steps")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        width, height = map(int, args.child.split("x"))
        return child(width, height, args.weights, args.tile, args.refine)
    width, height = map(int, args.size.split("x"))
    small = measure(1024, 1024, args.weights, args.tile)
    large = measure(width, height, args.weights, args.tile)
    for name, r in (("1024x1024", small), (args.size, large)):
        print(f"{name}: peak {r['peak_mb']:.0f} MB, encode {r['encode_s']:.1f} s, decode {r['decode_s']:.1f} s")
    print(f"peak memory ratio {args.size} / 1024x1024: {large['peak_mb'] / small['peak_mb']:.2f}x "
          f"for {width * height / 1024**2:.0f}x the pixels")
    if args.refine:
        refined = measure(1024, 1024, args.weights, args.tile, args.refine)
        print(f"1024x1024 with --refine {args.refine}: peak {refined['peak_mb']:.0f} MB, "
              f"{refined['peak_mb'] / small['peak_mb']:.2f}x the plain encoder's")


if __name__ == "__main__":
    main()
