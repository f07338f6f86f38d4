"""The two blocks Wirabudi et al. (2024) add to the scale hyperprior, a faster last synthesis layer, and precision helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..catalog import SYNTHESIS_PRECISIONS


def in_float32(fn):
    """``fn`` run on float32 copies of its tensors even inside a bf16 autocast region.

    For what bf16 would break: entropy models and likelihoods, and metrics such as
    MS-SSIM whose variance terms can cancel to zero in bf16.
    """

    def wrapped(*tensors):
        with torch.autocast(device_type=tensors[0].device.type, enabled=False):
            return fn(*(t.float() for t in tensors))

    return wrapped


def in_bfloat16(fn, enabled: bool = True):
    """``fn`` run under bf16 autocast (when ``enabled``), its float32 inputs and output left float32.

    For decoder-side synthesis only, after entropy decoding: nothing there feeds back into the
    coding, so reduced precision costs some PSNR but never the exactness of the stream.
    """

    def wrapped(*tensors):
        with torch.autocast(device_type=tensors[0].device.type, dtype=torch.bfloat16, enabled=enabled):
            return fn(*tensors).float()

    return wrapped


def synthesis_precision(requested: str, device: torch.device) -> str:
    """``requested`` (one of :data:`~attncomp.catalog.SYNTHESIS_PRECISIONS`) where ``device`` has fast bf16
    kernels, else float32."""
    if requested not in SYNTHESIS_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(SYNTHESIS_PRECISIONS)}, not {requested!r}")
    return requested if bfloat16_is_fast(device) else "float32"


def bfloat16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds work on ``device`` up rather than slowing it down.

    GPUs have bf16 units. On a CPU, oneDNN's bf16 convolutions need AVX-512; with AVX2 alone they
    fall back to reference code, measured ~240× slower than float32 on a 2-core AMD EPYC.
    """
    return device.type != "cpu" or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


BLOCK_FORMS = ("none", "paper", "residual")
"""The forms of each of the paper's two blocks: absent, as the paper has it, or residual (starts as the identity)."""


def check_form(block: str, form: str) -> None:
    """Refuse a form of ``block`` (attention or postfilter) that is not one of :data:`BLOCK_FORMS`."""
    if form not in BLOCK_FORMS:
        raise ValueError(f"{block} must be one of {', '.join(BLOCK_FORMS)}, not {form!r}")


FEW_CHANNELS = 16
"""Below this many channels, :func:`spatial_max` reduces a channels_last tensor through an NCHW copy."""


def spatial_max(x: torch.Tensor) -> torch.Tensor:
    """Each channel's maximum over height and width, shape (B, C, 1, 1).

    PyTorch reduces a channels_last tensor with its channels as the vector lanes: with g_s's
    3 channels that took 3.0 ms for a Kodak image here, an NCHW copy and its reduction 0.33 ms.
    (With many channels the lanes are full and the copy would cost more than it saves.)
    A maximum does not depend on the order it is taken in, so the result is the same.
    """
    if x.shape[1] < FEW_CHANNELS and x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous()
    return x.amax(dim=(2, 3), keepdim=True)


class ChannelAttention(nn.Module):
    """CBAM channel attention (Woo et al., 2018).

    Global average- and max-pooling summarise each channel; one shared MLP
    (1×1 convs C → C/r → C with a ReLU) scores both summaries, the scores are
    summed and squashed, and the result rescales the channels. The gate is
    computed per image, so it costs no bits and adapts the transform to the content.

    ``residual=False`` is the paper's gate, a sigmoid in (0, 1): at initialisation
    it halves every channel, which the rest of the network must first learn to undo.
    ``residual=True`` uses 2·sigmoid in (0, 2), i.e. x + x·tanh(s/2), with the
    last 1×1 conv zero-initialised: the block starts as the identity and learns
    only the correction.
    """

    def __init__(self, channels: int, reduction: int = 16, residual: bool = False):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.residual = residual
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )
        if residual:
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)

    @property
    def gate_range(self) -> float:
        """The gate's upper bound: 1 for the paper's sigmoid, 2 for the residual form."""
        return 2.0 if self.residual else 1.0

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel weights in (0, gate_range), shape (B, C, 1, 1)."""
        avg = x.mean(dim=(2, 3), keepdim=True)
        peak = spatial_max(x)
        return self.gate_range * torch.sigmoid(self.mlp(avg) + self.mlp(peak))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


HALO = 3
"""Rows of context a row of the post-filter's output depends on, either side: one per 3×3 convolution."""

BAND_PIXELS = 64 * 512
"""Pixels per band when the post-filter runs without gradients: 64 rows of a 512-pixel tile were fastest here."""


class PostFilter(nn.Module):
    """Decoder-side image enhancement: conv3×3(3→C) PReLU conv3×3(C→C) PReLU conv3×3(C→3), then a head.

    It runs after synthesis, on the decoder only, so it improves quality
    without spending bits. The paper's head is a sigmoid (C = 192): the
    network must learn the identity before it can help. ``residual=True``
    returns x + f(x) with the last conv zero-initialised, so a model with the
    filter starts exactly where the model without it is. (The residual output is
    not clamped in training, to keep gradients; decoding clamps to [0, 1].)
    """

    def __init__(self, channels: int = 192, image_channels: int = 3, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.net = nn.Sequential(
            nn.Conv2d(image_channels, channels, kernel_size=3, padding=1),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.PReLU(channels),
            nn.Conv2d(channels, image_channels, kernel_size=3, padding=1),
        )
        if residual:
            nn.init.zeros_(self.net[4].weight)
            nn.init.zeros_(self.net[4].bias)

    def forward(self, x: torch.Tensor, bf16_correction: bool = False) -> torch.Tensor:
        """The filtered image; with ``bf16_correction``, a residual filter computes f(x) under bf16 autocast.

        The correction is small next to the image it is added to, so its bf16 rounding moves the
        result far less than bf16 throughout would: on the M=192 model, Kodak PSNR changed by −0.003
        to +0.021 dB per image at q1, q3 and q8, for 0.75–0.84× the decode time. The sigmoid form
        outputs the image itself, so it stays float32.
        """
        bf16 = bf16_correction and self.residual
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.shape[-2] * x.shape[-1] <= 2 * BAND_PIXELS:
            return self._filter(x, bf16)
        return self._filter_in_bands(x, bf16)

    def _filter(self, x: torch.Tensor, bf16: bool) -> torch.Tensor:
        if not self.residual:
            return torch.sigmoid(self.net(x))
        return x + (in_bfloat16(self.net)(x) if bf16 else self.net(x))  # no autocast(enabled=False) in training

    def _filter_in_bands(self, x: torch.Tensor, bf16: bool) -> torch.Tensor:
        """The same filter, a band of rows at a time, so that its C-channel intermediates stay in a CPU's cache.

        On a whole 512² tile they do not (32 channels: 34 MB a layer), and the filter is bound by its
        passes over memory: in bands it ran about 2× faster here. Each band reads ``HALO`` more rows on
        either side, the reach of the three 3×3 convolutions, so every output row sees exactly the
        input rows it sees in one pass.
        """
        height, width = x.shape[-2:]
        rows = max(BAND_PIXELS // width, HALO)
        out = torch.empty_like(x)
        for top in range(0, height, rows):
            start, stop = max(top - HALO, 0), min(top + rows + HALO, height)
            band = self._filter(x[..., start:stop, :], bf16)
            out[..., top : top + rows, :] = band[..., top - start : top - start + rows, :]
        return out


class SubPixelDeconv(nn.ConvTranspose2d):
    """CompressAI's 5×5 stride-2 transposed convolution that, without gradients, runs as a sub-pixel one.

    g_s ends in one such layer from N channels to 3, and as a transposed convolution it ran at a quarter
    of the speed of the layers before it (21 ms on a 512² output here). The same map is a 3×3
    convolution to the 4 phases of each 2×2 output block followed by a pixel shuffle (11 ms). Weights,
    state-dict keys and training are those of the transposed convolution.
    """

    # output phase a of input row m reads input rows m-1, m, m+1 through these kernel rows (5: none)
    TAPS = torch.tensor([[4, 2, 0], [5, 3, 1]])

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        return F.pixel_shuffle(F.conv2d(x, self.phase_weight(), self.bias.repeat_interleave(4), padding=1), 2)

    def phase_weight(self) -> torch.Tensor:
        """(out·4, in, 3, 3): output channel o's phase (a, b) at index 4·o + 2·a + b, as pixel_shuffle reads it."""
        padded = F.pad(self.weight, (0, 1, 0, 1))  # (in, out, 6, 6), the 6th row and column zero
        taps = self.TAPS.to(self.weight.device)
        phases = padded[:, :, taps][..., taps]  # (in, out, a, row tap, b, column tap)
        return phases.permute(1, 2, 4, 0, 3, 5).reshape(self.out_channels * 4, self.in_channels, 3, 3)
