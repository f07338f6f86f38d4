"""Measurements on real bitstreams: metrics, Pillow anchors, BD-rate, RD plots and the HTML report."""

from .bdrate import bd_rate
from .metrics import ms_ssim, psnr

__all__ = ["bd_rate", "ms_ssim", "psnr"]
