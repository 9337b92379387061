"""Handing freed heap back to the operating system after memories are evicted.

A loaded memory is ~2 MB of many small and mid-sized allocations (numpy arrays, dicts).
When it is evicted, CPython and numpy free them, but glibc keeps the freed pages in its
heap (fragmented arenas are not shrunk), so the worker's RSS never goes down after a busy
period: measured 2.0 MB per evicted user kept, 0.06 MB after `malloc_trim(0)`
(docs/BENCHMARKS.md, footprint). Elsewhere (macOS, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import gc
import platform
import sys
from functools import cache


@cache
def _glibc_malloc_trim():
    """glibc's malloc_trim, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Collect garbage, then return free heap pages to the OS; False if it cannot trim."""
    gc.collect()
    malloc_trim = _glibc_malloc_trim()
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True

