"""Shared by the benchmark scripts: the model under test and the Kodak images."""

import argparse
import os
from pathlib import Path

from attncomp.models import load, load_weights

KODAK = Path(os.environ.get("ATTNCOMP_DATA", "../shared/data")) / "kodak"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--weights", help="exported weights (default: the bundled model)")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--images", default=str(KODAK))
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    return p


def model_from(args):
    return load_weights(args.weights) if args.weights else load("attn-hyperprior", args.quality)
