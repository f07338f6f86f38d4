"""Keep the weights a round returned, xz-compressed, where the next round starts from.

    python scripts/keep_weights.py OUT [DEST]     # DEST: results/ablation/weights (committed)

A session's checkout keeps only what git holds: run folders (``runs/``), a round's ``OUT`` and the trip
(``.trip/``) are gone at the next session, and with them the ablation's 5,000 steps on 2026-12-03. So every
round's weights go into ``results/ablation/weights`` (``VARIANT.pt.xz``, float16 transforms, ~2.7 MB a variant)
and are committed; ``gpu_round.py --init results/ablation/weights`` continues from them here or on a GPU
(tracked files travel with the checkout). Each ``NAME.pt`` of ``OUT`` (or inside its ``weights-N.tar``)
replaces ``DEST/NAME.pt.xz``; variants the round did not return keep theirs. xz shrinks a weights file's int32
entropy tables, not its float16 transforms.
"""

from __future__ import annotations

import argparse
import lzma
import sys
import tarfile
from pathlib import Path

DEFAULT_DEST = Path("results/ablation/weights")


def returned_weights(source: Path) -> dict[str, bytes]:
    """``NAME.pt`` -> its bytes, from ``source``'s ``*.pt`` files and those inside its ``weights-*.tar``."""
    found = {p.name: p.read_bytes() for p in sorted(source.glob("*.pt"))}
    for path in sorted(source.glob("weights-*.tar")):
        with tarfile.open(path) as tar:
            found.update({m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".pt")})
    if not found:
        raise SystemExit(f"keep_weights: no weights (*.pt or weights-*.tar) in {source}")
    return found


def keep(source: Path, dest: Path) -> list[Path]:
    """Write ``source``'s weights into ``dest`` as ``NAME.pt.xz``, each whole or not at all. Returns the files."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in returned_weights(source).items():
        partial = dest / f"{name}.xz.part"
        partial.write_bytes(lzma.compress(data))
        written.append(partial.replace(dest / f"{name}.xz"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a round's OUT folder (*.pt or weights-*.tar)")
    parser.add_argument("dest", type=Path, nargs="?", default=DEFAULT_DEST)
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"no folder {args.source}")
    for path in keep(args.source, args.dest):
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
