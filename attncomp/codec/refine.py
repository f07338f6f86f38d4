"""Encoder-side latent optimisation: smaller files at the same quality, same decoder.

A trained analysis transform g_a only approximates, for each image, the
latents that minimise the rate–distortion loss the model was trained for
(the "amortisation gap", which is large for models trained briefly on a CPU).
Here the encoder starts from g_a's latents and runs a few Adam steps on the
loss λ·255²·MSE + bpp of this one image, rounding by stochastic Gumbel
annealing (SGA; Yang et al., 2020, "Improving Inference for Neural Image
Compression"): a random soft choice between the two nearest integers that
hardens step by step into the coder's rounding. The decoder is untouched and
the stream format is the same; only encoding gets slower.

The result is never worse than g_a's latents by the model's own estimate: both
are scored with hard rounding and the better one is coded. A fixed seed makes
encoding deterministic.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import WeightsError
from ..models import CodingModel
from ..models.layers import bfloat16_is_fast
from ..models.rd import objective

LEARNING_RATE = 0.01
SEED = 0
TAU_START, TAU_END = 0.5, 0.1  # SGA temperature, annealed geometrically over the steps
_EPS = 1e-6


def hard_round(value: torch.Tensor, offset) -> torch.Tensor:
    """The coder's rounding (integers around ``offset``) with a straight-through gradient."""
    return value + (torch.round(value - offset) + offset - value).detach()


def sga_round(value: torch.Tensor, offset, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Stochastic Gumbel annealing: floor or ceil, softly and at random; the nearer one likelier.

    The two logits are −atanh(distance to that integer)/τ; a Gumbel-softmax over two
    options is a sigmoid of their difference plus logistic noise. As τ → 0 the
    choice becomes the nearest integer.
    """
    shifted = value - offset
    floor = torch.floor(shifted).detach()
    frac = shifted - floor
    logit_up = -torch.atanh((1 - frac).clamp(_EPS, 1 - _EPS)) / tau
    logit_down = -torch.atanh(frac.clamp(_EPS, 1 - _EPS)) / tau
    u = torch.rand(value.shape, generator=generator, dtype=value.dtype, device=value.device).clamp(_EPS, 1 - _EPS)
    up = torch.sigmoid(logit_up - logit_down + torch.log(u) - torch.log1p(-u))
    return floor + up + offset


def rd_loss(model, latents, x: torch.Tensor, lmbda: float, quantize) -> torch.Tensor:
    """λ·255²·MSE + bpp of ``latents`` for ``x``, the loss the model was trained on."""
    x_hat, bits = model.relaxed_rate_distortion(latents, quantize)
    h, w = x.shape[-2:]
    mse = torch.mean((x_hat[..., :h, :w].float() - x) ** 2)
    return objective(lmbda, mse, bits / (h * w))


@contextlib.contextmanager
def _frozen(network):
    """Gradients only for the latents: a step is ~10% faster than when autograd merely skips the weights'."""
    flags = [(p, p.requires_grad) for p in network.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def check_refinable(model: CodingModel) -> None:
    """Refuse a model whose latents cannot be refined: no relaxed rate, no recorded λ, or an MS-SSIM model."""
    if not model.supports_refinement:
        raise WeightsError(f"{model.name} does not support encoder-side refinement")
    if model.lmbda is None:
        raise WeightsError("refinement needs the model's λ: these weights do not record one")
    if model.distortion != "mse":
        raise WeightsError("refinement lowers λ·255²·MSE + bpp, and these weights were trained for MS-SSIM")


def refine_latents(
    model: CodingModel, x_padded: torch.Tensor, size: tuple[int, int], steps: int, core=None,
):
    """Latents for ``x_padded`` that code the image region ``size`` (h, w) at a lower RD loss.

    With ``core`` (a tile with context around it, :mod:`attncomp.codec.tiles`), g_a reads the context and
    the core's latents are refined against the core's pixels, synthesised on their own: the decoder's
    synthesis also reads the neighbours' latents, which the loss leaves out.
    """
    check_refinable(model)
    lmbda = model.lmbda
    with torch.inference_mode(False), torch.enable_grad(), _frozen(model.network):
        x_padded = x_padded.clone()
        with torch.no_grad():
            start = model.analysis(x_padded, core)
        if core is not None:
            stride = model.latent_stride
            x_padded = x_padded[..., core[0].start * stride : core[0].stop * stride,
                                core[1].start * stride : core[1].stop * stride]  # fmt: skip
        x = x_padded[..., : size[0], : size[1]]
        latents = [t.clone().requires_grad_(True) for t in start]
        optimizer = torch.optim.Adam(latents, lr=LEARNING_RATE)
        generator = torch.Generator(x.device).manual_seed(SEED)
        for step in range(steps):
            tau = TAU_START * (TAU_END / TAU_START) ** (step / max(steps - 1, 1))
            # bf16: ~3x faster where the CPU has bf16 kernels (AVX-512); the bits stay float32
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bfloat16_is_fast(x.device)):
                loss = rd_loss(model, latents, x, lmbda, lambda v, o: sga_round(v, o, tau, generator))
            optimizer.zero_grad()
            loss.backward()  # the weights are frozen: only the latents get gradients
            optimizer.step()
        refined = [t.detach() for t in latents]
        with torch.no_grad():
            scores = [rd_loss(model, latents, x, lmbda, hard_round).item() for latents in (start, refined)]
    return refined if scores[1] < scores[0] else start
