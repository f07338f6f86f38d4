"""Classical codecs through Pillow, measured side by side with attncomp."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image, features

# Quality sweeps that cover about 0.1–2 bpp on Kodak-like photos.
SWEEPS = {
    "jpeg": [5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 92],
    "webp": [0, 5, 10, 20, 30, 45, 60, 75, 85, 92],
    "avif": [2, 8, 15, 25, 35, 45, 55, 65, 75, 85],
    "jpeg2000": [0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0],  # target bpp
}
LABELS = {
    "jpeg": "JPEG (libjpeg-turbo, optimize)",
    "webp": "WebP (method 6)",
    "avif": "AVIF (libavif, speed 6)",
    "jpeg2000": "JPEG 2000 (OpenJPEG)",
}
_FEATURE = {"jpeg": "jpg", "webp": "webp", "avif": "avif", "jpeg2000": "jpg_2000"}


def available(codec: str) -> bool:
    return codec in SWEEPS and bool(features.check(_FEATURE[codec]))


def _save_args(codec: str, setting, channels: int) -> dict:
    if codec == "jpeg":
        return dict(format="JPEG", quality=int(setting), optimize=True, subsampling="4:2:0")
    if codec == "webp":
        return dict(format="WEBP", quality=int(setting), method=6)
    if codec == "avif":
        return dict(format="AVIF", quality=int(setting), speed=6)
    ratio = 8 * channels / float(setting)  # JPEG 2000 takes a compression ratio
    return dict(format="JPEG2000", quality_mode="rates", quality_layers=[ratio], irreversible=True, mct=int(channels == 3))


def roundtrip(image: Image.Image, codec: str, setting) -> tuple[bytes, np.ndarray, float, float]:
    """Encode and decode ``image``: (bytes, decoded uint8 array, encode s, decode s)."""
    args = _save_args(codec, setting, len(image.getbands()))
    buffer = io.BytesIO()
    start = time.perf_counter()
    image.save(buffer, **args)
    encoded = time.perf_counter() - start
    data = buffer.getvalue()
    start = time.perf_counter()
    with Image.open(io.BytesIO(data)) as decoded_image:
        decoded = np.asarray(decoded_image.convert(image.mode))
    return data, decoded, encoded, time.perf_counter() - start
