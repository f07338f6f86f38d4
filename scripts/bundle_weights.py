"""Copy trained weights into the package zoo (float16 transforms, exact entropy models).

    python scripts/bundle_weights.py runs/q3/weights.pt [--quality 3] [--name attn-hyperprior]
    python scripts/bundle_weights.py results/ablation/weights/NAME.pt.xz   # a variable-rate model

The quality of a fixed-rate model defaults to the one recorded in the file (its λ is CompressAI's λ
for it); a variable-rate model is one file, ``NAME.pt``, that codes every quality.
"""

import argparse

from attncomp.models import zoo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("--quality", type=int)
    parser.add_argument("--name")
    args = parser.parse_args(argv)
    payload = zoo.read_weights(args.weights)
    name = args.name or payload["model"]
    if payload["config"].get("lambdas"):
        if args.quality is not None:
            parser.error("a variable-rate model codes every quality: leave out --quality")
        quality = None
    else:
        quality = args.quality or payload.get("quality")
        if quality not in zoo.entry(name).lambdas:
            parser.error(f"give --quality: the file records quality {quality}")
    target = zoo.bundled_weights(name, quality)
    zoo.rewrite_weights(args.weights, target, name, quality)
    print(f"{target}: {target.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
