"""Published rate–distortion curves (CompressAI's results files) to compare against."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import AttncompError


def default_dir() -> Path:
    """``$ATTNCOMP_REFERENCE``, else the workspace's ``../shared/reference/compressai-kodak`` (read when called)."""
    return Path(os.environ.get("ATTNCOMP_REFERENCE", "../shared/reference/compressai-kodak"))


# file stem -> label; the curves named in the BD-rate table
PUBLISHED = {
    "compressai-bmshj2018-hyperprior_mse_cpu": "bmshj2018-hyperprior (CompressAI, published)",
    "compressai-cheng2020-attn_mse_cpu": "cheng2020-attn (CompressAI, published)",
    "bpg_444_x265_ycbcr": "BPG 4:4:4 (published)",
    "vtm": "VTM (published)",
}


def is_kodak(names) -> bool:
    return sorted(names) == [f"kodim{i:02d}" for i in range(1, 25)]


def load_published(folder=None) -> dict:
    """label -> list of points {bpp, psnr, ms_ssim}, sorted by rate; empty if the folder is absent."""
    curves = {}
    folder = Path(folder) if folder is not None else default_dir()
    for stem, label in PUBLISHED.items():
        path = folder / f"{stem}.json"
        if not path.is_file():
            continue
        try:
            results = json.loads(path.read_text())["results"]
            psnr = results.get("psnr-rgb", results.get("psnr"))
            ms = results.get("ms-ssim-rgb", results.get("ms-ssim", [float("nan")] * len(results["bpp"])))
            points = [dict(bpp=float(b), psnr=float(p), ms_ssim=float(m)) for b, p, m in zip(results["bpp"], psnr, ms)]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: bad JSON
            raise AttncompError(f"{path} is not a CompressAI results file ({type(exc).__name__}: {exc})") from None
        curves[label] = sorted(points, key=lambda p: p["bpp"])
    return curves
