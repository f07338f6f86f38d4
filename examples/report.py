"""Print what `make demo` achieved: file size, bpp, PSNR and MS-SSIM, next to JPEG at the same size.

    python examples/report.py ORIGINAL STREAM DECODED
"""

import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit notices from CompressAI's import

from attncomp.codec import unpack  # noqa: E402
from attncomp.evaluation import ms_ssim, psnr  # noqa: E402
from attncomp.evaluation.anchors import roundtrip  # noqa: E402


def main(original_path, stream_path, decoded_path):
    original = Image.open(original_path).convert("RGB")
    reference = np.asarray(original)
    data = Path(stream_path).read_bytes()
    header = unpack(data)
    decoded = np.asarray(Image.open(decoded_path).convert("RGB"))
    pixels = original.width * original.height
    bpp = 8 * len(data) / pixels
    print(f"attncomp  {header.model} q{header.quality:g}: {len(data):7d} bytes  {bpp:.3f} bpp  "
          f"PSNR {psnr(reference, decoded):.2f} dB  MS-SSIM {ms_ssim(reference, decoded):.4f}")
    # JPEG at the largest quality whose file is no bigger than ours, for context
    best = None
    for quality in range(1, 96):
        jpeg, jpeg_decoded, *_ = roundtrip(original, "jpeg", quality)
        if len(jpeg) > len(data):
            break
        best = (quality, jpeg, jpeg_decoded)
    if best:
        quality, jpeg, jpeg_decoded = best
        print(f"JPEG      quality {quality:2d}:        {len(jpeg):7d} bytes  {8 * len(jpeg) / pixels:.3f} bpp  "
              f"PSNR {psnr(reference, jpeg_decoded):.2f} dB  MS-SSIM {ms_ssim(reference, jpeg_decoded):.4f}")
    print(f"decoded image: {decoded_path}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
