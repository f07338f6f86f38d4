"""Helpers the tests share: tiny model sizes, generated photo-like images, the repository's scripts."""

import importlib.util
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch

TINY = dict(N=16, M=24, postfilter_channels=8, reduction=4)


@torch.no_grad()
def spread_latents(model):
    """An untrained hyperprior with latents that code real symbols: untrained, y and z round to 0 and every
    scale sits at the bound, so a coding test would compare zeros with zeros. (In place; returns ``model``.)"""
    model.g_a.body[6].weight.mul_(40)
    model.h_a.body[4].weight.mul_(20)
    model.h_s.body[4].weight.mul_(10)
    model.h_s.body[4].bias[-model.config["M"] :].add_(2.0)  # the scales: h_s's last M channels
    return model


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients plus a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [
        128 + 100 * np.sin(xx / (7 + 3 * c) + c) * np.cos(yy / (11 + 2 * c)) + rng.normal(0, 4, (height, width))
        for c in range(channels)
    ]
    array = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    return array[..., 0] if channels == 1 else array


def image_folder(folder, count: int, height: int, width: int):
    """``folder`` with ``count`` generated images ``img0.png``… of ``height``×``width``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        Image.fromarray(smooth_image(height, width, seed=seed)).save(folder / f"img{seed}.png")
    return folder


def with_threads(count: int, fn, *args):
    """``fn(*args)`` computed with ``count`` intra-op threads: another summation order than the tests' one thread."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(count)
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


@dataclass
class Finished:
    """What a command-line run left: its exit status and the bytes it wrote."""

    returncode: int
    stdout: bytes
    stderr: bytes


def run_main(main, args, stdin: bytes | io.BufferedIOBase = b"") -> Finished:
    """A CLI's ``main(argv)`` in this process with its standard streams captured: a subprocess spends seconds
    importing torch for each call. ``tests/test_*`` keep one real subprocess per entry point. ``stdin``: its
    bytes, or a binary file object (to see how much of it was read)."""
    streams = {name: io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for name in ("stdout", "stderr")}
    stdin_stream = io.TextIOWrapper(io.BytesIO(stdin) if isinstance(stdin, bytes) else stdin, encoding="utf-8")
    with mock.patch.multiple(sys, stdin=stdin_stream, argv=[sys.argv[0]], **streams):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Finished(code, streams["stdout"].buffer.getvalue(), streams["stderr"].buffer.getvalue())


def load_script(name: str, folder: str = "scripts"):
    """A script of the repository (``scripts/``, ``benchmarks/``) as a module, to call its functions."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
