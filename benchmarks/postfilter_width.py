"""Can a narrower post-filter replace a model's own? Quality and decode time against it, same run.

The post-filter spends no bits: with g_a, g_s and the entropy models of a model frozen, training a
post-filter of width W is regression from g_s(ŷ) to x, ŷ as the decoder has it. Each width trains
from scratch, in the model's form (the paper's sigmoid head, or residual), on 128² crops of the
training images outside the validation split (Adam 1e-3, held, then decaying to 3e-5 over the last
40% of the steps); a variable-rate model's crops take its levels in turn, as its one filter serves
them all. Each filter is scored at ``--quality`` on the validation split (whole images, 8-bit
output), the model's own filter the same way; a width-32 filter trained here is the control for
how much of a gap is the short training rather than the width. Width 0 is no post-filter: for a
residual filter that is g_s's image; a paper-form g_s has none (time only). Decode time: whole
`decode` of Kodak images with each filter swapped in, against CompressAI's model with the same
weights (as in codec_speed.py).

    python benchmarks/postfilter_width.py [--quality 3] [--widths 0 8 16 32] [--steps 4000]
    python benchmarks/postfilter_width.py --weights results/vbr-m192/weights/residual-meanscale-M192.pt.xz
"""

import math
import time

import numpy as np
import torch
from common import compressai_reference, data_dir, model_from, parser, reference_stream

from attncomp import image as imageio
from attncomp.codec import decode, encode
from attncomp.models import CodingModel, create
from attncomp.models.layers import PostFilter
from attncomp.models.zoo import load_state
from attncomp.training.data import load_folder



def unfiltered(net, x, quality=None):
    """g_s's image of ``x``'s latents as the decoder has them (exact prior; a variable-rate net at ``quality``)."""
    with torch.no_grad():
        return net.g_s(net.quantized_latents(x, quality=quality)[0])


def crops(images, count_per_image, size, generator):
    out = []
    for image in images:
        _, h, w = image.shape
        if h < size or w < size:
            continue
        for _ in range(count_per_image):
            i = int(torch.randint(h - size + 1, (1,), generator=generator))
            j = int(torch.randint(w - size + 1, (1,), generator=generator))
            out.append(image[:, i : i + size, j : j + size])
    return torch.stack(out).float() / 255


def mean_psnr(net, post_filter, images, quality=None):
    """Mean PSNR over RGB of the 8-bit output, whole images."""
    values = []
    with torch.no_grad():
        for image in images:
            x = image[None].float() / 255
            h, w = x.shape[-2:]
            x_hat = post_filter(unfiltered(net, imageio.pad_to_multiple(x, 64), quality))[..., :h, :w]
            x_hat = torch.round(x_hat.clamp(0, 1) * 255) / 255
            values.append(10 * math.log10(1 / torch.mean((x_hat - x) ** 2).item()))
    return float(np.mean(values))


def train(width, residual, inputs, targets, steps, seed):
    torch.manual_seed(seed)
    post_filter = PostFilter(width, residual=residual)
    optimizer = torch.optim.Adam(post_filter.parameters(), lr=1e-3)
    hold = int(0.6 * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 1.0 if s < hold else 0.03 ** ((s - hold) / (steps - hold))
    )
    for _ in range(steps):
        batch = torch.randint(len(inputs), (16,))
        loss = torch.mean((post_filter(inputs[batch]) - targets[batch]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return post_filter.eval()


def with_post_filter(model, post_filter):
    """The model with ``post_filter`` (None: no post-filter) in place of its own."""
    if post_filter is None:
        network = create(model.name, **dict(model.config, postfilter="none"))
    else:
        network = create(model.name, **dict(model.config, postfilter_channels=post_filter.net[0].out_channels))
    state = {k: v for k, v in model.network.state_dict().items() if not k.startswith("post_filter.")}
    state.update({f"post_filter.{k}": v for k, v in (post_filter.state_dict() if post_filter else {}).items()})
    load_state(network, state)
    return CodingModel.from_network(network, model.name, quality=model.quality)


def training_inputs(net, targets, qualities):
    """g_s's images of the crops ``targets``, chunks of 8 crops at each of ``qualities`` in turn."""
    return torch.cat([unfiltered(net, chunk, qualities[i % len(qualities)]) for i, chunk in enumerate(targets.split(8))])


def decode_seconds(model, images, repeats=3):
    best = []
    for data in [encode(image, model) for image in images]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            decode(data, model)
            times.append(time.perf_counter() - start)
        best.append(min(times))
    return float(np.mean(best))


def compressai_decode_seconds(net, images, quality, repeats=3):
    reference = compressai_reference(net, quality)
    best = []
    with torch.no_grad():
        for image in images:
            coded = reference_stream(reference, net, imageio.pad_to_multiple(imageio.to_tensor(image), 64))
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                reference.decompress(coded["strings"], coded["shape"])
                times.append(time.perf_counter() - start)
            best.append(min(times))
    return float(np.mean(best))


def main():
    p = parser(__doc__)
    p.add_argument("--train", default=str(data_dir() / "train"))
    p.add_argument("--split", default="configs/validation_split.txt")
    p.add_argument("--widths", type=int, nargs="+", default=[0, 8, 16, 32], help="0: no post-filter (time only)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--train-images", type=int, default=320)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    model = model_from(args)
    net = model.network.float().eval().requires_grad_(False)
    held_out = imageio.read_split(args.split)
    generator = torch.Generator().manual_seed(args.seed)
    pool = load_folder(args.train, exclude=held_out)
    order = torch.randperm(len(pool), generator=generator)[: args.train_images]
    targets = crops([pool[i] for i in order], 6, 128, generator)
    quality = model.quality if model.variable_rate else None  # what the network's own calls take
    inputs = training_inputs(net, targets, list(range(1, len(net.lambdas) + 1)) if model.variable_rate else [None])
    residual = net.config.get("postfilter") == "residual"
    validation = load_folder(args.train, include=held_out)
    kodak = [imageio.open_image(path) for path in imageio.list_images(args.images)[: args.limit or 3]]

    reference_seconds = compressai_decode_seconds(net, kodak, quality)
    own_psnr, own_seconds = mean_psnr(net, net.post_filter, validation, quality), decode_seconds(model, kodak)
    print(f"{len(targets)} training crops, {len(validation)} validation images, {len(kodak)} Kodak images decoded")
    print(f"CompressAI {'MeanScaleHyperprior' if net.config.get('prior') == 'mean-scale' else 'ScaleHyperprior'} "
          f"decode: {reference_seconds:.3f} s per image")
    print(f"{model.name} q{model.quality}, its own {'residual' if residual else 'paper'} filter of width "
          f"{net.post_filter.net[0].out_channels}: validation PSNR {own_psnr:.3f} dB, "
          f"decode {own_seconds:.3f} s ({own_seconds / reference_seconds:.2f}x CompressAI)")
    for width in args.widths:
        if width == 0:  # no post-filter at all: a paper-form g_s would need retraining to output images
            seconds = decode_seconds(with_post_filter(model, None), kodak)
            psnr = f"validation PSNR {mean_psnr(net, torch.nn.Identity(), validation, quality):.3f} dB, " if residual else ""
            print(f"no post-filter: {psnr}decode {seconds:.3f} s ({seconds / reference_seconds:.2f}x CompressAI, "
                  f"{seconds / own_seconds:.2f}x its own)")
            continue
        start = time.perf_counter()
        post_filter = train(width, residual, inputs, targets, args.steps, args.seed)
        trained = time.perf_counter() - start
        seconds = decode_seconds(with_post_filter(model, post_filter), kodak)
        psnr = mean_psnr(net, post_filter, validation, quality)
        print(f"width {width:3d}, {args.steps} steps ({trained:.0f} s): validation PSNR "
              f"{psnr:.3f} dB ({psnr - own_psnr:+.3f}), "
              f"decode {seconds:.3f} s ({seconds / reference_seconds:.2f}x CompressAI, "
              f"{seconds / own_seconds:.2f}x its own)")


if __name__ == "__main__":
    main()
