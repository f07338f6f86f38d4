"""Wirabudi et al. (2024): the scale hyperprior with channel attention and a post-filter."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from compressai.models import ScaleHyperprior
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from torch import nn

from ..catalog import QUALITY_STEPS, quality_steps
from .entropy_internals import (
    bottleneck_likelihoods, bottleneck_medians, conditional_likelihoods, conditional_symbols, scale_bound,
)
from . import rd
from .fixed_point import FixedPointTransform
from .layers import PostFilter, check_form, in_bfloat16, in_float32
from .transforms import AnalysisTransform, HyperAnalysis, HyperSynthesis, SynthesisTransform

# 256 scales from 0.11 to 64: coding with the table's next larger scale then costs ~0.5% over the
# estimated rate, against ~2-3% with CompressAI's 64 scales up to 256 (benchmarks/rate_overhead.py).
SCALE_TABLE = get_scale_table(0.11, 64, 256)


Core = tuple[slice, slice]
"""Rows and columns of a tensor: a tile's own latents when it holds context around them, or pixels to keep."""


def cropped(y: torch.Tensor, core: Optional[Core]) -> torch.Tensor:
    return y if core is None else y[..., core[0], core[1]]


def _gained(gain, *tensors):
    """Each tensor (or None) scaled by a variable-rate model's gain; all unchanged for a fixed-rate model."""
    if gain is None:
        return tensors
    return tuple(None if t is None else t * gain for t in tensors)


class AttentionHyperprior(ScaleHyperprior):
    r"""Scale hyperprior (Ballé et al., 2018) + CBAM channel attention + post-filter.

    .. code-block:: none

                  ┌─────┐    y     ┌─────┐  z  ┌───┐ z_hat     z_hat ┌───────┐
            x ──►─┤g_a+A├──►─┬──►──┤h_a+A├──►──┤ Q ├──►──·⋯⋯·──►──┤h_s+A  ├─┐
                  └─────┘    │     └─────┘     └───┘       EB       │(exact)│ │
                             ▼ ×gain                                └───────┘ │
                           ┌─┴─┐                                              │
                           │ Q │                              (means,) scales │
                           └─┬─┘                                     ×gain    │
                       y_hat ▼                                                │
                             ·                                                │
                          GC : ◄──────────────────────◄───────────────────────┘
                             ·
                       y_hat ▼ ×inverse gain
                  ┌─────┐        ┌─────┐    │
        x_hat ◄───┤ PF  ├◄───────┤g_s+A├◄───┘
                  └─────┘        └─────┘

        A  = ChannelAttention at the end of each transform: ``paper`` (sigmoid
             gate) or ``residual`` (starts as the identity), or ``none``
        PF = post-filter, decoder side only, costs no bits: ``paper`` (sigmoid
             head), ``residual`` (x + f(x), starts as the identity) or ``none``
        EB = EntropyBottleneck, GC = GaussianConditional

    ``prior="mean-scale"`` makes h_s predict a mean and a scale for each element
    of y (Minnen et al., 2018) and feeds h_a with y rather than |y|.

    ``lambdas`` (empty for a fixed-rate model) makes it a variable-rate model:
    one learned gain vector per λ scales y before rounding (finer steps for a
    larger λ) and its inverse scales ŷ back (Cui et al., 2021, "gain units");
    quality q ∈ [1, len(lambdas)] selects the gains, fractional q interpolates
    between neighbours, so one set of weights covers every rate.

    ``compress`` and ``decompress`` (and ``forward`` outside training) run h_s
    in exact fixed-point arithmetic (:mod:`attncomp.models.fixed_point`) and
    derive the gains with exactly rounded float64 operations only: encoder and
    decoder find the same scale indexes on any machine, thread count or
    memory format. Pass them a prebuilt :class:`FixedPointTransform` of h_s to
    skip rounding the weights on every call.
    """

    latent_stride = 16  # pixels per element of y along each side: g_a's four stride-2 convolutions

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        attention: Literal["none", "paper", "residual"] = "paper",
        postfilter: Literal["none", "paper", "residual"] = "paper",
        reduction: int = 16,
        postfilter_channels: int = 192,
        prior: Literal["scale", "mean-scale"] = "scale",
        lambdas: tuple = (),
    ):
        super().__init__(N=N, M=M)
        check_form("postfilter", postfilter)
        if prior not in ("scale", "mean-scale"):
            raise ValueError(f"prior must be scale or mean-scale, not {prior!r}")
        lambdas = tuple(float(v) for v in lambdas)
        if list(lambdas) != sorted(set(lambdas)):
            raise ValueError("lambdas must increase")
        self.config = dict(
            N=N, M=M, attention=attention, postfilter=postfilter, reduction=reduction,
            postfilter_channels=postfilter_channels, prior=prior, lambdas=lambdas,
        )  # fmt: skip
        self.g_a = AnalysisTransform(N, M, attention, reduction)
        self.g_s = SynthesisTransform(N, M, attention, reduction)
        self.h_a = HyperAnalysis(N, M, attention, reduction)
        self.h_s = HyperSynthesis(N, M, attention, reduction, means=prior == "mean-scale")
        if postfilter == "none":
            self.post_filter = nn.Identity()
        else:
            self.post_filter = PostFilter(postfilter_channels, residual=postfilter == "residual")
        if lambdas:
            # a step ∝ 1/√λ is the high-rate optimum for MSE; centred on the middle λ
            start = torch.tensor(lambdas).div(lambdas[len(lambdas) // 2]).sqrt()[:, None].expand(-1, M)
            self.gains = nn.Parameter(start.clone())
            self.inverse_gains = nn.Parameter(1 / start)

    @property
    def lambdas(self) -> tuple:
        return self.config["lambdas"]

    @property
    def qualities(self) -> tuple[float, float]:
        """The range of qualities a variable-rate model codes at (1 to the number of λs)."""
        return (1.0, float(len(self.lambdas)))

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Build the CDF tables; by default on :data:`SCALE_TABLE`, finer than CompressAI's."""
        return super().update(SCALE_TABLE if scale_table is None else scale_table, force, update_quantiles)

    def exact_hyper_synthesis(self) -> FixedPointTransform:
        """h_s frozen into integers: what coding uses, on every machine."""
        return FixedPointTransform.of(self.h_s.layers)

    # -- the variable rate --------------------------------------------------------------------

    def level_gains(self, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (gain, inverse gain) of integer levels 0..L-1, one per image, shape (B, M, 1, 1)."""
        return self.gains[levels][..., None, None], self.inverse_gains[levels][..., None, None]

    def quality_gains(self, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Coding: float64 (gain, inverse gain) at ``quality``, shape (1, M, 1, 1).

        Linear interpolation between the two neighbouring levels, in the
        hundredths streams record, with exactly rounded float64 operations only,
        so that the decoder computes the very numbers the encoder used.
        """
        low, high = self.qualities
        steps = quality_steps(quality)
        if not low * QUALITY_STEPS <= steps <= high * QUALITY_STEPS:
            raise ValueError(f"quality must lie in [{low:g}, {high:g}], not {quality}")
        level, fraction = divmod(steps - QUALITY_STEPS, QUALITY_STEPS)
        weight = fraction / QUALITY_STEPS

        def interpolate(table: torch.Tensor) -> torch.Tensor:
            table = table.detach().cpu().double()
            value = table[level]
            if fraction:
                value = value * (1 - weight) + table[level + 1] * weight
            return value[None, :, None, None]

        return interpolate(self.gains), interpolate(self.inverse_gains)

    # -- training and evaluation ---------------------------------------------------------------

    def prior_parameters(self, z_hat: torch.Tensor, exact: Optional[FixedPointTransform] = None):
        """(means or None, scales) for y from the exact h_s (``exact``, or built now) — what coding uses."""
        return self.split_prior((exact or self.exact_hyper_synthesis())(z_hat))

    def split_prior(self, params: torch.Tensor):
        """(means or None, scales) from h_s's output: a mean-scale h_s stacks means, then scales."""
        if self.config["prior"] == "mean-scale":
            means, scales = params.chunk(2, dim=1)
            return means, scales
        return None, params

    def synthesis(self, y_hat: torch.Tensor, keep: Optional[Core] = None, bf16_correction: bool = False):
        """g_s then the post-filter; with ``keep`` (pixel rows, columns: the pixels wanted and the
        :data:`~attncomp.models.layers.HALO` around them that the post-filter reads), g_s computes only those.
        ``bf16_correction``: a residual post-filter computes its correction in bf16 (see :class:`PostFilter`)."""
        image = self.g_s(y_hat, keep)
        if isinstance(self.post_filter, PostFilter):
            return self.post_filter(image, bf16_correction)
        return image

    def hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        """What h_a sees: |y| for a scale prior (Ballé et al.), y itself for a mean-scale prior."""
        return y if self.config["prior"] == "mean-scale" else torch.abs(y)

    def forward(
        self, x: torch.Tensor, levels: Optional[torch.Tensor] = None, quality: Optional[float] = None,
        exact: Optional[FixedPointTransform] = None, synthesis_input: Literal["noise", "rounded"] = "noise",
    ):
        """Reconstruction and likelihoods; a variable-rate model takes per-image ``levels`` (training) or a
        ``quality``. Outside training the prior comes from the exact h_s: ``exact``, or built now.

        ``synthesis_input`` (training only): what g_s reconstructs from. ``noise``: y plus uniform
        noise, as the rate sees it (Ballé et al.); ``rounded``: y rounded around its means as the coder
        rounds it, with a straight-through gradient, while the rate still sees the noise (Minnen & Singh,
        2020): g_s then trains on the values it decodes. Outside training ŷ is always rounded."""
        y_hat, likelihoods = self.quantized_latents(x, levels, quality, exact, synthesis_input=synthesis_input)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": likelihoods}

    def quantized_latents(
        self, x: torch.Tensor, levels: Optional[torch.Tensor] = None, quality: Optional[float] = None,
        exact: Optional[FixedPointTransform] = None, core: Optional[Core] = None,
        synthesis_input: Literal["noise", "rounded"] = "noise",
    ) -> tuple[torch.Tensor, dict]:
        """The forward pass up to g_s: (ŷ as g_s takes it, likelihoods) — all a rate estimate needs.
        ``core``: see :meth:`analysis`; ``synthesis_input``: see :meth:`forward`."""
        if synthesis_input not in ("noise", "rounded"):
            raise ValueError(f"synthesis_input must be noise or rounded, not {synthesis_input!r}")
        latents = self._latents_and_prior(x, exact, core)
        return self._quantized_at(latents, *self._gains(levels, quality), synthesis_input)

    def each_level(self, x: torch.Tensor, exact: Optional[FixedPointTransform] = None):
        """An iterator over ``forward(x, levels=…)`` at each level of a variable-rate model, in order.

        g_a, h_a and h_s do not depend on the rate, so they run once for all
        levels (validation measures every level of every image). Outside
        training only: in training, z's noise would be shared by the levels.
        """
        if not self.lambdas:
            raise ValueError("a fixed-rate model has no levels")
        if self.training:
            raise ValueError("each_level is for evaluation: call .eval() first")
        latents = self._latents_and_prior(x, exact)  # the exact h_s, if not given, is frozen there once

        def outputs():
            for level in range(len(self.lambdas)):
                levels = torch.full((x.shape[0],), level, device=x.device)
                y_hat, likelihoods = self._quantized_at(latents, *self.level_gains(levels))
                yield {"x_hat": self.synthesis(y_hat), "likelihoods": likelihoods}

        return outputs()

    def _latents_and_prior(self, x: torch.Tensor, exact: Optional[FixedPointTransform], core=None) -> tuple:
        """(y, means or None, scales, z's likelihoods): the part of the forward pass every rate shares."""
        y = cropped(self.g_a(x), core)
        z = self.h_a(self.hyper_input(y))
        z_hat, z_likelihoods = in_float32(self.entropy_bottleneck)(z)
        # float h_s while training (differentiable); exact otherwise, so evaluation sees the coder's numbers
        means, scales = self.split_prior(self.h_s(z_hat)) if self.training else self.prior_parameters(z_hat, exact)
        return y, means, scales, z_likelihoods

    def _quantized_at(self, latents: tuple, gain, inverse, synthesis_input="noise") -> tuple[torch.Tensor, dict]:
        """(ŷ as g_s takes it, likelihoods) of shared ``latents`` at one rate's gains (None: fixed rate)."""
        y, means, scales, z_likelihoods = latents
        y, scales, means = _gained(gain, y, scales, means)
        y_hat, y_likelihoods = in_float32(self.gaussian_conditional)(y, scales, *([] if means is None else [means]))
        if self.training and synthesis_input == "rounded":  # in float32, as the coder rounds
            offset = 0.0 if means is None else means.float()
            y_hat = quantize_ste(y.float() - offset) + offset
        if inverse is not None:
            y_hat = y_hat * inverse.to(y_hat.dtype)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def _gains(self, levels, quality):
        if not self.lambdas:
            if levels is not None or quality is not None:
                raise ValueError("a fixed-rate model takes no levels or quality")
            return None, None
        if levels is not None:
            return self.level_gains(levels)
        if quality is None:
            raise ValueError("a variable-rate model needs per-image levels or a quality")
        return tuple(g.float().to(self.gains.device) for g in self.quality_gains(quality))

    # -- encoder-side refinement -----------------------------------------------------------------

    def analysis(self, x: torch.Tensor, core: Optional[Core] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents the encoder codes: y and the hyper-latent z.

        ``core`` (latent rows, latent columns) is the part of y that is coded when ``x`` is a tile with
        context around it (:mod:`attncomp.codec`): y is cropped to it, and z summarises the crop.
        """
        y = cropped(self.g_a(x).float(), core)
        return y, self.h_a(self.hyper_input(y)).float()

    def relaxed_rate_distortion(self, latents, quantize, quality: Optional[float] = None):
        """Reconstruction and total bits of ``latents`` under a differentiable ``quantize(v, offset)``.

        For encoder-side latent optimisation (:mod:`attncomp.codec.refine`):
        ``quantize`` stands in for the coder's rounding (y to integers around
        its means, z to integers around the bottleneck's medians). Likelihoods
        stay float32. The prior comes from the float h_s (differentiable), so
        the rate matches the coder's up to the exact h_s's rounding.
        """
        y, z = latents
        z_hat = quantize(z, bottleneck_medians(self.entropy_bottleneck))
        means, scales = self.split_prior(self.h_s(z_hat))
        gain, inverse = self._gains(None, quality)
        y, scales, means = _gained(gain, y, scales, means)
        y_hat = quantize(y, 0.0 if means is None else means)
        bits = in_float32(lambda z, y: rd.bits({"z": z, "y": y}))(
            bottleneck_likelihoods(self.entropy_bottleneck, z_hat),
            conditional_likelihoods(self.gaussian_conditional, y_hat, scales, means),
        )
        return self.synthesis(y_hat if inverse is None else y_hat * inverse), bits

    # -- coding -----------------------------------------------------------------------------------

    def compress(self, x: torch.Tensor, quality: Optional[float] = None, exact=None, core: Optional[Core] = None) -> dict:
        """``x`` coded; ``core``: see :meth:`analysis`."""
        return self.compress_latents(self.analysis(x, core), quality, exact)

    def _coding_prior(self, z_hat, quality, exact):
        """float64 (means or None, scale indexes, gain or None, inverse gain or None), identical on both sides."""
        means, scales = self.prior_parameters(z_hat.cpu(), exact)  # the coder's numbers live on the CPU
        gain = inverse = None
        if self.lambdas:
            if quality is None:
                raise ValueError("a variable-rate model codes at a quality: pass one")
            gain, inverse = self.quality_gains(quality)
            scales, means = _gained(gain, scales, means)
        return means, self.scale_indexes(scales), gain, inverse

    def scale_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """CompressAI's ``build_indexes`` in one vectorised, exact float64 comparison.

        An index counts the scale-table entries (all but the last) strictly
        below the lower-bounded scale, exactly as the reference loop does.
        """
        conditional = self.gaussian_conditional
        bound = scale_bound(conditional)
        table = conditional.scale_table[:-1].to(scales.device, torch.float64)  # the model may sit on a GPU
        return torch.bucketize(scales.to(torch.float64).clamp_min(bound).contiguous(), table).int()

    def compress_latents(self, latents, quality: Optional[float] = None, exact=None) -> dict:
        y, z = latents
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        means, indexes, gain, _ = self._coding_prior(z_hat, quality, exact)
        (y,) = _gained(gain, y.detach().cpu().double())  # rounding y is the encoder's choice: any precision works
        y_strings = self.gaussian_conditional.compress(y, indexes, means)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    def decompress(
        self, strings: list, shape, quality: Optional[float] = None, exact=None, precision: str = "float32"
    ) -> dict:
        """ŷ decoded exactly, then synthesised at ``precision`` (one of
        :data:`~attncomp.catalog.SYNTHESIS_PRECISIONS`; ŷ is the same at each)."""
        y_hat = self.decompress_latents(strings, shape, quality, exact)
        return {"x_hat": self.decoded_image(y_hat, precision), "y_hat": y_hat}

    def decoded_image(self, y_hat: torch.Tensor, precision: str = "float32", keep: Optional[Core] = None):
        """The image of decoded latents in [0, 1]: :meth:`synthesis` (of ``keep`` only, given it) at ``precision``:
        float32; ``mixed``, the residual post-filter's correction in bf16; ``bf16``, all under bf16 autocast."""
        if precision == "bf16":
            return in_bfloat16(lambda y: self.synthesis(y, keep))(y_hat).clamp_(0, 1)
        return self.synthesis(y_hat, keep, bf16_correction=precision == "mixed").clamp_(0, 1)

    def decompress_latents(self, strings: list, shape, quality: Optional[float] = None, exact=None) -> torch.Tensor:
        """ŷ as g_s takes it, decoded exactly: the same numbers as the encoder's on any machine."""
        z_hat = self.entropy_bottleneck.decompress(strings[1], tuple(shape))
        means, indexes, _, inverse = self._coding_prior(z_hat, quality, exact)
        # like the coder's float64 numbers (means, gains), the symbols live on the CPU
        y_hat = conditional_symbols(self.gaussian_conditional, strings[0], indexes)
        if means is not None:
            y_hat = y_hat + means
        if inverse is not None:
            y_hat = y_hat * inverse
        return y_hat.float().to(z_hat.device)
