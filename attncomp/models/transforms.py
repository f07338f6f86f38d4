"""The four transforms of the hyperprior, each a layer stack (``body``) and an optional ``attention`` gate.

The bodies are those of Ballé et al. (2018) as CompressAI builds them (GDN, 5×5
stride-2 convolutions); Wirabudi et al. put a channel-attention block at the end of
each transform. Named submodules (``g_a.body``, ``g_a.attention``) let code and
weights files refer to the blocks by what they are rather than by position.
"""

from __future__ import annotations

from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import nn

from .layers import ChannelAttention, SubPixelDeconv

ATTENTION = ("none", "paper", "residual")


def attention_block(kind: str, channels: int, reduction: int) -> nn.Module:
    """``none``: no block; ``paper``: CBAM's sigmoid gate; ``residual``: a gate that starts as the identity."""
    if kind not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, not {kind!r}")
    if kind == "none":
        return nn.Identity()
    return ChannelAttention(channels, reduction, residual=kind == "residual")


class Transform(nn.Module):
    """``attention(body(x))``; :attr:`layers` lists what runs, for the exact fixed-point evaluation."""

    def __init__(self, body: nn.Sequential, attention: nn.Module):
        super().__init__()
        self.body = body
        self.attention = attention

    @property
    def layers(self) -> list[nn.Module]:
        return [*self.body, *([] if isinstance(self.attention, nn.Identity) else [self.attention])]

    def forward(self, x):
        return self.attention(self.body(x))


class AnalysisTransform(Transform):
    """g_a: image (3 channels) → latent y (M channels) at 1/16 of the resolution."""

    def __init__(self, N: int, M: int, attention: str = "none", reduction: int = 16):
        body = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        super().__init__(body, attention_block(attention, M, reduction))


class SynthesisTransform(Transform):
    """g_s: quantised latent ŷ → image; the paper gates the 3 output channels."""

    def __init__(self, N: int, M: int, attention: str = "none", reduction: int = 16):
        body = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), SubPixelDeconv(N, 3),
        )  # fmt: skip
        super().__init__(body, attention_block(attention, 3, reduction))


class HyperAnalysis(Transform):
    """h_a: |y| (or y, for a mean-scale prior) → hyper-latent z, a further 1/4 of the resolution."""

    def __init__(self, N: int, M: int, attention: str = "none", reduction: int = 16):
        body = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3), nn.ReLU(inplace=True),
            conv(N, N), nn.ReLU(inplace=True), conv(N, N),
        )  # fmt: skip
        super().__init__(body, attention_block(attention, N, reduction))


class HyperSynthesis(Transform):
    """h_s: ẑ → per-element scales of y (``outputs=M``), or means then scales (``outputs=2M``).

    Scales end in a ReLU as in Ballé et al.; a mean-scale head has no final
    activation, since means are signed (the Gaussian conditional bounds the scales).
    """

    def __init__(self, N: int, M: int, attention: str = "none", reduction: int = 16, means: bool = False):
        outputs = 2 * M if means else M
        layers = [deconv(N, N), nn.ReLU(inplace=True), deconv(N, N), nn.ReLU(inplace=True)]
        layers += [conv(N, outputs, stride=1, kernel_size=3)] + ([] if means else [nn.ReLU(inplace=True)])
        super().__init__(nn.Sequential(*layers), attention_block(attention, outputs, reduction))
