"""Distortion metrics on 8-bit images, as the papers report them."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

from ..models.rd import MS_SSIM_MIN_SIDE, mse_from_psnr, objective


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB over all channels of two uint8 images; ``inf`` when they are identical."""
    if reference.shape != decoded.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {decoded.shape}")
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def rd_objective(lmbda: float, bpp: float, psnr_db: float) -> float:
    """λ·255²·MSE + bpp, the loss the models train on, from a point's bpp and its PSNR over 8-bit RGB."""
    return objective(lmbda, mse_from_psnr(psnr_db), bpp)


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM (RGB, data range 255); NaN for images too small for five scales."""
    if reference.shape != decoded.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {decoded.shape}")
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan

    def tensor(a):
        a = a if a.ndim == 3 else a[..., None]
        return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]

    return float(_ms_ssim(tensor(reference), tensor(decoded), data_range=255.0))


def mean_over_all(values) -> float:
    """Mean over every image, or NaN if any value is not finite (an identical image's infinite PSNR, MS-SSIM of
    an image too small for it): a point's quality must average the same images as its rate, the mean of all."""
    values = list(values)
    return float(np.mean(values)) if values and all(math.isfinite(v) for v in values) else math.nan
