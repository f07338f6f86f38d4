"""Training on PyTorch Lightning: the module holds the step, the DataModule the data."""

from .data import ImageFolderData
from .export import ExportWeights
from .module import CompressionModule, rate_bpp

__all__ = ["CompressionModule", "ExportWeights", "ImageFolderData", "rate_bpp"]
