"""attncomp's models: importable in a notebook, coded with CompressAI's entropy coder.

>>> import attncomp.models as am
>>> model = am.load("attn-hyperprior", quality=3)   # bundled weights: a CodingModel
>>> model.network                                   # the nn.Module
>>> fresh = am.create("attn-hyperprior-paper")      # untrained, paper sizes
"""

from .coding import CodingModel, image_channels
from .hyperprior import AttentionHyperprior
from .layers import ChannelAttention, PostFilter
from .spatial_ae import SpatialAttentionAE
from .zoo import (
    DEFAULT_MODEL,
    DEFAULT_QUALITY,
    ZOO,
    available_qualities,
    create,
    load,
    load_weights,
    save_weights,
)

__all__ = [
    "AttentionHyperprior",
    "CodingModel",
    "ChannelAttention",
    "PostFilter",
    "SpatialAttentionAE",
    "DEFAULT_MODEL",
    "DEFAULT_QUALITY",
    "ZOO",
    "available_qualities",
    "create",
    "image_channels",
    "load",
    "load_weights",
    "save_weights",
]
