"""The four transforms of the hyperprior, each a layer stack (``body``) and an optional ``attention`` gate.

The bodies are those of Ballé et al. (2018) as CompressAI builds them (GDN, 5×5
stride-2 convolutions); Wirabudi et al. put a channel-attention block at the end of
each transform. Named submodules (``g_a.body``, ``g_a.attention``) let code and
weights files refer to the blocks by what they are rather than by position.
"""

from __future__ import annotations

import torch
from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import nn

from .layers import ChannelAttention, SubPixelDeconv, check_form

SYNTHESIS_BAND_PIXELS = 256 * 512
"""Output pixels per band of g_s's last two upsamplings without gradients: 256 rows of a 512-pixel tile
(a 512² window took 46 ms in two bands, 65 ms in one pass, 47 ms in four and 58 ms in eight here)."""


def attention_block(kind: str, channels: int, reduction: int) -> nn.Module:
    """``none``: no block; ``paper``: CBAM's sigmoid gate; ``residual``: a gate that starts as the identity."""
    check_form("attention", kind)
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
    """g_s: quantised latent ŷ → image; the paper gates the 3 output channels.

    ``forward(y, keep)`` computes only the output pixels ``keep`` (rows, columns) and what they
    depend on: after each of the four 5×5 stride-2 transposed convolutions, the activations are
    cropped to the rows and columns the later layers read (GDN is per pixel). A tile synthesised
    with context around it (:mod:`attncomp.codec.tiles`) so costs a few rows per layer more than the
    tile alone, not the whole context at every resolution. The gate then pools over ``keep``.

    Without gradients on a CPU, the last two upsamplings (N channels at half and full resolution)
    run a band of output rows at a time, so that their activations stay in cache: the layers
    before them run once, and each band reads the rows its outputs depend on, so the result is
    the same as in one pass.
    """

    def __init__(self, N: int, M: int, attention: str = "none", reduction: int = 16):
        body = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), SubPixelDeconv(N, 3),
        )  # fmt: skip
        super().__init__(body, attention_block(attention, 3, reduction))

    def forward(self, x, keep=None):
        banded = not torch.is_grad_enabled() and x.device.type == "cpu"
        if keep is None:
            if not banded:
                return super().forward(x)
            keep = (slice(0, 16 * x.shape[-2]), slice(0, 16 * x.shape[-1]))
        upsamplings = [i for i, layer in enumerate(self.body) if isinstance(layer, nn.ConvTranspose2d)]
        regions = _upsampling_regions(upsamplings, keep)
        tail = upsamplings[-2]
        x, origin = self._run(0, tail, x, (0, 0), regions)
        rows = keep[0]
        step = max(SYNTHESIS_BAND_PIXELS // (keep[1].stop - keep[1].start), 4) if banded else rows.stop - rows.start
        bands = []
        for top in range(rows.start, rows.stop, step):
            band = slice(top, min(top + step, rows.stop))
            band_regions = _upsampling_regions(upsamplings[-2:], (band, keep[1]))
            needed = transposed_inputs(band_regions[tail][0])  # the rows of x the band reads
            start = needed.start - origin[0]
            bands.append(self._run(tail, len(self.body), x[..., start : needed.stop - origin[0], :],
                                   (needed.start, origin[1]), band_regions)[0])  # fmt: skip
        return self.attention(bands[0] if len(bands) == 1 else torch.cat(bands, dim=-2))

    def _run(self, first: int, stop: int, x, origin: tuple[int, int], regions: dict):
        """Layers ``first`` to ``stop`` on ``x``, whose element [0, 0] is (row, column) ``origin`` of the
        uncropped activations, each upsampling's output cropped to its region; (output, its origin)."""
        top, left = origin
        for i in range(first, stop):
            x = self.body[i](x)
            if i in regions:  # an upsampling: its output starts at twice its input's start
                rows, cols = regions[i]
                x = x[..., rows.start - 2 * top : rows.stop - 2 * top, cols.start - 2 * left : cols.stop - 2 * left]
                top, left = rows.start, cols.start
        return x, (top, left)


def _upsampling_regions(upsamplings: list[int], keep) -> dict:
    """{layer index: (rows, columns) of its output that the output region ``keep`` reads}, for the
    upsampling layers ``upsamplings`` in order (the last one's region is ``keep`` itself)."""
    needed = [keep]
    for _ in upsamplings[1:]:
        needed.append(tuple(transposed_inputs(span) for span in needed[-1]))
    return dict(zip(upsamplings, reversed(needed)))


def transposed_inputs(outputs: slice) -> slice:
    """The input rows (or columns) from which a 5×5 stride-2 transposed convolution with padding 2 computes
    the output rows ``outputs``: output o reads the inputs i with |2i − o| ≤ 2. Starts below 0 are clipped
    (zero padding lies there, as in the whole image); ends past the input are clipped by slicing."""
    return slice(max(-(-(outputs.start - 2) // 2), 0), (outputs.stop + 1) // 2 + 1)


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
