"""Keep freed memory for reuse: what makes the pixel evidence pay for pages, not arithmetic.

A forward pass of a model with pixel evidence makes temporaries of tens of megabytes (every
pixel's ray at D depths in K views). glibc's malloc hands each block that large to the kernel
(mmap) and back (munmap) at every free, so every pass faults in and zeroes its pages again: on a
sharp model's eval batch a third of the time went to the kernel (benchmarks/allocator.py). With
`keep_freed_memory` freed blocks stay in the process's heap and the next pass reuses them.

    keep_freed_memory()   # gqn's console script calls it first; a no-op where malloc is not glibc's

The cost: the process keeps its peak memory resident until it exits, instead of returning it
between passes. Every gqn verb is one job whose peak it needs again soon after.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters (glibc's malloc.h)
NEVER_TRIM = 2**31 - 1  # bytes (an int): free memory at the heap's top kept, at most


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve large blocks from the heap, not mmap, and to keep what is
    freed; True if it did, False where the C library is not glibc (macOS, musl) and nothing
    changed."""
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
