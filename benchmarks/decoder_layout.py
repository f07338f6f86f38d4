"""Decode time with the decoder's inference layout against the training layout, same streams, same run.

Without gradients the post-filter runs in bands of rows and g_s's last layer as a sub-pixel
convolution (:mod:`attncomp.models.layers`); with gradients both run as in training. The same
function either way, so the decoded images should match (the largest pixel difference is printed:
float summation order may move a rounding). Ratios < 1 mean the inference layout is faster.

    python benchmarks/decoder_layout.py [--weights FILE] [--quality Q] [--limit N] [--repeats R]
"""

import contextlib
from unittest import mock

import numpy as np
import torch
from common import best_times, model_from, parser
from torch import nn

from attncomp import image as imageio
from attncomp.codec import decode, encode
from attncomp.models.layers import PostFilter, SubPixelDeconv

LAYOUTS = {
    "training": (True, True),  # (post-filter in one pass, last layer transposed)
    "bands": (False, True),
    "bands + sub-pixel": (False, False),
}


def layout(one_pass: bool, transposed: bool):
    stack = contextlib.ExitStack()
    if one_pass:
        stack.enter_context(mock.patch.object(PostFilter, "forward", PostFilter._filter))
    if transposed:
        stack.enter_context(mock.patch.object(SubPixelDeconv, "forward", nn.ConvTranspose2d.forward))
    return stack


def decode_in(name: str, data, model) -> np.ndarray:
    with layout(*LAYOUTS[name]):
        return np.asarray(decode(data, model), dtype=np.int16)


def main():
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=3, help="timings per image and layout, taken in turns")
    args = p.parse_args()
    model = model_from(args)
    best = {name: [] for name in LAYOUTS}
    difference = 0
    for path in imageio.list_images(args.images)[: args.limit]:
        data = encode(imageio.open_image(path), model)
        reference = decode_in("training", data, model)
        for name in list(LAYOUTS)[1:]:  # each inference layout against the training one
            difference = max(difference, int(np.abs(decode_in(name, data, model) - reference).max()))
        times = best_times({name: lambda name=name: decode_in(name, data, model) for name in LAYOUTS}, args.repeats)
        for name in LAYOUTS:
            best[name].append(times[name])
        print(f"{path.name}: " + ", ".join(f"{name} {times[name]:.3f} s" for name in LAYOUTS))
    base = np.mean(best["training"])
    print(f"\n{len(best['training'])} images, {torch.get_num_threads()} threads, {model.name}")
    for name in LAYOUTS:
        print(f"decode, {name} layout: {np.mean(best[name]):.3f} s per image, {np.mean(best[name]) / base:.2f}x")
    print(f"largest pixel difference from the training layout: {difference}")


if __name__ == "__main__":
    main()
