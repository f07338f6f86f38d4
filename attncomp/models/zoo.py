"""Model registry and the exported weights format.

A zoo name maps to a class, its constructor config and the λ of each
quality (the names and settings are in :mod:`attncomp.catalog`, which has
no torch). Quality q uses CompressAI's λ for its quality q (loss =
λ·255²·MSE + bpp), so attncomp's and CompressAI's qualities line up.

A weights file (``*.pt``) is a plain dict that ``torch.load(weights_only=True)``
reads without running any code::

    {"format": "attncomp-weights", "version": 1, "model": name,
     "config": {...}, "quality": q or None, "lmbda": λ,
     "training": {...}, "state_dict": {...}}

Transform weights may be stored in float16 to keep the package small; the
entropy models (CDF tables, quantiles) stay exact. Loading casts everything
back to float32, so encoder and decoder always run the same numbers.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel

from ..catalog import CATALOG, COMPRESSAI_LAMBDAS, DEFAULT_MODEL, DEFAULT_QUALITY, LITE  # noqa: F401
from ..errors import WeightsError
from ..files import atomic_write
from .hyperprior import AttentionHyperprior
from .layers import cached_by_version
from .spatial_ae import SpatialAttentionAE

FORMAT = "attncomp-weights"
FORMAT_VERSION = 1
KINDS = {"hyperprior": AttentionHyperprior, "spatial-ae": SpatialAttentionAE}  # catalog kind → class


@dataclass(frozen=True)
class ZooEntry:
    cls: type
    config: dict
    lambdas: dict = field(default_factory=lambda: dict(COMPRESSAI_LAMBDAS))
    description: str = ""


# the names and settings live in the torch-free catalog, so the CLI can list them without importing torch
ZOO: dict[str, ZooEntry] = {
    name: ZooEntry(KINDS[spec.kind], spec.config, dict(spec.lambdas), spec.description)
    for name, spec in CATALOG.items()
}
_WEIGHTS_DIR = resources.files(__package__) / "weights"
_EXACT_PREFIXES = ("entropy_bottleneck.", "gaussian_conditional.")
CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(sorted(ZOO))}")
    return ZOO[name]


def create(name: str, **overrides) -> CompressionModel:
    """A freshly initialised (untrained) model of zoo type ``name``."""
    spec = entry(name)
    unknown = sorted(set(overrides) - set(inspect.signature(spec.cls).parameters))
    if unknown:
        raise WeightsError(f"{name} has no option {', '.join(unknown)}")
    return spec.cls(**{**spec.config, **overrides})


def bundled_weights(name: str, quality: int) -> Path:
    return Path(str(_WEIGHTS_DIR / f"{name}-q{quality}.pt"))


def available_qualities(name: str) -> list[int]:
    return [q for q in sorted(entry(name).lambdas) if bundled_weights(name, q).is_file()]


def load(name: str = DEFAULT_MODEL, quality: int = DEFAULT_QUALITY) -> CompressionModel:
    """The bundled trained model ``name`` at ``quality``, ready to code (eval mode)."""
    spec = entry(name)
    if quality not in spec.lambdas:
        raise WeightsError(f"quality {quality} is not defined for {name}; use 1..{max(spec.lambdas)}")
    path = bundled_weights(name, quality)
    if not path.is_file():
        have = available_qualities(name)
        raise WeightsError(
            f"no bundled weights for {name} at quality {quality}"
            + (f"; bundled qualities: {have}" if have else "; train some with attncomp-train")
        )
    return load_weights(path)


def save_weights(model: CompressionModel, path, name: str, quality=None, lmbda=None, training=None, half=False):
    """Export ``model`` (CDFs updated) to ``path`` atomically."""
    model.update(force=True)
    state = {}
    for key, value in model.state_dict().items():
        exact = key.startswith(_EXACT_PREFIXES) or not value.is_floating_point()
        state[key] = value.detach().cpu().clone() if exact or not half else value.detach().cpu().half()
    payload = dict(
        format=FORMAT,
        version=FORMAT_VERSION,
        model=name,
        config=dict(model.config),
        quality=quality,
        lmbda=lmbda,
        training=dict(training or {}),
        state_dict=state,
    )
    atomic_torch_save(payload, path)


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` that never leaves a half-written file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def safe_load(path, what: str = "weights file"):
    """``torch.load`` restricted to plain data (``weights_only``); any failure is a WeightsError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{what} not found: {path}") from None
    except Exception as exc:
        raise WeightsError(f"cannot read {what} {path} ({type(exc).__name__}); it may be truncated or corrupt") from None


def read_weights(path) -> dict:
    """The validated payload of a weights file (no code is executed)."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path} is not an attncomp weights file")
    if payload.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{path} has weights format version {payload.get('version')}, expected {FORMAT_VERSION}")
    if not isinstance(payload.get("model"), str) or not isinstance(payload.get("state_dict"), dict):
        raise WeightsError(f"{path} is an incomplete attncomp weights file (no model name or state dict)")
    return payload


@torch.inference_mode(False)  # normal tensors even when loaded inside decode(): the caches need their versions
def load_weights(path) -> CompressionModel:
    """A model built from an exported weights file, in eval mode with its CDFs, channels_last."""
    payload = read_weights(path)
    spec = entry(payload["model"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model = spec.cls(**payload["config"])
        load_state(model, state)
    except (RuntimeError, TypeError, KeyError) as exc:
        raise WeightsError(f"{path} does not fit model {payload['model']}: {str(exc).splitlines()[0]}") from None
    # NHWC convolutions are ~1.5x faster on CPU; the entropy decoding does not depend on it
    model = model.eval().to(memory_format=torch.channels_last)
    model.zoo_name = payload["model"]
    model.quality = payload.get("quality")
    model.lmbda = payload.get("lmbda")
    model.training_info = payload.get("training", {})
    return model


def load_state(model: CompressionModel, state_dict: dict, strict: bool = True):
    """``load_state_dict`` that also resizes CDF tables already built (CompressAI only fills empty ones)."""
    for name, module in model.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            for buffer in CDF_BUFFERS:
                key = f"{name}.{buffer}"
                if key in state_dict and buffer in module._buffers:
                    module._buffers[buffer] = torch.empty_like(state_dict[key])
    return model.load_state_dict(state_dict, strict=strict)


def image_channels(model: torch.nn.Module) -> int:
    """Channels of the images ``model`` codes: 1 for the grayscale autoencoder, else 3."""
    return getattr(model, "config", {}).get("in_channels", 3)


def weights_hash(model: torch.nn.Module) -> bytes:
    """First 8 bytes of SHA-256 over the state dict: a stream remembers which weights wrote it.

    Cached on the model until a tensor of its state dict is replaced or changed in place
    (fine-tuning a loaded model must not let its streams claim the old weights).
    """
    state = model.state_dict()

    def compute():
        digest = hashlib.sha256()
        for name, value in sorted(state.items()):
            tensor = value.detach().cpu().contiguous()
            digest.update(name.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
        return digest.digest()[:8]

    return cached_by_version(model, "_weights_hash", state.values(), compute)
