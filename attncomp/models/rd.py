"""The rate–distortion maths every part of attncomp shares: bits, the loss, λ ↔ quality.

CompressAI's convention: J = λ·255²·MSE + bpp, with MSE over [0, 1] pixels,
and its qualities 1–8 are the λs of :data:`attncomp.catalog.COMPRESSAI_LAMBDAS`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..catalog import COMPRESSAI_LAMBDAS

MS_SSIM_MIN_SIDE = 161  # MS-SSIM's five scales of an 11-pixel window need at least this many pixels


def bits(likelihoods: dict) -> torch.Tensor:
    """Estimated bits of every latent together: −Σ log2 p."""
    return sum(-torch.log2(lk).sum() for lk in likelihoods.values())


def bits_per_image(likelihoods: dict) -> torch.Tensor:
    """Estimated bits of each image of a batch, shape (B,)."""
    return sum(-torch.log2(lk).flatten(1).sum(dim=1) for lk in likelihoods.values())


def objective(lmbda, mse, bpp):
    """J = λ·255²·MSE + bpp (floats or tensors; MSE of [0, 1] pixels)."""
    return lmbda * 255**2 * mse + bpp


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of an MSE of [0, 1] pixels (a zero MSE counts as 10⁻¹⁰: 100 dB, not infinity)."""
    return -10 * torch.log10(mse.clamp_min(1e-10))


def mse_from_psnr(psnr_db: float) -> float:
    """The MSE of [0, 1] pixels at ``psnr_db``."""
    return 10 ** (-psnr_db / 10)


def quality_for_lambda(lmbda: float) -> Optional[int]:
    """CompressAI's quality trained at ``lmbda``, or None for any other λ."""
    return next((q for q, v in COMPRESSAI_LAMBDAS.items() if math.isclose(v, lmbda, rel_tol=1e-9)), None)
