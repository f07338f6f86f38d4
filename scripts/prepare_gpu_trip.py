"""Prepare what a GPU round needs beside the code, in the git-ignored .trip/ (carry it along).

    python scripts/prepare_gpu_trip.py [--data ../shared/data/train]

.trip/wheels/  the packages the GPU machine lacks (compressai, jsonargparse, pytorch-msssim and
               what they need), for its Python 3.12 on x86-64; compressai's compiled parts use
               no numpy C API, so it runs on that machine's numpy 2 although its metadata pins < 2
.trip/data/    the training images as lossy WebP (quality 95, long side ≤ 512 px): the
               originals (176 MB) do not fit the 64 MiB a trip may carry. pack.json says what
               the pack costs: its size and its PSNR against the resized originals

The weights a round starts from travel as tracked files: the ablation's in results/ablation/weights
(scripts/keep_weights.py puts a round's returned weights there), the bundled ones for a finetune round.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from attncomp.evaluation.metrics import psnr

WHEELS = ["compressai==1.2.8", "jsonargparse==4.53.0", "docstring-parser==0.18.0", "typeshed-client==2.15.0",
          "pytorch-msssim==1.0.0"]
PLATFORMS = ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def download_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--implementation", "cp", *platforms, "--platform", "any",
         "-d", str(folder), *WHEELS],
        check=True,
    )


def pack_image(path: Path, long_side: int, quality: int) -> tuple[bytes, float]:
    """The image resized (Lanczos) to at most ``long_side`` and WebP-coded; and its PSNR against the resized image."""
    image = Image.open(path).convert("RGB")
    scale = long_side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=6)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return buffer.getvalue(), psnr(np.asarray(image), decoded)


def make_pack(source: Path, folder: Path, long_side: int, quality: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    psnrs, total = [], 0
    for path in sorted(p for p in source.iterdir() if p.suffix.lower() in {".png", ".webp", ".jpg", ".jpeg"}):
        data, psnr = pack_image(path, long_side, quality)
        (folder / f"{path.stem}.webp").write_bytes(data)
        psnrs.append(psnr)
        total += len(data)
    return dict(images=len(psnrs), mebibytes=round(total / 2**20, 2), long_side=long_side, webp_quality=quality,
                psnr_mean_db=round(float(np.mean(psnrs)), 2), psnr_min_db=round(float(np.min(psnrs)), 2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    parser.add_argument("--trip", type=Path, default=Path(".trip"))
    parser.add_argument("--long-side", type=int, default=512)
    parser.add_argument("--quality", type=int, default=95)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"no training images at {args.data}")
    download_wheels(args.trip / "wheels")
    if not (args.trip / "pack.json").is_file():
        summary = make_pack(args.data, args.trip / "data", args.long_side, args.quality)
        (args.trip / "pack.json").write_text(json.dumps(summary, indent=1) + "\n")
    print((args.trip / "pack.json").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
