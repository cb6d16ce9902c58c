"""The C allocator's settings that a network's forward passes run fastest with.

A forward allocates and frees activations of a few to tens of MiB per layer, batch after
batch. With glibc's defaults, blocks that size are fresh mmaps (or the heap's freed top is
given back to the system), so every batch page-faults its activations in again and the
kernel zeroes them: on the extract stage that made the network's forward 1.7x slower than
the same forward alone (bench/README.md, "Extraction"). Keeping blocks up to 32 MiB in the
heap, and freed memory in the process up to 1 GiB, lets each batch reuse the last one's
pages. The peak memory is the same working set; only returning it to the system waits.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Apply the settings to this process (glibc on Linux; elsewhere nothing changes). Whether they took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
