"""Decode time with the post-filter run in bands of rows (the default) against one pass per tile, same run.

Both decode the same real streams; the bands read 3 rows of context either side, so the decoded
images should match (the largest pixel difference is printed: float summation order may move a
rounding). Ratios < 1 mean the bands are faster.

    python benchmarks/postfilter_bands.py [--weights FILE] [--quality Q] [--limit N]
"""

import time

import numpy as np
import torch
from common import model_from, parser

from attncomp import image as imageio
from attncomp.codec import decode, encode
from attncomp.models import layers


def timed_decode(data, model, band_pixels: int):
    layers.BAND_PIXELS = band_pixels
    start = time.perf_counter()
    image = decode(data, model)
    return time.perf_counter() - start, np.asarray(image, dtype=np.int16)


def main():
    args = parser(__doc__).parse_args()
    model = model_from(args)
    if model.quality is None and model.variable_rate:
        model = model.at(args.quality)
    banded = layers.BAND_PIXELS
    one_pass = 1 << 62  # no image is that large: every tile is filtered whole
    rows = []
    for path in imageio.list_images(args.images)[: args.limit]:
        data = encode(imageio.open_image(path), model)
        times = {banded: [], one_pass: []}
        for _ in range(2):  # alternately, so that a busy moment of the machine hits both
            for setting in times:
                seconds, pixels = timed_decode(data, model, setting)
                times[setting].append(seconds)
                if setting == banded:
                    banded_pixels = pixels
                else:
                    difference = int(np.abs(pixels - banded_pixels).max())
        rows.append((min(times[banded]), min(times[one_pass]), difference))
        print(f"{path.name}: bands {rows[-1][0]:.3f} s, one pass {rows[-1][1]:.3f} s, largest pixel difference {difference}")
    layers.BAND_PIXELS = banded
    m = np.mean(rows, axis=0)
    print(f"\n{len(rows)} images, {torch.get_num_threads()} threads, {model.name}")
    print(f"decode: bands {m[0]:.3f} s, one pass {m[1]:.3f} s per image, ratio {m[0] / m[1]:.2f}x")
    print(f"largest pixel difference: {int(max(r[2] for r in rows))}")


if __name__ == "__main__":
    main()
