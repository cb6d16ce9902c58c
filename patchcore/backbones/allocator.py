"""The C allocator's settings that a network's forward passes run fastest with.

A forward allocates and frees activations of a few to tens of MiB per layer, batch after
batch. With glibc's defaults, blocks that size are fresh mmaps (or the heap's freed top is
given back to the system), so every batch page-faults its activations in again and the
kernel zeroes them, and the forward inside the extract stage ran much slower than the same
forward alone (the figures: bench/README.md, "Extraction"). Keeping blocks up to 32 MiB in the
heap, and freed memory in the process up to 1 GiB, lets each batch reuse the last one's
pages. The peak memory is the same working set; only returning it to the system waits.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Apply glibc mallopt settings to this process (Linux; elsewhere nothing changes). Whether all took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(bool(mallopt(option, value)) for option, value in settings)


def keep_freed_memory() -> bool:
    """Keep freed blocks in the process for the next batch (see the module's docstring). Whether it took."""
    return _mallopt((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def few_arenas(count: int) -> bool:
    """At most ``count`` malloc arenas in this process. Whether it took.

    glibc gives threads that allocate at once arenas of their own, up to 8 per core, and with
    keep_freed_memory each arena keeps what its threads freed. A service decodes and encodes
    images on a pool of worker threads, so its memory would grow with the number of requests in
    flight (bench/README.md, "Inspection service"). Call before the worker threads start.
    """
    return _mallopt((M_ARENA_MAX, count))
