"""The two blocks Wirabudi et al. (2024) add to the scale hyperprior, and small tensor helpers."""

from __future__ import annotations

import torch
from torch import nn


def in_float32(fn):
    """``fn`` run on float32 copies of its tensors even inside a bf16 autocast region.

    For what bf16 would break: entropy models and likelihoods, and metrics such as
    MS-SSIM whose variance terms can cancel to zero in bf16.
    """

    def wrapped(*tensors):
        with torch.autocast(device_type=tensors[0].device.type, enabled=False):
            return fn(*(t.float() for t in tensors))

    return wrapped


def bfloat16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds work on ``device`` up rather than slowing it down.

    GPUs have bf16 units. On a CPU, oneDNN's bf16 convolutions need AVX-512; with AVX2 alone they
    fall back to reference code, measured ~240× slower than float32 on a 2-core AMD EPYC.
    """
    return device.type != "cpu" or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def cached_by_version(owner, name: str, tensors, compute):
    """``compute()``, cached on ``owner`` until one of ``tensors`` is replaced or modified in place.

    The cache holds aliases of the tensors it was computed from, so their memory cannot be
    reused by replacements (``model.half().float()``) that would then match the cached address.
    Tensors made under ``torch.inference_mode`` keep no version counter: then it recomputes.
    """
    tensors = list(tensors)
    key = None if any(t.is_inference() for t in tensors) else tuple((t.data_ptr(), t._version, t.device) for t in tensors)
    cached = owner.__dict__.get(name)
    if key is None or cached is None or cached[0] != key:
        cached = owner.__dict__[name] = (key, compute(), [t.detach() for t in tensors] if key else None)
    return cached[1]


class ChannelAttention(nn.Module):
    """CBAM channel attention (Woo et al., 2018).

    Global average- and max-pooling summarise each channel; one shared MLP
    (1×1 convs C → C/r → C with a ReLU) scores both summaries, the scores are
    summed and squashed by a sigmoid, and the result rescales the channels.
    The gate is computed per image, so it costs no bits and adapts the
    transform to the content.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel weights in (0, 1), shape (B, C, 1, 1)."""
        avg = x.mean(dim=(2, 3), keepdim=True)
        peak = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(peak))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class PostFilter(nn.Module):
    """Decoder-side image enhancement: conv3×3(3→C) PReLU conv3×3(C→C) PReLU conv3×3(C→3) sigmoid.

    It runs after synthesis, on the decoder only, so it improves quality
    without spending bits. The paper uses C = 192.
    """

    def __init__(self, channels: int = 192, image_channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(image_channels, channels, kernel_size=3, padding=1),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.PReLU(channels),
            nn.Conv2d(channels, image_channels, kernel_size=3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
