"""Helpers the tests share: tiny model sizes and generated photo-like images."""

import numpy as np
import torch

TINY = dict(N=16, M=24, postfilter_channels=8, reduction=4)


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients plus a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [
        128 + 100 * np.sin(xx / (7 + 3 * c) + c) * np.cos(yy / (11 + 2 * c)) + rng.normal(0, 4, (height, width))
        for c in range(channels)
    ]
    array = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    return array[..., 0] if channels == 1 else array


def with_one_thread(fn, *args):
    """``fn(*args)`` computed with a single intra-op thread (another summation order)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        return fn(*args)
    finally:
        torch.set_num_threads(threads)
