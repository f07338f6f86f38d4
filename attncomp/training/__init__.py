"""Training on PyTorch Lightning: the module holds the step, the DataModule the data."""

from .checkpoints import PeriodicCheckpoint
from .data import ImageFolderData
from .deadline import StopAt
from .export import ExportWeights
from .module import CompressionModule

__all__ = ["CompressionModule", "ExportWeights", "ImageFolderData", "PeriodicCheckpoint", "StopAt"]
