"""The LightningDataModule: random crops from a folder of images kept in memory."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ImageError
from ..image import list_images, open_image

log = logging.getLogger(__name__)

SHARED_DATA = Path(os.environ.get("ATTNCOMP_DATA", "../shared/data"))


def _default_dir(name: str) -> Optional[str]:
    path = SHARED_DATA / name
    return str(path) if path.is_dir() else None


def load_folder(folder, channels: int = 3, min_size: int = 0) -> list[torch.Tensor]:
    """Every image below ``folder`` decoded once, as C×H×W uint8 tensors.

    Images smaller than ``min_size`` on a side are reflect-padded up to it,
    with a warning, so that every image can still give a crop.
    """
    images, padded = [], 0
    for path in list_images(folder):
        array = np.asarray(open_image(path).convert("L" if channels == 1 else "RGB"))
        tensor = torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)
        pad_h, pad_w = max(min_size - tensor.shape[1], 0), max(min_size - tensor.shape[2], 0)
        if pad_h or pad_w:
            padded += 1
            tensor = _reflect_pad(tensor, pad_h, pad_w)
        images.append(tensor.contiguous())
    if not images:
        raise ImageError(f"no images found in {folder}")
    if padded:
        log.warning("%d of %d images in %s are smaller than %d px and were padded", padded, len(images), folder, min_size)
    return images


def _reflect_pad(tensor: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    mode = "reflect" if pad_h < tensor.shape[1] and pad_w < tensor.shape[2] else "replicate"
    padded = torch.nn.functional.pad(tensor[None].float(), (0, pad_w, 0, pad_h), mode=mode)
    return padded[0].to(torch.uint8)


class RandomCrops(Dataset):
    """Random ``size``×``size`` crops with random flips; ``length`` crops per epoch."""

    def __init__(self, images: list[torch.Tensor], size: int, length: int):
        self.images, self.size, self.length = images, size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index % len(self.images)]
        top = int(torch.randint(0, image.shape[1] - self.size + 1, ()))
        left = int(torch.randint(0, image.shape[2] - self.size + 1, ()))
        crop = image[:, top : top + self.size, left : left + self.size]
        if torch.rand(()) < 0.5:
            crop = crop.flip(2)
        if torch.rand(()) < 0.5:
            crop = crop.flip(1)
        return crop.float().div_(255)


class WholeImages(Dataset):
    """Validation images, cropped to a multiple of 64 (every zoo model's downsampling factor divides it)."""

    def __init__(self, images: list[torch.Tensor], multiple: int = 64):
        self.images, self.multiple = images, multiple

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        h = image.shape[1] // self.multiple * self.multiple
        w = image.shape[2] // self.multiple * self.multiple
        return image[:, :h, :w].float().div_(255)


class ImageFolderData(pl.LightningDataModule):
    """Training crops from ``train_dir``; whole-image validation on ``val_dir``.

    Args:
        train_dir: folder of training images (png, jpg, webp…, searched recursively).
        val_dir: validation folder; Kodak from ``$ATTNCOMP_DATA`` or ``../shared/data`` when present.
        crop_size: side of the square training crops (the paper: 256).
        batch_size: crops per step.
        channels: 3 for RGB models, 1 for grayscale ones.
        val_images: validate on at most this many images.
        num_workers: DataLoader workers (crops come from memory, so 0 is usually fastest).
    """

    def __init__(
        self,
        train_dir: Optional[str] = _default_dir("train"),
        val_dir: Optional[str] = _default_dir("kodak"),
        crop_size: int = 256,
        batch_size: int = 8,
        channels: int = 3,
        val_images: int = 24,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.train_images: list[torch.Tensor] = []
        self.val_images: list[torch.Tensor] = []

    def setup(self, stage: Optional[str] = None) -> None:
        hp = self.hparams
        if not self.train_images and stage in (None, "fit"):
            if hp.train_dir is None:
                raise ImageError("no training data: pass --data DIR")
            self.train_images = load_folder(hp.train_dir, hp.channels, hp.crop_size)
        if not self.val_images and hp.val_dir is not None and stage in (None, "fit", "validate"):
            self.val_images = load_folder(hp.val_dir, hp.channels, 64)[: hp.val_images]

    def train_dataloader(self) -> DataLoader:
        crops = RandomCrops(self.train_images, self.hparams.crop_size, length=16 * len(self.train_images))
        return DataLoader(
            crops,
            batch_size=self.hparams.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def val_dataloader(self):
        if not self.val_images:
            return []
        return DataLoader(WholeImages(self.val_images), batch_size=1, num_workers=0)
