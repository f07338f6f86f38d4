"""How many refinement steps pay: real-file RD loss and encode time against the plain encoder.

For each step count, every image is encoded with ``--refine STEPS``, decoded, and scored by
the loss the model was trained for, λ·255²·MSE + bpp, on the real file; the change is
against the plain encoder (g_a's latents) on the same images in the same run.

    python benchmarks/refine_steps.py --quality 7 --limit 4 --steps 25 50 100 200
"""


import time

import numpy as np
from common import model_from, parser

from attncomp import image as imageio
from attncomp.codec import decode, encode


def real_loss(model, image, steps: int) -> tuple[float, float]:
    """(λ·255²·MSE + bpp of the real file, encode seconds) for one image."""
    start = time.perf_counter()
    data = encode(image, model, refine_steps=steps)
    seconds = time.perf_counter() - start
    reference = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    decoded = np.asarray(decode(data, model).convert("RGB"), dtype=np.float64) / 255
    mse = np.mean((reference - decoded) ** 2)
    return model.lmbda * 255**2 * mse + 8 * len(data) / (image.width * image.height), seconds


def main():
    p = parser(__doc__)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200])
    args = p.parse_args()
    model = model_from(args)
    images = [imageio.open_image(path) for path in imageio.list_images(args.images)[: args.limit]]
    real_loss(model, images[0], 1)  # warm-up: the first calls build caches and autograd state
    plain = [real_loss(model, image, 0) for image in images]
    plain_loss, plain_time = np.mean([loss for loss, _ in plain]), np.mean([s for _, s in plain])
    print(f"{len(images)} images, λ={model.lmbda}: plain encoder J={plain_loss:.4f}, {plain_time:.2f} s/image")
    print("| steps | J | J vs plain | encode s/image | time vs plain |")
    print("|---|---|---|---|---|")
    for steps in args.steps:
        runs = [real_loss(model, image, steps) for image in images]
        # per-image change, averaged: every image weighs the same, as in the BD-rate
        change = np.mean([loss / base - 1 for (loss, _), (base, _) in zip(runs, plain)])
        seconds = np.mean([s for _, s in runs])
        loss = np.mean([loss for loss, _ in runs])
        print(f"| {steps} | {loss:.4f} | {100 * change:+.1f}% | {seconds:.1f} | {seconds / plain_time:.0f}× |")


if __name__ == "__main__":
    main()
