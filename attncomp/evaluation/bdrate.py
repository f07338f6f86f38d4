"""BD-rate through the maintained ``bjontegaard`` package (piecewise cubic, pchip)."""

from __future__ import annotations

import math
import warnings

import bjontegaard
import numpy as np


MIN_OVERLAP = 0.5
"""The share of the narrower curve's quality range both curves must cover: an average over a sliver of it
would speak for points the other curve never reaches."""


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality) -> float:
    """Average bitrate change (%) of test against anchor at equal quality; NaN without enough overlap.

    Negative means the test codec needs fewer bits. Points are sorted by
    rate and kept where quality increases; each curve needs two points and
    their quality ranges must share at least :data:`MIN_OVERLAP` of the narrower one.
    """
    a = _curve(anchor_rate, anchor_quality)
    t = _curve(test_rate, test_quality)
    if a is None or t is None:
        return math.nan
    low, high = max(a[1].min(), t[1].min()), min(a[1].max(), t[1].max())
    narrower = min(np.ptp(a[1]), np.ptp(t[1]))
    if low >= high or high - low < MIN_OVERLAP * narrower:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bjontegaard.bd_rate(a[0], a[1], t[0], t[1], method="pchip", require_matching_points=False))


def _curve(rate, quality):
    points = sorted((r, q) for r, q in zip(rate, quality) if math.isfinite(r) and math.isfinite(q) and r > 0)
    if len(points) < 2:
        return None
    rate, quality = map(np.asarray, zip(*points))
    if np.any(np.diff(quality) <= 0):  # keep the monotone part, as interpolation needs
        keep = [0]
        for i in range(1, len(quality)):
            if quality[i] > quality[keep[-1]]:
                keep.append(i)
        rate, quality = rate[keep], quality[keep]
    return (rate, quality) if len(rate) >= 2 else None
