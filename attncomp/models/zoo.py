"""Model registry and the exported weights format.

A zoo name maps to a class, its constructor config and the λ of each
quality (the names and settings are in :mod:`attncomp.catalog`, which has
no torch). Quality q uses CompressAI's λ for its quality q (loss =
λ·255²·MSE + bpp), so attncomp's and CompressAI's qualities line up.

A weights file (``*.pt``) is a plain dict that ``torch.load(weights_only=True)``
reads without running any code::

    {"format": "attncomp-weights", "version": 2, "model": name,
     "config": {...}, "quality": q or None, "lmbda": λ,
     "training": {...}, "state_dict": {...}}

Transform weights may be stored in float16 to keep the package small; the
entropy models (CDF tables, quantiles) stay exact. Loading casts everything
back to float32, so encoder and decoder always run the same numbers. A file
may also be kept xz-compressed (``*.pt.xz``, as the ablation's are in git):
every loader here reads it as it is.
"""

from __future__ import annotations

import inspect
import io
import lzma
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.models.utils import update_registered_buffers

from ..catalog import CATALOG, DEFAULT_MODEL, DEFAULT_QUALITY, CatalogEntry, check_quality
from ..errors import WeightsError
from ..files import atomic_write
from .hyperprior import AttentionHyperprior
from .coding import CodingModel, exact_h_s, state_hash
from .entropy_internals import CDF_BUFFERS
from .spatial_ae import SpatialAttentionAE

FORMAT = "attncomp-weights"
FORMAT_VERSION = 2  # 2: named transform submodules, string switches; 1 is read and upgraded
KINDS = {"hyperprior": AttentionHyperprior, "spatial-ae": SpatialAttentionAE}  # catalog kind → class


@dataclass(frozen=True)
class ZooEntry(CatalogEntry):
    """A catalog entry with the class its kind names."""

    cls: type = field(kw_only=True)  # required; keyword-only, as it follows the catalog's fields with defaults


# the names and settings live in the torch-free catalog, so the CLI can list them without importing torch
ZOO: dict[str, ZooEntry] = {name: ZooEntry(**vars(spec), cls=KINDS[spec.kind]) for name, spec in CATALOG.items()}
_WEIGHTS_DIR = resources.files(__package__) / "weights"
_EXACT_PREFIXES = ("entropy_bottleneck.", "gaussian_conditional.", "gains", "inverse_gains")
ENTROPY_TABLE_BUFFERS = (*CDF_BUFFERS, "scale_table")  # sized by training: resized on load


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


def bundled_weights(name: str, quality: Optional[float]) -> Path:
    """Where the package keeps ``name``'s weights: one file per quality, or one for a variable-rate model."""
    return Path(str(_WEIGHTS_DIR / (f"{name}-q{quality:g}.pt" if quality is not None else f"{name}.pt")))


def available_qualities(name: str) -> list[int]:
    """The qualities bundled weights exist for (every level of a bundled variable-rate model)."""
    spec = entry(name)
    if spec.variable_rate:
        return list(range(1, len(spec.config["lambdas"]) + 1)) if bundled_weights(name, None).is_file() else []
    return [q for q in sorted(spec.lambdas) if bundled_weights(name, q).is_file()]


def load(name: str = DEFAULT_MODEL, quality: float = DEFAULT_QUALITY) -> CodingModel:
    """The bundled trained model ``name`` at ``quality``, ready to code.

    A variable-rate model (one file, ``{name}.pt``) codes any quality in its
    range, fractional ones too; a fixed-rate model has one file per quality.
    """
    spec = entry(name)
    check_quality(name, quality)
    if spec.variable_rate:
        path = bundled_weights(name, None)
        if not path.is_file():
            raise WeightsError(f"no bundled weights for {name}; train them with attncomp-train --model.model {name}")
        return load_weights(path, name).at(quality)
    path = bundled_weights(name, int(quality))
    if not path.is_file():
        have = available_qualities(name)
        raise WeightsError(
            f"no bundled weights for {name} at quality {quality:g}"
            + (f"; bundled qualities: {have}" if have else "; train some with attncomp-train")
            + "".join(f"; --model {other} codes it" for other in bundled_variable_rate(quality))
        )
    return load_weights(path, name)


def bundled_variable_rate(quality: float) -> list[str]:
    """The bundled variable-rate models that code ``quality``."""
    return [name for name, spec in ZOO.items() if spec.variable_rate and quality in available_qualities(name)]


def save_weights(model: CompressionModel, path, name: str, quality=None, lmbda=None, training=None, half=False):
    """Export ``model`` (CDFs updated) to ``path`` atomically."""
    model.update(force=True)
    state = {}
    for key, value in model.state_dict().items():
        exact = key.startswith(_EXACT_PREFIXES) or not value.is_floating_point()
        state[key] = value.detach().cpu().clone() if exact or not half else value.detach().cpu().half()
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items()}
    payload = dict(
        format=FORMAT,
        version=FORMAT_VERSION,
        model=name,
        config=config,
        quality=quality,
        lmbda=lmbda,
        training=dict(training or {}),
        state_dict=state,
    )
    atomic_torch_save(payload, path)


def rewrite_weights(source, target, name: Optional[str] = None, quality=None, half: bool = True) -> None:
    """``source`` saved again as ``target``, its λ and training record kept: by default with float16
    transforms (what the package bundles), optionally under another zoo ``name`` or ``quality``."""
    payload = read_weights(source)
    quality = payload.get("quality") if quality is None else quality
    save_weights(build_network(payload, source), target, name or payload["model"], quality, payload.get("lmbda"),
                 payload.get("training"), half=half)  # fmt: skip


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` that never leaves a half-written file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def safe_load(path, what: str = "weights file"):
    """``torch.load`` restricted to plain data (``weights_only``), of a file or its xz-compressed copy
    (``*.xz``); any failure is a WeightsError."""
    try:
        if str(path).endswith(".xz"):
            return torch.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{what} not found: {path}") from None
    except Exception as exc:
        raise WeightsError(f"cannot read {what} {path} ({type(exc).__name__}); it may be truncated or corrupt") from None


def training_chain(training: Optional[dict], through_warm_starts: bool = True) -> list[dict]:
    """The training records behind weights, newest first: their run's, then those of the weights each run
    started from (``initialised_from``, nested). A warm start (another model's tensors) ends the chain
    unless ``through_warm_starts``."""
    runs = []
    while training:
        runs.append(training)
        training = training.get("initialised_from")
        if training and "warm_start" in training and not through_warm_starts:
            break
    return runs


def trained_steps(training: Optional[dict]) -> int:
    """Training steps behind weights of this architecture: their run's and every run it continued
    (``--model.init_weights``), 0 without a record; a warm start's source, another model, does not count."""
    return sum(run.get("steps", 0) for run in training_chain(training, through_warm_starts=False))


def weights_in(folder: Path, stem: str) -> Optional[Path]:
    """``folder/stem.pt``, or else its xz-compressed copy ``stem.pt.xz``; None if neither is there."""
    return next((p for p in (folder / f"{stem}.pt", folder / f"{stem}.pt.xz") if p.is_file()), None)


def read_weights(path) -> dict:
    """The validated payload of a weights file (no code is executed), in the current format's terms."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path} is not an attncomp weights file")
    if type(payload.get("version")) is not int or payload["version"] not in (1, FORMAT_VERSION):
        raise WeightsError(f"{path} has weights format version {payload.get('version')}, expected {FORMAT_VERSION}")
    if not isinstance(payload.get("model"), str) or not isinstance(payload.get("state_dict"), dict):
        raise WeightsError(f"{path} is an incomplete attncomp weights file (no model name or state dict)")
    tensors = all(isinstance(value, torch.Tensor) for value in payload["state_dict"].values())
    numbers = all(_is_number_or_none(payload.get(key)) for key in ("quality", "lmbda"))
    if not isinstance(payload.get("config"), dict) or not tensors or not numbers \
            or not isinstance(payload.get("training") or {}, dict):
        raise WeightsError(f"{path} is a damaged attncomp weights file (its config, a weight, its quality, λ or "
                           "training record is not what it stores)")
    return payload


def _is_number_or_none(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def build_network(payload: dict, path="weights") -> CompressionModel:
    """The network a weights payload describes, with its weights, in float32 and train mode."""
    spec = entry(payload["model"])
    config, state = payload["config"], payload["state_dict"]
    try:
        if payload["version"] == 1 and spec.cls is AttentionHyperprior:
            config, state = upgrade_v1_hyperprior(config, state)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        network = spec.cls(**config)
        load_state(network, state)
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        raise WeightsError(f"{path} does not fit model {payload['model']}: {str(exc).splitlines()[0]}") from None
    return network


_V1_BODY_LENGTHS = {"g_a": 7, "g_s": 7, "h_a": 5, "h_s": 6}


def upgrade_v1_hyperprior(config: dict, state: dict) -> tuple[dict, dict]:
    """Format 1 (CompressAI's Sequentials with the attention block appended, boolean switches) in format 2 terms."""

    def rename(key: str) -> str:
        transform, _, rest = key.partition(".")
        if transform not in _V1_BODY_LENGTHS:
            return key
        index, _, leaf = rest.partition(".")
        if int(index) < _V1_BODY_LENGTHS[transform]:
            return f"{transform}.body.{index}.{leaf}"
        return f"{transform}.attention.{leaf}"

    switches = {k: ("paper" if config.get(k, True) else "none") for k in ("attention", "postfilter")}
    return {**config, **switches}, {rename(k): v for k, v in state.items()}


def load_weights(path, name: Optional[str] = None) -> CodingModel:
    """A weights file, ready to code: network in eval mode with its CDFs and exact h_s, channels_last.

    The weights hash is taken over the state dict as the file stores it, so streams
    written before a format upgrade still find their weights.
    """
    payload = read_weights(path)
    if name is not None and payload["model"] != name:
        raise WeightsError(f"{path} holds {payload['model']}, not {name}")
    with torch.inference_mode(False):
        network = build_network(payload, path).eval()
        # NHWC convolutions are ~1.5x faster on CPU; the entropy decoding does not depend on it
        network = network.to(memory_format=torch.channels_last)
        try:
            exact = exact_h_s(network)
        except ValueError as exc:  # e.g. h_s weights too large for its fixed-point arithmetic
            raise WeightsError(f"{path}: {exc}") from None
    return CodingModel(
        payload["model"], network, state_hash(payload["state_dict"]), payload.get("quality"), payload.get("lmbda"),
        payload.get("training") or {}, exact,
    )  # fmt: skip


def load_state(model: CompressionModel, state_dict: dict, strict: bool = True):
    """``load_state_dict`` that also resizes CDF tables already built (CompressAI only fills empty ones)."""
    for name, module in model.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            own = dict(module.named_buffers(recurse=False))
            tables = [b for b in ENTROPY_TABLE_BUFFERS if b in own and f"{name}.{b}" in state_dict]
            update_registered_buffers(module, name, tables, state_dict, policy="resize")
    return model.load_state_dict(state_dict, strict=strict)

