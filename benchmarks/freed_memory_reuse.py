"""Decode time with glibc's default allocator against the CLI's (attncomp.cli.reuse_freed_memory), same run.

The CLI keeps freed blocks up to 256 MB for reuse instead of letting glibc unmap every
block above 32 MB: a 512-px tile's 32-channel activations are then not page-faulted in
afresh on each layer. An allocator setting lasts for the process, so each side runs in its
own fresh process (alternately, ``--repeat`` times), loads the model, encodes the images
once and times only decoding. Also reported: each child's peak RSS.

    python benchmarks/freed_memory_reuse.py [--limit 6] [--repeat 3] [--weights FILE]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from common import kodak_dir, model_from, parser


def child(args, reuse: bool) -> None:
    from attncomp import image as imageio
    from attncomp.cli import reuse_freed_memory
    from attncomp.codec import decode, encode

    if reuse and not reuse_freed_memory():
        raise SystemExit("this C library has no mallopt: nothing to compare")
    model = model_from(args)
    streams = [encode(imageio.open_image(p), model) for p in imageio.list_images(args.images)[: args.limit]]
    start = time.perf_counter()
    for data in streams:
        decode(data, model)
    seconds = (time.perf_counter() - start) / len(streams)
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
    p = parser(__doc__)
    p.set_defaults(limit=6)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", choices=["default", "reuse"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args, args.child == "reuse")
    runs = {"default": [], "reuse": []}
    for _ in range(args.repeat):
        for side in runs:
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", side], check=True, capture_output=True, text=True)
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.limit} images of {args.images or kodak_dir()}, median of {args.repeat} processes each")
    for side, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        print(f"{side:8} allocator: decode {seconds:.3f} s per image, peak RSS {max(r['peak_mb'] for r in results):.0f} MB")
    ratio = statistics.median(r["seconds"] for r in runs["reuse"]) / statistics.median(r["seconds"] for r in runs["default"])
    print(f"ratio reuse/default: {ratio:.2f}x")


if __name__ == "__main__":
    main()
