"""Decode here the streams a GPU round encoded there, and compare with what it decoded there.

    python scripts/check_streams.py runs/gpu-round1/streams.tar runs/gpu-round1/attn-hyperprior-q1.pt

The range decoder needs exactly the scale indexes the encoder used (the exact h_s); a
single wrong index would turn the rest of a tile into noise. The synthesis transform is
float arithmetic, so the two machines' pixels may differ by rounding, never by more.
"""

import argparse
import sys
import tarfile

import numpy as np
from PIL import Image

from attncomp.codec import decode
from attncomp.models import load_weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", help="streams.tar from scripts/gpu_round.py")
    parser.add_argument("weights", help="the weights file the round encoded with")
    args = parser.parse_args(argv)
    model = load_weights(args.weights)
    worst = 0
    with tarfile.open(args.streams) as tar:
        for member in sorted(m.name for m in tar.getmembers() if m.name.endswith(".atc")):
            stream = tar.extractfile(member).read()
            there = np.asarray(Image.open(tar.extractfile(member.replace(".atc", ".decoded.png"))), dtype=np.int16)
            here = np.asarray(decode(stream, model, precision="float32"), dtype=np.int16)  # as the round decoded
            diff = np.abs(here - there)
            worst = max(worst, int(diff.max()))
            print(f"{member}: {len(stream)} bytes, {diff.max()} max |difference|, "
                  f"{np.mean(diff > 0):.4%} of values differ")
    print("same image up to rounding" if worst <= 2 else "MISMATCH: the streams did not decode to the same image")
    return 0 if worst <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
