"""attncomp's models: importable in a notebook, coded with CompressAI's entropy coder.

>>> import attncomp.models as am
>>> net = am.load("attn-hyperprior", quality=3)     # bundled weights
>>> fresh = am.create("attn-hyperprior-paper")      # untrained, paper sizes
"""

from .hyperprior import AttentionHyperprior
from .layers import ChannelAttention, PostFilter
from .spatial_ae import SpatialAttentionAE
from .zoo import (
    DEFAULT_MODEL,
    DEFAULT_QUALITY,
    ZOO,
    available_qualities,
    create,
    image_channels,
    load,
    load_weights,
    save_weights,
    weights_hash,
)

__all__ = [
    "AttentionHyperprior",
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
    "weights_hash",
]
