"""Encode/decode time of attncomp against CompressAI's ScaleHyperprior of the same N/M, same run
(``MeanScaleHyperprior`` for a mean-scale model: see ``common.compressai_reference``).

The CompressAI model gets attncomp's weights for every layer the two share, and is run
the way CompressAI's own evaluation runs it (eval mode, no_grad, float h_s, the whole image). It codes
attncomp's own latents (:func:`common.reference_stream`), so both decode the same rate; its encode time
includes attncomp's g_a and h_a, so the encode ratio is that of the coding path. attncomp
runs its real path: the container, exact fixed-point h_s, the extra attention blocks
and the post-filter; its decode is timed at each synthesis precision: ``float32``, ``mixed`` (the
default: a residual post-filter's correction in bf16) and ``bf16`` (g_s and the post-filter under bf16
autocast), the last two where this CPU has fast bf16 kernels, with their PSNR change against float32.
Pillow codecs are timed for context. Ratios > 1 mean slower.

``--reuse-freed-memory`` runs both sides with the allocator setting attncomp-codec uses
(:func:`attncomp.cli.reuse_freed_memory`): CompressAI's whole-image activations then are
not page-faulted in afresh on every layer either, which helps it more than attncomp's bands.

    python benchmarks/codec_speed.py [--weights FILE] [--limit N] [--repeats R] [--reuse-freed-memory]
"""

import numpy as np
import torch
from common import best_times, compressai_reference, model_from, parser, reference_stream

from attncomp import image as imageio
from attncomp.catalog import SYNTHESIS_PRECISIONS as PRECISIONS
from attncomp.cli import reuse_freed_memory
from attncomp.codec import decode, encode
from attncomp.evaluation.anchors import roundtrip
from attncomp.evaluation.metrics import psnr


def main():
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=3, help="timings per image and side, taken in turns")
    p.add_argument("--reuse-freed-memory", action="store_true", help="both sides with the CLI's allocator setting")
    args = p.parse_args()
    if args.reuse_freed_memory and not reuse_freed_memory():
        raise SystemExit("this C library has no mallopt: nothing to set")
    model = model_from(args)
    net = model.network
    reference = compressai_reference(net, model.quality)
    paths = imageio.list_images(args.images)[: args.limit]
    rows, psnr_change = [], {p: [] for p in PRECISIONS[1:]}
    for path in paths:
        image = imageio.open_image(path)
        x = imageio.pad_to_multiple(imageio.to_tensor(image), 64)
        coded = reference_stream(reference, net, x)
        data = encode(image, model)

        def reference_encode():
            reference_stream(reference, net, x)

        def reference_decode():
            with torch.no_grad():
                reference.decompress(coded["strings"], coded["shape"])

        encodes = best_times({"reference": reference_encode, "ours": lambda: encode(image, model)}, args.repeats)
        decodes = best_times({"reference": reference_decode, **{
            precision: lambda precision=precision: decode(data, model, precision=precision) for precision in PRECISIONS
        }}, args.repeats)  # fmt: skip
        original = np.asarray(image.convert("RGB"))
        quality = {p: psnr(original, np.asarray(decode(data, model, precision=p).convert("RGB"))) for p in PRECISIONS}
        for p in PRECISIONS[1:]:
            psnr_change[p].append(quality[p] - quality["float32"])
        jpeg = roundtrip(image, "jpeg", 75)
        webp = roundtrip(image, "webp", 75)
        rows.append((encodes["reference"], decodes["reference"], encodes["ours"], *(decodes[p] for p in PRECISIONS),
                     jpeg[2], jpeg[3], webp[2], webp[3]))  # fmt: skip
        print(f"{path.name}: compressai {encodes['reference']:.3f}/{decodes['reference']:.3f} s, attncomp encode "
              f"{encodes['ours']:.3f} s, decode " + ", ".join(f"{decodes[p]:.3f} s {p}" for p in PRECISIONS))
    m = np.mean(rows, axis=0)
    allocator = "the CLI's allocator setting" if args.reuse_freed_memory else "glibc's default allocator"
    print(f"\n{len(paths)} images, {torch.get_num_threads()} threads, {allocator}, model N={net.N} M={net.M}")
    print(f"CompressAI {type(reference).__name__}: encode {m[0]:.3f} s, decode {m[1]:.3f} s per image")
    print(f"attncomp {model.name}: encode {m[2]:.3f} s ({m[2] / m[0]:.2f}x compressai)")
    for i, precision in enumerate(PRECISIONS):
        actual = model.synthesis_precision(precision)
        change = "" if precision == "float32" else (
            f", PSNR {np.mean(psnr_change[precision]):+.4f} dB against float32 (from "
            f"{min(psnr_change[precision]):+.4f} to {max(psnr_change[precision]):+.4f})")
        ran = "" if actual == precision else f" (runs as {actual} on this model and CPU)"
        print(f"  decode {precision:7}{ran}: {m[3 + i]:.3f} s per image, {m[3 + i] / m[1]:.2f}x compressai{change}")
    print(f"Pillow JPEG q75 {m[6]*1e3:.1f}/{m[7]*1e3:.1f} ms, WebP q75 {m[8]*1e3:.1f}/{m[9]*1e3:.1f} ms (context)")


if __name__ == "__main__":
    main()
