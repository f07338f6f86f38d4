"""The LightningDataModule: random crops from a folder of images kept in memory."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ImageError
from ..image import list_images, open_image, read_split, to_uint8_tensor

log = logging.getLogger(__name__)


def default_train_dir() -> Optional[str]:
    """``$ATTNCOMP_DATA/train`` (default ``../shared/data/train``) if it exists, read when a run starts."""
    path = Path(os.environ.get("ATTNCOMP_DATA", "../shared/data")) / "train"
    return str(path) if path.is_dir() else None


def load_folder(
    folder, channels: int = 3, min_size: int = 0, include: Optional[set] = None, exclude: set = frozenset()
) -> list[torch.Tensor]:
    """Every image below ``folder`` decoded once, as C×H×W uint8 tensors.

    ``include``/``exclude`` select images by file stem (a validation split).
    Images smaller than ``min_size`` on a side are reflect-padded up to it,
    with a warning, so that every image can still give a crop.
    """
    images, padded = [], 0
    for path in list_images(folder, include, exclude):
        tensor = to_uint8_tensor(open_image(path), channels)
        pad_h, pad_w = max(min_size - tensor.shape[1], 0), max(min_size - tensor.shape[2], 0)
        if pad_h or pad_w:
            padded += 1
            tensor = _reflect_pad(tensor, pad_h, pad_w)
        images.append(tensor.contiguous())
    if not images:
        raise ImageError(f"no images found in {folder}" + (" (after the validation split)" if include or exclude else ""))
    if padded:
        log.warning("%d of %d images in %s are smaller than %d px and were padded", padded, len(images), folder, min_size)
    return images


def draw_seed(global_rank: int, global_step: int) -> int:
    """Seed of a run's random draws (crops, λ levels): each DDP rank draws its own, and a resumed run
    does not replay the draws of its start."""
    return torch.initial_seed() + 1_000_003 * global_rank + global_step


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


@dataclass(frozen=True)
class CropPool:
    """Every training image in one flat uint8 buffer, cropped and flipped on whatever device holds it.

    On a GPU one gather per batch replaces a DataLoader, so loading never
    starves the accelerator. Images share one channel count; sizes may differ.
    """

    pixels: torch.Tensor  # each image's C×H×W values, one image after another
    offsets: torch.Tensor  # where each image starts in ``pixels``
    heights: torch.Tensor
    widths: torch.Tensor
    channels: int

    @classmethod
    def of(cls, images: list[torch.Tensor]) -> "CropPool":
        sizes = torch.tensor([image.numel() for image in images])
        return cls(
            torch.cat([image.reshape(-1) for image in images]),
            torch.cumsum(sizes, 0) - sizes,
            torch.tensor([image.shape[1] for image in images]),
            torch.tensor([image.shape[2] for image in images]),
            images[0].shape[0],
        )

    def to(self, device) -> "CropPool":
        move = lambda t: t.to(device)  # noqa: E731
        return CropPool(move(self.pixels), move(self.offsets), move(self.heights), move(self.widths), self.channels)

    def sample(self, count: int, size: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``count`` random ``size``² crops, each flipped up-down and left-right with probability ½, in [0, 1]."""
        device = self.pixels.device
        rand = lambda *shape: torch.rand(shape, device=device, generator=generator)  # noqa: E731
        image = (rand(count) * len(self.heights)).long()
        height, width = self.heights[image], self.widths[image]
        top = (rand(count) * (height - size + 1)).long()
        left = (rand(count) * (width - size + 1)).long()
        steps = torch.arange(size, device=device)
        rows = top[:, None] + torch.where(rand(count, 1) < 0.5, size - 1 - steps, steps)
        cols = left[:, None] + torch.where(rand(count, 1) < 0.5, size - 1 - steps, steps)
        channel = torch.arange(self.channels, device=device)[None, :, None, None]
        index = (
            self.offsets[image][:, None, None, None]
            + channel * (height * width)[:, None, None, None]
            + rows[:, None, :, None] * width[:, None, None, None]
            + cols[:, None, None, :]
        )
        return self.pixels[index].float().div_(255)


class StepNumbers(Dataset):
    """Stands in for the batches of a device-side crop pool: one item per training step."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


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
    """Training crops from ``train_dir``; whole-image validation on a held-out split or ``val_dir``.

    Args:
        train_dir: folder of training images (png, jpg, webp…, searched recursively);
            by default :func:`default_train_dir`.
        val_dir: a separate validation folder (never the test set).
        val_split: a file of image stems in ``train_dir`` (``configs/validation_split.txt``) held
            out of training; validation uses them unless ``val_dir`` is given.
        crop_size: side of the square training crops (the paper: 256).
        batch_size: crops per step.
        channels: 3 for RGB models, 1 for grayscale ones.
        val_images: validate on at most this many images.
        num_workers: DataLoader workers (crops come from memory, so 0 is usually fastest).
        crops_on_device: keep every training image on the training device and crop there
            (:class:`CropPool`); what a GPU needs, since a DataLoader cannot keep it busy.
    """

    def __init__(
        self,
        train_dir: Optional[str] = None,
        val_dir: Optional[str] = None,
        val_split: Optional[str] = None,
        crop_size: int = 256,
        batch_size: int = 8,
        channels: int = 3,
        val_images: int = 40,
        num_workers: int = 0,
        crops_on_device: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.train_images: list[torch.Tensor] = []
        self.val_images: list[torch.Tensor] = []
        self.device_pool: Optional[CropPool] = None
        self.generator: Optional[torch.Generator] = None

    def setup(self, stage: Optional[str] = None) -> None:
        hp = self.hparams
        held_out = read_split(hp.val_split) if hp.val_split else set()
        train_dir = hp.train_dir or default_train_dir()
        if not self.train_images and stage in (None, "fit"):
            if train_dir is None:
                raise ImageError("no training data: pass --data DIR")
            self.train_images = load_folder(train_dir, hp.channels, hp.crop_size, exclude=held_out)
        if not self.val_images and stage in (None, "fit", "validate"):
            if hp.val_dir is not None:
                self.val_images = load_folder(hp.val_dir, hp.channels, 64)[: hp.val_images]
            elif held_out and train_dir is not None:
                try:
                    self.val_images = load_folder(train_dir, hp.channels, 64, include=held_out)[: hp.val_images]
                except ImageError:  # another folder than the split was made for: train on all of it
                    log.warning("no image of %s is in %s: no validation", hp.val_split, train_dir)

    def train_dataloader(self) -> DataLoader:
        steps = max(16 * len(self.train_images) // self.hparams.batch_size, 1)  # a batch larger than an epoch's crops
        if self.hparams.crops_on_device:
            return DataLoader(StepNumbers(steps), batch_size=None)
        crops = RandomCrops(self.train_images, self.hparams.crop_size, length=steps * self.hparams.batch_size)
        return DataLoader(
            crops,
            batch_size=self.hparams.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With ``crops_on_device``, a training step's number becomes a batch of crops made on the device."""
        if not (self.hparams.crops_on_device and self.trainer is not None and self.trainer.training):
            return batch
        if self.device_pool is None:
            device = self.trainer.strategy.root_device
            self.device_pool = CropPool.of(self.train_images).to(device)
            seed = draw_seed(self.trainer.global_rank, self.trainer.global_step)
            self.generator = torch.Generator(device).manual_seed(seed)
        return self.device_pool.sample(self.hparams.batch_size, self.hparams.crop_size, self.generator)

    def val_dataloader(self):
        if not self.val_images:
            return []
        return DataLoader(WholeImages(self.val_images), batch_size=1, num_workers=0)
