"""Shared by the benchmark scripts: the model under test and the Kodak images."""

import argparse
import os
import time
from pathlib import Path

from attncomp.models import load, load_weights


def data_dir() -> Path:
    """``$ATTNCOMP_DATA`` (default: the workspace's ``../shared/data``), read when a script starts."""
    return Path(os.environ.get("ATTNCOMP_DATA", "../shared/data"))


def kodak_dir() -> Path:
    return data_dir() / "kodak"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--weights", help="exported weights (default: the bundled model)")
    p.add_argument("--quality", type=int, default=3, help="the bundled model's, or a variable-rate file's")
    p.add_argument("--images", default=str(kodak_dir()))
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    return p


def model_from(args):
    """``--weights`` (a variable-rate file at ``--quality``), else the bundled model at ``--quality``."""
    if not args.weights:
        return load("attn-hyperprior", args.quality)
    model = load_weights(args.weights)
    return model.at(args.quality) if model.variable_rate else model


def compressai_reference(net):
    """CompressAI's own ScaleHyperprior of the same N/M holding ``net``'s weights for every layer they share.

    attncomp's transforms are CompressAI's under ``.body``, so the names map one to one.
    """
    from compressai.models import ScaleHyperprior

    reference = ScaleHyperprior(net.N, net.M).eval()
    ours = {k.replace(".body.", "."): v for k, v in net.state_dict().items()}
    reference.load_state_dict({k: v for k, v in ours.items() if k in reference.state_dict()}, strict=False)
    reference.update(force=True)
    return reference


def best_times(fns: dict, repeats: int) -> dict:
    """The best of ``repeats`` timings of each function, taken in turns so that a busy moment hits all of them."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}
