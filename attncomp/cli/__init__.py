"""Thin command-line front ends: parse, call the library, print one line on error."""

import argparse
import ctypes

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
REUSED_BLOCK_LIMIT = 256 * 2**20


def non_negative(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def reuse_freed_memory(limit: int = REUSED_BLOCK_LIMIT) -> bool:
    """This process is the CLI's: let glibc keep freed blocks up to ``limit`` bytes for reuse.

    By default glibc maps every block above 32 MB afresh and unmaps it when freed, so each
    of a tile's 32-channel full-resolution activations (32 MB at 512 px) is page-faulted in
    again on every layer and tile. Kept, the blocks are reused: decoding is faster, for a little
    more peak RSS (benchmarks/freed_memory_reuse.py and large_image_memory.py measure both).
    Returns False where the C library has no ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
