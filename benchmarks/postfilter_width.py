"""Can a narrower post-filter replace the bundled one? Quality and decode time against it, same run.

The post-filter spends no bits: with g_a, g_s and the entropy models of a bundled model frozen,
training a post-filter of width W is regression from g_s(round(g_a(x))) to x. Each width trains
from scratch on 128² crops of the training images outside the validation split (Adam 1e-3, held,
then decaying to 3e-5 over the last 40% of the steps), and is scored on the validation split
(whole images, 8-bit output). The bundled filter is scored the same way, and a width-32 filter
trained here is the control for how much of a gap is the short training rather than the width.
Decode time: whole `decode` of Kodak images with each filter swapped in, against CompressAI's
`ScaleHyperprior` with the same weights (as in codec_speed.py).

    python benchmarks/postfilter_width.py [--quality 3] [--widths 0 8 16 32] [--steps 4000]
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



def synthesis(net, x):
    with torch.no_grad():
        return net.g_s(torch.round(net.g_a(x)))


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


def mean_psnr(net, post_filter, images):
    """Mean PSNR over RGB of the 8-bit output, whole images."""
    values = []
    with torch.no_grad():
        for image in images:
            x = image[None].float() / 255
            h, w = x.shape[-2:]
            x_hat = post_filter(synthesis(net, imageio.pad_to_multiple(x, 64)))[..., :h, :w]
            x_hat = torch.round(x_hat.clamp(0, 1) * 255) / 255
            values.append(10 * math.log10(1 / torch.mean((x_hat - x) ** 2).item()))
    return float(np.mean(values))


def train(width, inputs, targets, steps, seed):
    torch.manual_seed(seed)
    post_filter = PostFilter(width)
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


def compressai_decode_seconds(net, images, repeats=3):
    reference = compressai_reference(net)
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
    inputs = torch.cat([synthesis(net, chunk) for chunk in targets.split(64)])
    validation = load_folder(args.train, include=held_out)
    kodak = [imageio.open_image(path) for path in imageio.list_images(args.images)[: args.limit or 3]]

    reference_seconds = compressai_decode_seconds(net, kodak)
    bundled_psnr, bundled_seconds = mean_psnr(net, net.post_filter, validation), decode_seconds(model, kodak)
    print(f"{len(targets)} training crops, {len(validation)} validation images, {len(kodak)} Kodak images decoded")
    print(f"CompressAI ScaleHyperprior decode: {reference_seconds:.3f} s per image")
    print(f"bundled q{model.quality}, width {net.post_filter.net[0].out_channels}: validation PSNR {bundled_psnr:.3f} dB, "
          f"decode {bundled_seconds:.3f} s ({bundled_seconds / reference_seconds:.2f}x CompressAI)")
    for width in args.widths:
        if width == 0:  # the decode time of no post-filter at all; its g_s would need retraining to output images
            seconds = decode_seconds(with_post_filter(model, None), kodak)
            print(f"no post-filter: decode {seconds:.3f} s ({seconds / reference_seconds:.2f}x CompressAI, "
                  f"{seconds / bundled_seconds:.2f}x bundled)")
            continue
        start = time.perf_counter()
        post_filter = train(width, inputs, targets, args.steps, args.seed)
        trained = time.perf_counter() - start
        seconds = decode_seconds(with_post_filter(model, post_filter), kodak)
        quality = mean_psnr(net, post_filter, validation)
        print(f"width {width:3d}, {args.steps} steps ({trained:.0f} s): validation PSNR "
              f"{quality:.3f} dB ({quality - bundled_psnr:+.3f}), "
              f"decode {seconds:.3f} s ({seconds / reference_seconds:.2f}x CompressAI, "
              f"{seconds / bundled_seconds:.2f}x bundled)")


if __name__ == "__main__":
    main()
