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

    By default glibc maps every block above 32 MB afresh and unmaps it when freed, and returns
    the free top of its heap to the system, so large tensors are page-faulted in again and again:
    in decoding each of a tile's 32-channel full-resolution activations (32 MB at 512 px), on
    every layer and tile; in training the activations of every step. Kept, the blocks are
    reused: decoding and CPU training are faster, for a little more peak RSS
    (benchmarks/freed_memory_reuse.py, large_image_memory.py and train_allocator.py measure both).
    Returns False where the C library has no ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
