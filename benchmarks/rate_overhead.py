"""Coding overhead over Kodak: real bytes (container included) against the model's estimated bits.

Also the rate cost of exact fixed-point h_s: the estimated bits with the float h_s
(what training sees) against those with the fixed-point one (what the codec uses).

    python benchmarks/rate_overhead.py [--weights FILE] [--limit N]
"""


import numpy as np
import torch
from common import model_from, parser

from attncomp import image as imageio
from attncomp.codec import encode
from attncomp.models import rd


@torch.inference_mode()
def estimated_bits(model, x, exact=True):
    """−Σ log2 p with the exact h_s the coder uses, or with the float h_s of training (rounding, not noise)."""
    if exact:
        return rd.bits(model.likelihoods(x)).item()
    net = model.network
    quality = model.quality if model.variable_rate else None
    # the prior comes from whatever transform is passed as the exact one: here the float h_s itself
    return rd.bits(net.quantized_latents(x, quality=quality, exact=net.h_s)[1]).item()


def main():
    args = parser(__doc__).parse_args()
    model = model_from(args)
    overheads, fixed_costs = [], []
    for path in imageio.list_images(args.images)[: args.limit]:
        image = imageio.open_image(path)
        x = imageio.pad_to_multiple(imageio.to_tensor(image), model.downsampling_factor)
        actual = 8 * len(encode(image, model))
        exact, floating = estimated_bits(model, x), estimated_bits(model, x, exact=False)
        overheads.append(actual / exact - 1)
        fixed_costs.append(exact / floating - 1)
        print(f"{path.name}: {actual} bits real, {exact:.0f} estimated, overhead {100 * overheads[-1]:+.2f}%")
    print(f"\nfixed-point h_s rate cost vs float h_s: {100 * np.mean(fixed_costs):+.3f}%")
    print(f"mean overhead (real bytes incl. container / estimated bits - 1): {100 * np.mean(overheads):+.2f}%")


if __name__ == "__main__":
    main()
