"""Weights loaded for coding: an immutable description of what codes, with the network that does it."""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping, Optional

import torch
from compressai.models import CompressionModel

from ..catalog import on_quality_grid
from ..errors import WeightsError
from .fixed_point import FixedPointTransform
from .layers import synthesis_precision


def state_hash(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """First 8 bytes of SHA-256 over a state dict (names, dtypes, shapes, float32 values): a stream
    records it, so a decoder can tell whether it holds the weights that wrote the stream."""
    digest = hashlib.sha256()
    for name, value in sorted(state_dict.items()):
        tensor = value.detach().cpu()
        tensor = (tensor.float() if tensor.is_floating_point() else tensor).contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return digest.digest()[:8]


def image_channels(network: torch.nn.Module) -> int:
    """Channels of the images a network codes: 1 for the grayscale autoencoder, else 3."""
    return getattr(network, "config", {}).get("in_channels", 3)


def exact_h_s(network: CompressionModel) -> Optional[FixedPointTransform]:
    """The network's h_s frozen into integers (what its coder uses), or None if it has no hyperprior."""
    return network.exact_hyper_synthesis() if hasattr(network, "exact_hyper_synthesis") else None


@dataclass(frozen=True)
class CodingModel:
    """A zoo network with fixed weights, ready to code, and everything a stream must record about it.

    ``quality`` is what the codec writes into a stream and what a decoder loads
    again: the CompressAI quality a fixed-rate model was trained at (None for a
    custom λ), or the quality a variable-rate model codes at (1 to its number of
    λs, in hundredths). Made by :func:`attncomp.models.load`, :func:`~attncomp.models.load_weights`
    or :meth:`from_network`; :meth:`at` gives the same weights at another quality.
    """

    name: str
    network: CompressionModel = field(repr=False)
    weights_hash: bytes
    quality: Optional[float] = None
    lmbda: Optional[float] = None
    training: Mapping = field(default_factory=dict, repr=False)
    exact_h_s: Optional[FixedPointTransform] = field(default=None, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "training", MappingProxyType(dict(self.training)))

    @classmethod
    def from_network(cls, network: CompressionModel, name: str, quality=None, lmbda=None, training=None):
        """Code with a copy of an in-memory network (e.g. just trained): later changes to it do not reach the copy.

        ``quality`` is the quality a fixed-rate network was trained at (what its streams record), or
        the quality a variable-rate network is to code at.
        """
        network = copy.deepcopy(network).eval()
        network.update(force=True)  # CDF tables of the weights as they are now (a trained network has stale ones)
        model = cls(name, network, state_hash(network.state_dict()), None, lmbda, training or {}, exact_h_s(network))
        if quality is None:
            return model
        return model.at(quality) if model.variable_rate else replace(model, quality=quality)

    @property
    def config(self) -> Mapping:
        return MappingProxyType(dict(self.network.config))

    @property
    def variable_rate(self) -> bool:
        return bool(self.config.get("lambdas"))

    @property
    def image_channels(self) -> int:
        """1 for the grayscale autoencoder, else 3."""
        return image_channels(self.network)

    @property
    def device(self) -> torch.device:
        """Where the transforms run (a GPU works too: the coding indexes are exact everywhere)."""
        return next(self.network.parameters()).device

    @property
    def downsampling_factor(self) -> int:
        return self.network.downsampling_factor

    @property
    def distortion(self) -> str:
        return self.training.get("distortion", "mse")

    def at(self, quality: float) -> CodingModel:
        """The same weights coding at ``quality`` (a variable-rate model only; others have one)."""
        if not self.variable_rate:
            if quality != self.quality:
                trained_for = f"quality {self.quality} only" if self.quality else f"their own λ={self.lmbda} only"
                raise WeightsError(f"{self.name} weights code at {trained_for}, not quality {quality}")
            return self
        low, high = self.network.qualities
        if not low <= quality <= high or not on_quality_grid(quality):
            raise WeightsError(f"{self.name} codes qualities {low:g} to {high:g} in steps of 0.01, not {quality}")
        return replace(self, quality=float(quality), lmbda=_interpolated_lambda(self.config["lambdas"], quality))

    def to(self, device=None, memory_format: torch.memory_format | None = None) -> CodingModel:
        """The same model on another device or memory format; a GPU codes too, since the coding indexes
        are exact anywhere. No dtype: a cast would change the scale table, quantiles and gains the
        indexes come from, and the stream would decode wrongly under the same weights hash."""
        if isinstance(device, torch.dtype):
            raise TypeError("CodingModel.to takes a device and a memory format, not a dtype")
        moves = {"memory_format": memory_format} if memory_format is not None else {}
        return replace(self, network=copy.deepcopy(self.network).to(device, **moves))

    def _exact(self) -> dict:
        return {"exact": self.exact_h_s} if self.exact_h_s is not None else {}

    def _rate(self) -> dict:
        """A variable-rate network's quality argument; nothing for the others."""
        if not self.variable_rate:
            return {}
        if self.quality is None:
            raise WeightsError(f"{self.name} is a variable-rate model: choose a quality with .at(quality)")
        return {"quality": self.quality}

    def compress(self, x: torch.Tensor, core=None) -> dict:
        """``x`` coded; ``core`` names the latents of a tile that holds context around them (see ``analysis``)."""
        return self.network.compress(x, **self._rate(), **self._exact(), **_core(core))

    def compress_latents(self, latents) -> dict:
        return self.network.compress_latents(latents, **self._rate(), **self._exact())

    @property
    def latent_stride(self) -> int:
        """Pixels per latent along each side, for a network that codes tiles with context around them
        (``analysis(x, core)``, ``decompress_latents``, ``synthesis``); 0 for one whose tiles code alone."""
        return getattr(type(self.network), "latent_stride", 0)

    def decompress_latents(self, strings, shape) -> torch.Tensor:
        """ŷ as the network's synthesis takes it, decoded exactly."""
        return self.network.decompress_latents(strings, shape, **self._rate(), **self._exact())

    def synthesis_precision(self, requested: str) -> str:
        """What the synthesis precision ``requested`` amounts to for this model on its device: float32 where
        bf16 is slow (:func:`~attncomp.models.layers.synthesis_precision`), and ``mixed`` is float32 for a model
        without a residual post-filter (there is no correction to compute in bf16)."""
        precision = synthesis_precision(requested, self.device)
        return "float32" if precision == "mixed" and self.config.get("postfilter") != "residual" else precision

    def synthesize(self, y_hat: torch.Tensor, precision: str = "float32", keep=None) -> torch.Tensor:
        """The image of ``y_hat`` in [0, 1] (the network's ``decoded_image``)."""
        return self.network.decoded_image(y_hat, precision, keep)

    def decompress(self, strings, shape, precision: str = "float32") -> dict:
        """ŷ decoded exactly and synthesised at ``precision`` (:data:`~attncomp.catalog.SYNTHESIS_PRECISIONS`)."""
        return self.network.decompress(strings, shape, **self._rate(), **self._exact(), precision=precision)

    def relaxed_rate_distortion(self, latents, quantize):
        return self.network.relaxed_rate_distortion(latents, quantize, **self._rate())

    def estimate(self, x: torch.Tensor) -> dict:
        """The network's forward pass at this quality: reconstruction and likelihoods (the estimated rate)."""
        return self.network(x, **self._rate(), **self._exact())

    def likelihoods(self, x: torch.Tensor, core=None) -> dict:
        """The likelihoods of ``x``'s latents (its ``core``'s, given one) at this quality (the estimated rate),
        without synthesising it."""
        return self.network.quantized_latents(x, **self._rate(), **self._exact(), **_core(core))[1]

    def analysis(self, x: torch.Tensor, core=None):
        return self.network.analysis(x, **_core(core))

    @property
    def supports_refinement(self) -> bool:
        return hasattr(self.network, "relaxed_rate_distortion")


def _core(core) -> dict:
    """``core`` as a keyword for the networks that take one (those with a ``latent_stride``)."""
    return {} if core is None else {"core": core}


def _interpolated_lambda(lambdas, quality: float) -> float:
    """λ between two levels, geometric (λ roughly doubles per CompressAI quality)."""
    level = min(int(quality), len(lambdas) - 1)
    weight = quality - level
    if weight in (0, 1):
        return lambdas[level - 1 + int(weight)]
    return math.exp((1 - weight) * math.log(lambdas[level - 1]) + weight * math.log(lambdas[level]))
