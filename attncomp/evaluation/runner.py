"""Run codecs over an image set on real bitstreams and collect per-image measurements."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .. import image as imageio
from ..codec import DEFAULT_TILE, coded_tiles, decode, encode
from ..codec.tiles import tile_context
from ..errors import AttncompError
from ..models import CodingModel, rd
from . import anchors
from .metrics import mean_over_all, ms_ssim, psnr


@dataclass
class Record:
    codec: str
    setting: str
    image: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    encode_s: float
    decode_s: float
    estimated_bpp: float = math.nan
    lmbda: float = math.nan  # a model's λ at this setting (what it was trained, or is set, to trade off)


@dataclass
class TestImage:
    name: str
    image: object  # PIL image, L or RGB
    array: np.ndarray = field(init=False)

    def __post_init__(self):
        self.array = np.asarray(self.image)

    @property
    def pixels(self) -> int:
        return self.image.width * self.image.height


def load_images(folder, limit: int | None = None, split=None) -> list[TestImage]:
    """The first ``limit`` images below ``folder`` (those a ``split`` file lists, if given), named by their path there."""
    paths = imageio.list_images(folder, include=None if split is None else imageio.read_split(split))[:limit]
    if not paths:
        raise imageio.ImageError(f"no images in {folder}" + (f" listed in {split}" if split is not None else ""))
    names = [p.relative_to(folder).with_suffix("").as_posix() for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # their rows and report crops would be merged
        raise imageio.ImageError(f"several images named {', '.join(twice)} in {folder}: keep one of each")
    return [TestImage(name, imageio.open_image(p)) for name, p in zip(names, paths)]


def model_label(model: CodingModel, refine_steps: int = 0) -> str:
    """The curve a model's points belong to; encoder-side refinement is a curve of its own."""
    return f"{model.name}+refine{refine_steps}" if refine_steps else model.name


def model_setting(model: CodingModel) -> str:
    """The point on the model's curve: its quality, else its λ."""
    if model.quality:
        return f"q{model.quality:g}"
    return f"λ={model.lmbda}" if model.lmbda else "custom"


@torch.inference_mode()
def estimated_bpp(model: CodingModel, image, tile_size: int = DEFAULT_TILE) -> float:
    """−Σ log2 p over the latents of an ``L``/``RGB`` image, tile by tile as the codec codes them."""
    tiles = coded_tiles(image, model, tile_size, tile_context(model))
    total = sum(rd.bits(model.likelihoods(tile, core)).item() for _, tile, core in tiles)
    return total / (image.width * image.height)


def measure_model(model: CodingModel, test: TestImage, keep: dict | None = None, refine_steps: int = 0) -> Record:
    channels = model.image_channels
    reference = test.array if channels == 3 or test.array.ndim == 2 else np.asarray(test.image.convert("L"))
    start = time.perf_counter()
    data = encode(test.image, model, refine_steps=refine_steps)
    encoded = time.perf_counter() - start
    start = time.perf_counter()
    decoded = np.asarray(decode(data, model))
    decoded_s = time.perf_counter() - start
    if keep is not None:
        keep[test.name] = decoded
    # the estimate describes g_a's latents, which a refined stream does not code
    estimate = math.nan if refine_steps else estimated_bpp(model, test.image)
    return Record(
        model_label(model, refine_steps), model_setting(model), test.name, len(data), 8 * len(data) / test.pixels,
        psnr(reference, decoded), ms_ssim(reference, decoded), encoded, decoded_s,
        estimate, model.lmbda or math.nan,
    )


def measure_anchor(codec: str, setting, test: TestImage, keep: dict | None = None) -> Record:
    data, decoded, encoded, decoded_s = anchors.roundtrip(test.image, codec, setting)
    if keep is not None:
        keep[test.name] = decoded
    return Record(
        codec, str(setting), test.name, len(data), 8 * len(data) / test.pixels,
        psnr(test.array, decoded), ms_ssim(test.array, decoded), encoded, decoded_s,
    )


@dataclass
class Evaluation:
    records: list = field(default_factory=list)
    decoded: dict = field(default_factory=dict)  # (codec, setting) -> {image name: array}
    models: dict = field(default_factory=dict)  # codec label -> {setting: model}


def run(images: list[TestImage], models=(), anchor_codecs=(), keep_images: int = 3, progress=True, refine=(0,)) -> Evaluation:
    """Measure every model and every anchor setting on every image.

    ``refine``: encoder refinement steps to measure each model with (0 = plain
    encoder); models that cannot refine are measured with the plain encoder only.
    """
    refine = sorted(set(refine))
    if 0 not in refine and not any(m.supports_refinement for m in models):
        raise AttncompError("none of these models supports --refine")
    tasks = [
        ("model", m, model_setting(m), steps)
        for steps in refine
        for m in models
        if steps == 0 or m.supports_refinement
    ]
    tasks += [("anchor", c, s, 0) for c in anchor_codecs for s in anchors.SWEEPS[c]]
    result = Evaluation()
    kept = {t.name for t in images[:keep_images]}
    bar = tqdm(total=len(tasks) * len(images), disable=not progress, unit="img", desc="attncomp-eval")
    for kind, codec, setting, steps in tasks:
        label = model_label(codec, steps) if kind == "model" else codec
        if kind == "model":
            result.models.setdefault(label, {})[setting] = codec
        store = result.decoded.setdefault((label, str(setting)), {})
        for test in images:
            bar.set_postfix_str(f"{label} {setting} {test.name}")
            keep = store if test.name in kept else None
            if kind == "model":
                record = measure_model(codec, test, keep, steps)
            else:
                record = measure_anchor(codec, setting, test, keep)
            result.records.append(record)
            bar.update()
    bar.close()
    return result


def curves(records: list[Record]) -> dict:
    """Per codec, the averaged RD points sorted by rate, in CompressAI's results schema."""
    grouped: dict = {}
    for r in records:
        grouped.setdefault(r.codec, {}).setdefault(r.setting, []).append(r)
    out = {}
    for codec, settings in grouped.items():
        points = []
        for setting, rs in settings.items():
            points.append(dict(
                setting=setting,
                bpp=float(np.mean([r.bpp for r in rs])),
                psnr=mean_over_all(r.psnr for r in rs),
                ms_ssim=mean_over_all(r.ms_ssim for r in rs),
                encode_s=float(np.mean([r.encode_s for r in rs])),
                decode_s=float(np.mean([r.decode_s for r in rs])),
                estimated_bpp=mean_over_all(r.estimated_bpp for r in rs),
            ))
        points.sort(key=lambda p: p["bpp"])
        out[codec] = points
    return out


def to_compressai_json(codec: str, points: list[dict], description: str) -> dict:
    results = {
        "psnr-rgb": [p["psnr"] for p in points],
        "ms-ssim-rgb": [p["ms_ssim"] for p in points],
        "bpp": [p["bpp"] for p in points],
        "encoding_time": [p["encode_s"] for p in points],
        "decoding_time": [p["decode_s"] for p in points],
        "setting": [p["setting"] for p in points],
    }
    if any(math.isfinite(p["estimated_bpp"]) for p in points):
        results["estimated_bpp"] = [p["estimated_bpp"] for p in points]
    return {"name": codec, "description": description, "results": results}


def record_rows(records: list[Record]) -> list[dict]:
    return [asdict(r) for r in records]
