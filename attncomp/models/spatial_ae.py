"""Wibowo's CNN-attention autoencoder, made into a real codec."""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models import CompressionModel
from torch import nn

from .layers import in_bfloat16, in_float32


class SpatialAttentionAE(CompressionModel):
    r"""A one-channel code at half resolution, gated by inverted spatial attention.

    .. code-block:: none

                 ┌───────┐      c      ┌───┐ c·(1−a) ┌────┐ c_hat ┌───────┐
            x ─►─┤encoder├──►──┬──►────┤ × ├───►────┤Q/EB├──►────┤decoder├─►─ x_hat
                 └───────┘     │       └─┬─┘         └────┘       └───────┘
                               │  ┌──────┴───────┐
                               └─►┤1 − σ(conv c) │  inverted spatial attention a
                                  └──────────────┘

        encoder: conv3×3(32) ReLU, maxpool 2, conv3×3(16) ReLU, conv3×3(1) ReLU
        decoder: conv3×3(16) ReLU, upsample 2, conv3×3(C) sigmoid

    The paper's Keras model has no quantisation and no entropy coding (its
    "compression" is the size of a float code); here the code is quantised
    and coded with CompressAI's ``EntropyBottleneck`` so that its rate is
    measured on real bitstreams. ``in_channels`` is 1 (the paper: grayscale)
    or 3.
    """

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.config = dict(in_channels=in_channels)
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 1, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.attention = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Sigmoid())
        self.decoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(16, in_channels, 3, padding=1),
            nn.Sigmoid(),
        )
        self.entropy_bottleneck = EntropyBottleneck(1)

    @property
    def downsampling_factor(self) -> int:
        return 2

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        return code * (1 - self.attention(code))

    def forward(self, x: torch.Tensor) -> dict:
        code_hat, likelihoods = self.quantized_latents(x)
        return {"x_hat": self.decoder(code_hat), "likelihoods": likelihoods}

    def quantized_latents(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The forward pass up to the decoder: (quantised code, likelihoods) — all a rate estimate needs."""
        code_hat, likelihoods = in_float32(self.entropy_bottleneck)(self.encode(x))
        return code_hat, {"code": likelihoods}

    def compress(self, x: torch.Tensor) -> dict:
        code = self.encode(x).float()
        return {"strings": [self.entropy_bottleneck.compress(code)], "shape": tuple(code.shape[-2:])}

    def decompress(self, strings: list, shape, precision: str = "float32") -> dict:
        """The code decoded exactly, then the decoder under bf16 autocast at ``precision`` ``bf16``, else in
        float32 (``mixed`` too: there is no post-filter correction to compute in bf16)."""
        code_hat = self.entropy_bottleneck.decompress(strings[0], tuple(shape))
        return {"x_hat": in_bfloat16(self.decoder, precision == "bf16")(code_hat).clamp_(0, 1), "y_hat": code_hat}
