"""How many refinement steps pay: real-file RD loss and encode time against the plain encoder.

For each step count, every image goes through attncomp-eval's measurement (encode with
``--refine STEPS``, decode, PSNR on the real file) and is scored by the loss the model was
trained for, λ·255²·MSE + bpp; the change is against the plain encoder (g_a's latents) on
the same images in the same run.

    python benchmarks/refine_steps.py --quality 7 --limit 4 --steps 25 50 100 200
"""


import numpy as np
from common import model_from, parser

from attncomp.evaluation.metrics import rd_objective
from attncomp.evaluation.runner import load_images, measure_model


def measure(model, images, steps: int) -> tuple[list[float], float]:
    """(λ·255²·MSE + bpp per image, mean encode seconds) with ``steps`` of refinement."""
    records = [measure_model(model, image, refine_steps=steps) for image in images]
    return [rd_objective(model.lmbda, r.bpp, r.psnr) for r in records], float(np.mean([r.encode_s for r in records]))


def main():
    p = parser(__doc__)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200])
    args = p.parse_args()
    model = model_from(args)
    images = load_images(args.images, args.limit)
    measure(model, images[:1], 1)  # warm-up: the first calls build caches and autograd state
    plain, plain_time = measure(model, images, 0)
    print(f"{len(images)} images, λ={model.lmbda}: plain encoder J={np.mean(plain):.4f}, {plain_time:.2f} s/image")
    print("| steps | J | J vs plain | encode s/image | time vs plain |")
    print("|---|---|---|---|---|")
    for steps in args.steps:
        refined, seconds = measure(model, images, steps)
        # per-image change, averaged: every image weighs the same, as in the BD-rate
        change = np.mean([r / b - 1 for r, b in zip(refined, plain)])
        print(f"| {steps} | {np.mean(refined):.4f} | {100 * change:+.1f}% | {seconds:.1f} | {seconds / plain_time:.0f}× |")


if __name__ == "__main__":
    main()
