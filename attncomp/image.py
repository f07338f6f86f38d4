"""Image I/O shared by the codec, training and evaluation: Pillow in, 8-bit tensors out.

Every input is normalised the same way: EXIF orientation applied, 16-bit
samples reduced to 8 bits, palette and CMYK converted, alpha dropped (the
codec codes colour only). What remains is ``"L"`` or ``"RGB"``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .files import read_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".avif")
ORIENTATION = 0x0112  # the EXIF tag
DEFAULT_MAX_PIXELS = 200_000_000  # the largest image (width × height) opened or decoded unless told otherwise


def check_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"image size {width}×{height} is empty")
    if width * height > max_pixels:
        raise ImageError(f"image of {width}×{height} pixels exceeds the limit of {max_pixels} pixels")


def open_image(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A path, bytes, file object, PIL image or HxW[xC] uint8 array as an ``L`` or ``RGB`` image.

    Files are also subject to Pillow's own decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``,
    the caller's to set): attncomp does not change it.
    """
    if isinstance(source, Image.Image):  # transposed as a copy: the caller's image stays as it is
        image = ImageOps.exif_transpose(source) if source.getexif().get(ORIENTATION, 1) != 1 else source
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image = _read(source, max_pixels)
    check_size(*image.size, max_pixels)
    return normalise_mode(image)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError("arrays must be uint8 of shape H×W, H×W×1, H×W×3 or H×W×4")
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def _read(source, max_pixels: int) -> Image.Image:
    name = "input"
    if isinstance(source, (str, Path)):
        name, source = str(source), read_bytes(source, ImageError)
    try:
        buffer = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else None
        image = Image.open(buffer or source)
        check_size(*image.size, max_pixels)
        image.load()
        if buffer is not None:
            buffer.close()  # PNG and TIFF images keep their file object: release the compressed bytes now
        ImageOps.exif_transpose(image, in_place=True)  # not a copy: that would hold a photo's pixels twice
        return image
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageError(
            f"{name} exceeds Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS} pixels; "
            "raise PIL.Image.MAX_IMAGE_PIXELS to open it"
        ) from None
    except ImageError:
        raise
    except Exception as exc:  # a broken file can fail anywhere in Pillow's decoders and EXIF parser
        raise ImageError(f"cannot decode {name}: {exc}") from None


def normalise_mode(image: Image.Image) -> Image.Image:
    """``L`` for single-channel images, ``RGB`` for everything else."""
    if image.mode == "F":  # its range (0…1? 0…255? HDR?) is not in the file: converting would guess
        raise ImageError("floating-point images are not supported: save the image with 8 or 16 bits per sample")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # in place on one int32 array: 4 bytes a pixel at most, not several int64 temporaries
        array = np.array(image, dtype=np.int32)
        scale = 257 if image.mode.startswith("I;16") or array.max() > 255 else 1
        np.clip(array, 0, 65535, out=array)  # no overflow below; outside 0…65535 clips to 0 or 255 either way
        array += scale // 2
        array //= scale
        return Image.fromarray(np.clip(array, 0, 255, out=array).astype(np.uint8), "L")
    if image.mode in ("1", "L", "LA"):
        return image.convert("L")
    if image.mode == "RGB":
        return image
    return image.convert("RGBA").convert("RGB") if image.mode == "P" else image.convert("RGB")


def to_uint8_tensor(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """C×H×W uint8, with ``channels`` (1 or 3) colour channels."""
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def to_tensor(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """1×C×H×W float32 in [0, 1], with ``channels`` (1 or 3) colour channels."""
    return to_uint8_tensor(image, channels).unsqueeze(0).float().div_(255)


def tile_to_tensor(image: Image.Image, box: tuple[int, int, int, int], channels: int = 3) -> torch.Tensor:
    """The tile ``box`` = (top, left, height, width) of ``image`` as :func:`to_tensor` gives it.

    Equal to cropping ``to_tensor(image)`` (mode conversion is per pixel), but only the
    tile becomes float32: a 48-megapixel photo would take 576 MB as one float tensor.
    """
    top, left, height, width = box
    return to_tensor(image.crop((left, top, left + width, top + height)), channels)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom and right edges up to a multiple of ``multiple`` (cropped after decoding)."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if not (pad_h or pad_w):
        return x
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """1×C×H×W in [0, 1] → H×W×C uint8, rounded."""
    return x.squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def to_image(x: torch.Tensor, mode: str = "RGB") -> Image.Image:
    """A decoded tensor as a PIL image in ``mode`` (``L`` or ``RGB``)."""
    array = to_uint8(x)
    image = Image.fromarray(array[..., 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")
    return image.convert(mode)


def list_images(folder, include: Optional[set] = None, exclude: set = frozenset()) -> list[Path]:
    """Image files below ``folder``, recursively, in a stable order; ``include``/``exclude`` select them
    by file stem (a split, :func:`read_split`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"not a directory: {folder}")
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and p.stem not in exclude and (include is None or p.stem in include)
    )  # fmt: skip


def read_split(path) -> set[str]:
    """The image stems a split file lists (``configs/validation_split.txt``): one a line, ``#`` comments."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ImageError(f"cannot read the split file {path}: {exc.strerror or exc}") from None
    return {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
