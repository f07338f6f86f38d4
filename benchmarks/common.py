"""Shared by the benchmark scripts: the model under test and the Kodak images."""

import argparse
import copy
import os
import time
from pathlib import Path

import torch

from attncomp.models import DEFAULT_MODEL, load, load_weights


def data_dir() -> Path:
    """``$ATTNCOMP_DATA`` (default: the workspace's ``../shared/data``), read when a script starts."""
    return Path(os.environ.get("ATTNCOMP_DATA", "../shared/data"))


def kodak_dir() -> Path:
    return data_dir() / "kodak"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--weights", help="exported weights (default: --model's bundled weights)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo model without --weights (default {DEFAULT_MODEL})")
    p.add_argument("--quality", type=float, default=3, help="the bundled model's, or a variable-rate file's")
    p.add_argument("--images", default=str(kodak_dir()))
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    return p


def model_from(args):
    """``--weights`` (a variable-rate file at ``--quality``), else ``--model``'s bundled weights at ``--quality``."""
    if not args.weights:
        return load(args.model, args.quality)
    model = load_weights(args.weights)
    return model.at(args.quality) if model.variable_rate else model


class _Prior(torch.nn.Module):
    """attncomp's h_s as CompressAI's models call it: the scales (then the means, for a mean-scale prior),
    times a variable-rate network's gain at one quality, as attncomp scales them before coding."""

    def __init__(self, h_s, split_prior, gain):
        super().__init__()
        self.h_s, self.split_prior, self.gain = h_s, split_prior, gain

    def split(self, z_hat):
        """(scales, means or None), gained."""
        means, scales = self.split_prior(self.h_s(z_hat))
        if self.gain is None:
            return scales, means
        return scales * self.gain, None if means is None else means * self.gain

    def forward(self, z_hat):
        scales, means = self.split(z_hat)
        return scales if means is None else torch.cat([scales, means], 1)


def compressai_reference(net, quality=None):
    """CompressAI's own model of the same N/M holding ``net``'s weights for every layer they share.

    ``ScaleHyperprior`` for a scale prior, ``MeanScaleHyperprior`` for a mean-scale one; attncomp's
    transforms are CompressAI's under ``.body``, so the names map one to one. Its h_s is attncomp's, in
    float32 (CompressAI's mean-scale h_s is wider, and any other one would give other scales, so other
    rates). A variable-rate network codes at ``quality``: its gains scale the prior's output, and the
    inverse gains g_s's first layer (a transposed convolution is linear in each input channel).
    Code with :func:`reference_stream`, which gives the reference attncomp's own latents.
    """
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    net = copy.deepcopy(net).float().eval()
    mean_scale = net.config.get("prior") == "mean-scale"
    reference = (MeanScaleHyperprior if mean_scale else ScaleHyperprior)(net.N, net.M).eval()
    ours = {k.replace(".body.", "."): v for k, v in net.state_dict().items()}
    reference.load_state_dict({k: v for k, v in ours.items() if k in reference.state_dict() and not k.startswith("h_s.")},
                              strict=False)  # fmt: skip
    gain = None
    if net.config.get("lambdas"):
        gain, inverse = (g.float() for g in net.quality_gains(quality))
        with torch.no_grad():
            reference.g_s[0].weight.mul_(inverse.reshape(-1, 1, 1, 1))  # (in, out, k, k)
    reference.h_s = _Prior(net.h_s, net.split_prior, gain)
    reference.update(force=True)
    return reference


@torch.no_grad()
def reference_stream(reference, net, x) -> dict:
    """The reference's strings of attncomp's latents of ``x`` (g_a and h_a with their attention; gained y
    for a variable-rate network), so that it decodes at attncomp's rate; ``reference.decompress`` reads them."""
    y, z = net.analysis(x)
    z_strings = reference.entropy_bottleneck.compress(z)
    z_hat = reference.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
    scales, means = reference.h_s.split(z_hat)
    if reference.h_s.gain is not None:
        y = y * reference.h_s.gain
    y_strings = reference.gaussian_conditional.compress(y, reference.gaussian_conditional.build_indexes(scales), means=means)
    return {"strings": [y_strings, z_strings], "shape": z.shape[-2:]}


def best_times(fns: dict, repeats: int) -> dict:
    """The best of ``repeats`` timings of each function, taken in turns so that a busy moment hits all of them."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}
