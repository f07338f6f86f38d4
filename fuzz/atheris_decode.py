"""Coverage-guided fuzzing of the decoder with atheris, for long runs outside CI.

    pip install atheris
    python fuzz/atheris_decode.py -atheris_runs=200000            # the container parser and CRC
    FIX_CRC=1 python fuzz/atheris_decode.py -max_total_time=600    # hostile streams with a valid CRC

Every input must end in an image or in attncomp's own exception; anything else
(another exception, a crash, a hang caught by -timeout) is a finding. A few
valid streams from a tiny untrained model seed the corpus.
"""

import os
import struct
import sys
import zlib

import atheris
import numpy as np
import torch

# coverage of attncomp's own code (container, codec) only: instrumenting torch would crawl
with atheris.instrument_imports(include=["attncomp"]):
    from attncomp.codec import decode, encode
    from attncomp.errors import AttncompError
    from attncomp.models import CodingModel, create

FIX_CRC = os.environ.get("FIX_CRC") == "1"
torch.manual_seed(0)
MODEL = CodingModel.from_network(create("attn-hyperprior", N=16, M=24, postfilter_channels=8, reduction=4),
                                  "attn-hyperprior")
SEEDS = [encode((np.random.default_rng(s).random((h, w, 3)) * 255).astype(np.uint8), MODEL, tile_size=64)
         for s, (h, w) in enumerate([(1, 1), (64, 64), (70, 130)])]


def one_input(data: bytes) -> None:
    if FIX_CRC and len(data) > 4:
        data = data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))
    try:
        image = decode(data, MODEL)
    except AttncompError:
        return
    assert image.width >= 1 and image.height >= 1


def main():
    corpus = os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(SEEDS):
        with open(os.path.join(corpus, f"seed{i}.atc"), "wb") as f:
            f.write(seed)
    atheris.Setup(sys.argv + [corpus], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
