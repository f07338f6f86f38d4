"""Whole-process time of coding a folder: one attncomp-codec call for all images against one call per image.

Each call pays Python's start, the imports and the model load; a call with many files
pays them once. Both write the same streams (checked), then the same for decoding.

    python benchmarks/batch_codec.py [--images DIR] [--limit N]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import kodak_dir

CODEC = [sys.executable, "-m", "attncomp.cli.codec"]


def timed(*args) -> float:
    start = time.perf_counter()
    subprocess.run([*CODEC, *map(str, args)], check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(kodak_dir()))
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    images = sorted(Path(args.images).glob("*.png"))[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        folders = {name: Path(tmp, name) for name in ("one", "many", "one_png", "many_png")}
        for folder in folders.values():
            folder.mkdir()
        one = sum(timed("encode", p, folders["one"] / f"{p.stem}.atc") for p in images)
        many = timed("encode", *images, "-o", folders["many"])
        streams = sorted(folders["many"].iterdir())
        assert all((folders["one"] / s.name).read_bytes() == s.read_bytes() for s in streams), "streams differ"
        one_dec = sum(timed("decode", s, folders["one_png"] / f"{s.stem}.png") for s in streams)
        many_dec = timed("decode", *streams, "-o", folders["many_png"])
    print(f"{len(images)} images, whole processes, bundled default model")
    print(f"encode: {len(images)} calls {one:.1f} s, one call {many:.1f} s: {one / many:.1f}x faster")
    print(f"decode: {len(images)} calls {one_dec:.1f} s, one call {many_dec:.1f} s: {one_dec / many_dec:.1f}x faster")


if __name__ == "__main__":
    main()
