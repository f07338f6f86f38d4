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

from attncomp.errors import WeightsError
from attncomp.models import zoo

DEFAULT_DEST = Path("results/ablation/weights")


def returned_weights(source: Path) -> dict[str, bytes]:
    """``NAME.pt`` -> its bytes, from ``source``'s ``*.pt`` files and those inside its ``weights-*.tar``; a name
    found twice (a stale tar beside a new one) is refused rather than one of them silently winning."""
    found, origin = {}, {}

    def add(name: str, data: bytes, where: str) -> None:
        if name in found:
            raise SystemExit(f"keep_weights: {name} is in both {origin[name]} and {where}; keep one")
        found[name], origin[name] = data, where

    for path in sorted(source.glob("*.pt")):
        add(path.name, path.read_bytes(), str(path))
    for path in sorted(source.glob("weights-*.tar")):
        try:
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".pt"):
                        add(member.name, tar.extractfile(member).read(), str(path))
        except (tarfile.TarError, EOFError) as exc:
            raise SystemExit(f"keep_weights: cannot read {path} ({exc}); it may be truncated") from None
    if not found:
        raise SystemExit(f"keep_weights: no weights (*.pt or weights-*.tar) in {source}")
    return found


def keep(source: Path, dest: Path, force: bool = False) -> list[Path]:
    """Write ``source``'s weights into ``dest`` as ``NAME.pt.xz``. Every one is checked to be a whole attncomp
    weights file before any kept copy is replaced, so a truncated return never overwrites the last good one;
    nor, unless ``force``, does one of another configuration or with fewer steps behind it (e.g. a round that
    started from scratch because its ``--init`` was wrong)."""
    dest.mkdir(parents=True, exist_ok=True)
    partials = {}
    try:
        for name, data in returned_weights(source).items():
            partial = partials[name] = dest / f".{name}.part.xz"  # *.xz: zoo reads it as it will read the kept file
            partial.write_bytes(lzma.compress(data))
            kept = dest / f"{name}.xz"
            if kept.is_file() and not force:
                check_continues(zoo.read_weights(kept), zoo.read_weights(partial), kept)
            else:
                zoo.read_weights(partial)
    except BaseException as exc:  # a damaged file, a full disk, Ctrl-C: no partial file stays behind
        for partial in partials.values():
            partial.unlink(missing_ok=True)
        if isinstance(exc, WeightsError):
            raise SystemExit(f"keep_weights: nothing kept: {exc}") from None
        raise
    return [partial.replace(dest / f"{name}.xz") for name, partial in partials.items()]


def check_continues(kept: dict, new: dict, path: Path) -> None:
    """Refuse new weights that do not continue the kept ones: another model or configuration, fewer steps."""
    if (new["model"], new["config"]) != (kept["model"], kept["config"]):
        raise WeightsError(f"the returned {path.stem} is another model or configuration than the kept {path} "
                           "(--force replaces it)")
    steps, kept_steps = (zoo.trained_steps(p.get("training")) for p in (new, kept))
    if steps < kept_steps:
        raise WeightsError(f"the returned {path.stem} has {steps} steps behind it, the kept {path} {kept_steps} "
                           "(--force replaces it)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a round's OUT folder (*.pt or weights-*.tar)")
    parser.add_argument("dest", type=Path, nargs="?", default=DEFAULT_DEST)
    parser.add_argument("--force", action="store_true",
                        help="replace kept weights even by another configuration or fewer steps")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"no folder {args.source}")
    for path in keep(args.source, args.dest, args.force):
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
