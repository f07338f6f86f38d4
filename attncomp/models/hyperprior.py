"""Wirabudi et al. (2024): the scale hyperprior with channel attention and a post-filter."""

from __future__ import annotations

import torch
from compressai.models import ScaleHyperprior
from compressai.models.base import get_scale_table
from torch import nn

from .fixed_point import fixed_point_forward
from .layers import ChannelAttention, PostFilter, in_float32


# 256 scales from 0.11 to 64: coding with the table's next larger scale then costs ~0.5% over the
# estimated rate, against ~2-3% with CompressAI's 64 scales up to 256 (benchmarks/rate_overhead.py).
SCALE_TABLE = get_scale_table(0.11, 64, 256)


class AttentionHyperprior(ScaleHyperprior):
    r"""Scale hyperprior (Ballé et al., 2018) + CBAM channel attention + post-filter.

    .. code-block:: none

                  ┌─────┐    y     ┌─────┐  z  ┌───┐ z_hat     z_hat ┌───────┐
            x ──►─┤g_a+A├──►─┬──►──┤h_a+A├──►──┤ Q ├──►──·⋯⋯·──►──┤h_s+A  ├─┐
                  └─────┘    │     └─────┘     └───┘       EB       │(exact)│ │
                             ▼                                      └───────┘ │
                           ┌─┴─┐                                              │
                           │ Q │                                              │
                           └─┬─┘                                   scales_hat │
                       y_hat ▼                                                │
                             ·                                                │
                          GC : ◄──────────────────────◄───────────────────────┘
                             ·
                       y_hat ▼
                  ┌─────┐        ┌─────┐    │
        x_hat ◄───┤ PF  ├◄───────┤g_s+A├◄───┘
                  └─────┘        └─────┘

        A  = ChannelAttention at the end of each transform (``attention=True``)
        PF = PostFilter, decoder side only, costs no bits (``postfilter=True``)
        EB = EntropyBottleneck, GC = GaussianConditional

    With both switches off this is exactly CompressAI's ``ScaleHyperprior``
    (same parameter names), so the ablation plain / +attention /
    +attention+post-filter is one class.

    ``compress`` and ``decompress`` (and ``forward`` outside training) run h_s
    in exact fixed-point arithmetic (:mod:`attncomp.models.fixed_point`):
    encoder and decoder derive the same scale indexes on any machine, thread
    count or memory format, and in train mode too.
    """

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        attention: bool = True,
        postfilter: bool = True,
        reduction: int = 16,
        postfilter_channels: int = 192,
    ):
        super().__init__(N=N, M=M)
        self.config = dict(
            N=N,
            M=M,
            attention=attention,
            postfilter=postfilter,
            reduction=reduction,
            postfilter_channels=postfilter_channels,
        )
        if attention:
            self.g_a.append(ChannelAttention(M, reduction))
            self.g_s.append(ChannelAttention(3, reduction))
            self.h_a.append(ChannelAttention(N, reduction))
            self.h_s.append(ChannelAttention(M, reduction))
        self.post_filter = PostFilter(postfilter_channels) if postfilter else nn.Identity()

    @classmethod
    def from_state_dict(cls, state_dict, **config):
        """Build a model whose sizes and switches are read from ``state_dict``."""
        inferred = dict(
            N=state_dict["g_a.0.weight"].size(0),
            M=state_dict["g_a.6.weight"].size(0),
            attention="g_a.7.mlp.0.weight" in state_dict,
            postfilter="post_filter.net.0.weight" in state_dict,
        )
        if inferred["attention"]:
            inferred["reduction"] = max(inferred["M"] // state_dict["g_a.7.mlp.0.weight"].size(0), 1)
        if inferred["postfilter"]:
            inferred["postfilter_channels"] = state_dict["post_filter.net.0.weight"].size(0)
        net = cls(**{**inferred, **config})
        net.load_state_dict(state_dict)
        return net

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Build the CDF tables; by default on :data:`SCALE_TABLE`, finer than CompressAI's."""
        return super().update(SCALE_TABLE if scale_table is None else scale_table, force, update_quantiles)

    def hyper_synthesis(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Scales for y: float while training (differentiable), exact otherwise."""
        if self.training:
            return self.h_s(z_hat)
        return fixed_point_forward(self.h_s, z_hat)

    def scale_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """CompressAI's ``build_indexes`` in one vectorised, exact float64 comparison.

        An index counts the scale-table entries (all but the last) strictly
        below the lower-bounded scale, exactly as the reference loop does.
        """
        conditional = self.gaussian_conditional
        bound = float(conditional.lower_bound_scale.bound)
        table = conditional.scale_table[:-1].to(torch.float64)
        return torch.bucketize(scales.to(torch.float64).clamp_min(bound).contiguous(), table).int()

    def coding_indexes(self, z_hat: torch.Tensor) -> torch.Tensor:
        """The scale indexes the range coder uses: from the exact h_s, whatever the mode."""
        return self.scale_indexes(fixed_point_forward(self.h_s, z_hat))

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.post_filter(self.g_s(y_hat))

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(torch.abs(y))
        z_hat, z_likelihoods = in_float32(self.entropy_bottleneck)(z)
        scales_hat = self.hyper_synthesis(z_hat)
        y_hat, y_likelihoods = in_float32(self.gaussian_conditional)(y, scales_hat)
        return {
            "x_hat": self.synthesis(y_hat),
            "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
        }

    def analysis(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents the encoder codes: y and the hyper-latent z."""
        y = self.g_a(x).float()
        return y, self.h_a(torch.abs(y)).float()

    def relaxed_rate_distortion(self, latents, quantize) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and total bits of ``latents`` under a differentiable ``quantize(v, offset)``.

        For encoder-side latent optimisation (:mod:`attncomp.codec.refine`):
        ``quantize`` stands in for the coder's rounding (y to integers, z to
        integers around the bottleneck's medians). Likelihoods stay float32.
        The likelihoods come from CompressAI's own ``_likelihood`` methods, which
        its ``forward`` uses too; the scales come from the float h_s (differentiable),
        so the rate matches the coder's up to the exact h_s's rounding.
        """
        y, z = latents
        z_hat = quantize(z, self.entropy_bottleneck._get_medians())
        y_hat = quantize(y, 0.0)
        bits = in_float32(self._bits)(y_hat, z_hat, self.h_s(z_hat))
        return self.synthesis(y_hat), bits

    def _bits(self, y_hat: torch.Tensor, z_hat: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        bottleneck, conditional = self.entropy_bottleneck, self.gaussian_conditional
        z_likelihoods, _, _ = bottleneck._likelihood(z_hat.transpose(0, 1).reshape(z_hat.size(1), 1, -1))
        y_likelihoods = conditional._likelihood(y_hat, scales)
        return -(
            torch.log2(bottleneck.likelihood_lower_bound(z_likelihoods)).sum()
            + torch.log2(conditional.likelihood_lower_bound(y_likelihoods)).sum()
        )

    def compress(self, x: torch.Tensor) -> dict:
        return self.compress_latents(self.analysis(x))

    def compress_latents(self, latents) -> dict:
        y, z = latents
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        indexes = self.coding_indexes(z_hat)
        y_strings = self.gaussian_conditional.compress(y, indexes)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    def decompress(self, strings: list, shape) -> dict:
        z_hat = self.entropy_bottleneck.decompress(strings[1], tuple(shape))
        indexes = self.coding_indexes(z_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, torch.float32)
        return {"x_hat": self.synthesis(y_hat).clamp_(0, 1), "y_hat": y_hat}
