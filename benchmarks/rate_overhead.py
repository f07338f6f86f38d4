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
from attncomp.compressai_adapter import bottleneck_medians
from attncomp.models import rd


@torch.inference_mode()
def estimated_bits(model, x, exact=True):
    """−Σ log2 p with the exact h_s the coder uses, or with the float h_s of training (rounding, not noise)."""
    if exact:
        return rd.bits(model.likelihoods(x)).item()
    net = model.network
    y = net.g_a(x)
    z = net.h_a(net.hyper_input(y))
    _, z_likelihoods = net.entropy_bottleneck(z)
    z_hat = net.entropy_bottleneck.quantize(z, "dequantize", bottleneck_medians(net.entropy_bottleneck))
    means, scales = net.split_prior(net.h_s(z_hat))
    _, y_likelihoods = net.gaussian_conditional(y, scales, means)
    return rd.bits({"y": y_likelihoods, "z": z_likelihoods}).item()


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
