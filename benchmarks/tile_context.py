"""What tile context buys: the same images coded in tiles alone, in tiles with context, and as one tile.

For each quality of the bundled model: bpp (real files) and PSNR averaged over the images, for
512- and 256-px tiles (``--tiles``) coded alone (context 0, what streams before version 3 hold)
and with context (attncomp.codec.tiles.CONTEXT), and for one tile per image (no borders at
all). Then the BD-rate of each against tiles alone (negative: fewer bits at equal PSNR) and the
encode and decode time with context against without (best of ``--repeats``, in turns).

    python benchmarks/tile_context.py [--images DIR] [--limit N] [--qualities 1 3 5 7] [--tiles 512 256]
"""

import numpy as np
import torch
from common import best_times, parser

from attncomp import image as imageio
from attncomp.codec import decode, encode
from attncomp.codec.tiles import CONTEXT
from attncomp.evaluation.bdrate import bd_rate
from attncomp.evaluation.metrics import psnr
from attncomp.models import load

WHOLE = 4096  # one tile for any image the benchmark reads


def main():
    p = parser(__doc__)
    p.add_argument("--qualities", type=int, nargs="+", default=[1, 3, 5, 7])
    p.add_argument("--tiles", type=int, nargs="+", default=[512, 256])
    p.add_argument("--repeats", type=int, default=2, help="timings per image and setting, taken in turns")
    args = p.parse_args()
    images = [imageio.open_image(path) for path in imageio.list_images(args.images)[: args.limit]]
    settings = [(tile, context) for tile in args.tiles for context in (0, CONTEXT)] + [(WHOLE, 0)]
    curves = {setting: ([], []) for setting in settings}  # (bpp, psnr) per quality
    times = {(tile, side): {0: [], CONTEXT: []} for tile in args.tiles for side in ("encode", "decode")}
    for quality in args.qualities:
        model = load(args.model, quality)
        points = {setting: [] for setting in settings}
        for image in images:
            original = np.asarray(image.convert("RGB"))
            streams = {(tile, context): encode(image, model, tile_size=tile, context=context)
                       for tile, context in settings}  # fmt: skip
            for setting, data in streams.items():
                decoded = np.asarray(decode(data, model).convert("RGB"))
                points[setting].append((8 * len(data) / (image.width * image.height), psnr(original, decoded)))
            for tile in args.tiles:
                coding = {}
                for context in (0, CONTEXT):
                    coding["encode", context] = lambda t=tile, c=context: encode(image, model, tile_size=t, context=c)
                    coding["decode", context] = lambda data=streams[tile, context]: decode(data, model)
                for (side, context), seconds in best_times(coding, args.repeats).items():
                    times[tile, side][context].append(seconds)
        for setting in settings:
            bpp, quality_db = np.mean(points[setting], axis=0)
            curves[setting][0].append(bpp)
            curves[setting][1].append(quality_db)
            print(f"q{quality} {label(setting)}: {bpp:.4f} bpp, {quality_db:.3f} dB")
    print(f"\n{len(images)} images from {args.images}, qualities {args.qualities}, {torch.get_num_threads()} threads")
    for tile in args.tiles:
        alone = curves[tile, 0]
        for setting in ((tile, CONTEXT), (WHOLE, 0)):
            print(f"BD-rate of {label(setting)} against {label((tile, 0))}: {bd_rate(*alone, *curves[setting]):+.2f}%")
        for side in ("encode", "decode"):
            ratio = np.sum(times[tile, side][CONTEXT]) / np.sum(times[tile, side][0])
            print(f"{side} time with context, {tile}-px tiles: {ratio:.2f}x without")


def label(setting) -> str:
    tile, context = setting
    return "one tile" if tile == WHOLE else f"{tile}-px tiles, context {context}"


if __name__ == "__main__":
    main()
