"""Encode/decode time of attncomp against CompressAI's ScaleHyperprior of the same N/M, same run
(``MeanScaleHyperprior`` for a mean-scale model: see ``common.compressai_reference``).

The CompressAI model gets attncomp's weights for every layer the two share, and is run
the way CompressAI's own evaluation runs it (eval mode, no_grad, float h_s, the whole image). It codes
attncomp's own latents (:func:`common.reference_stream`), so both decode the same rate; its encode time
includes attncomp's g_a and h_a, so the encode ratio is that of the coding path. attncomp
runs its real path: the container, exact fixed-point h_s, the extra attention blocks
and the post-filter; its decode is timed in float32 and with ``bf16=True`` (synthesis
under bf16 autocast where this CPU has fast bf16 kernels), whose PSNR change is printed
too. Pillow codecs are timed for context. Ratios > 1 mean slower.

``--reuse-freed-memory`` runs both sides with the allocator setting attncomp-codec uses
(:func:`attncomp.cli.reuse_freed_memory`): CompressAI's whole-image activations then are
not page-faulted in afresh on every layer either, which helps it more than attncomp's bands.

    python benchmarks/codec_speed.py [--weights FILE] [--limit N] [--repeats R] [--reuse-freed-memory]
"""

import numpy as np
import torch
from common import best_times, compressai_reference, model_from, parser, reference_stream

from attncomp import image as imageio
from attncomp.cli import reuse_freed_memory
from attncomp.codec import decode, encode
from attncomp.evaluation.anchors import roundtrip
from attncomp.evaluation.metrics import psnr
from attncomp.models.layers import bfloat16_is_fast


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
    rows, psnr_change = [], []
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
        decodes = best_times({
            "reference": reference_decode,
            "ours": lambda: decode(data, model),
            "ours bf16": lambda: decode(data, model, bf16=True),
        }, args.repeats)  # fmt: skip
        ref_enc, ours_enc = encodes["reference"], encodes["ours"]
        ref_dec, ours_dec, bf16_dec = decodes["reference"], decodes["ours"], decodes["ours bf16"]
        original = np.asarray(image.convert("RGB"))
        psnr_change.append(psnr(original, np.asarray(decode(data, model, bf16=True).convert("RGB")))
                           - psnr(original, np.asarray(decode(data, model).convert("RGB"))))
        jpeg = roundtrip(image, "jpeg", 75)
        webp = roundtrip(image, "webp", 75)
        rows.append((ref_enc, ref_dec, ours_enc, ours_dec, jpeg[2], jpeg[3], webp[2], webp[3], bf16_dec))
        print(f"{path.name}: compressai {ref_enc:.3f}/{ref_dec:.3f} s, "
              f"attncomp {ours_enc:.3f}/{ours_dec:.3f} s (bf16 decode {bf16_dec:.3f} s)")
    m = np.mean(rows, axis=0)
    allocator = "the CLI's allocator setting" if args.reuse_freed_memory else "glibc's default allocator"
    print(f"\n{len(paths)} images, {torch.get_num_threads()} threads, {allocator}, model N={net.N} M={net.M}")
    print(f"CompressAI {type(reference).__name__}: encode {m[0]:.3f} s, decode {m[1]:.3f} s per image")
    print(f"attncomp {model.name}:   encode {m[2]:.3f} s, decode {m[3]:.3f} s per image")
    print(f"Pillow JPEG q75 {m[4]*1e3:.1f}/{m[5]*1e3:.1f} ms, WebP q75 {m[6]*1e3:.1f}/{m[7]*1e3:.1f} ms (context)")
    print(f"ratio attncomp/compressai: encode {m[2] / m[0]:.2f}x, decode {m[3] / m[1]:.2f}x")
    fast = "bf16" if bfloat16_is_fast(model.device) else "float32: this CPU has no fast bf16"
    print(f"attncomp decode with bf16=True ({fast}): {m[8]:.3f} s per image, {m[8] / m[1]:.2f}x compressai, "
          f"PSNR {np.mean(psnr_change):+.3f} dB (from {min(psnr_change):+.3f} to {max(psnr_change):+.3f})")


if __name__ == "__main__":
    main()
