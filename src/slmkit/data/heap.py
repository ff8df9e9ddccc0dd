"""Give freed heap memory back to the operating system (glibc's malloc_trim and mallopt).

The main process of `slm prepare` frees what each batch and part used, but glibc keeps freed
chunks between live ones in its heap, and over hundreds of batches that free-but-held memory
grew with the corpus (about 1 MB per 10 MB of text in stage 1). Trimming after each part, and
big arrays in their own mappings, keep the process at its working set. Elsewhere (macOS, musl,
Windows) these do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def trim_heap() -> None:
    """Return free heap pages to the system (cheap: about a millisecond)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc's malloc.h)
MMAP_THRESHOLD = 1 << 20


def large_arrays_from_mmap() -> None:
    """Serve every allocation of 1 MB or more (numpy's big temporaries) by its own mmap, returned
    to the system when freed. glibc otherwise raises this threshold after the first such free
    (up to 32 MB) and carves later big arrays out of the heap, where freed ones linger.

    Process-wide and permanent: torch's activations are big arrays too, and a training step in a
    process set this way ran ~1.7x slower (page faults on every fresh mmap). Only `slm prepare` run
    as its own process calls it (cli/prepare_cmd.py); `prepare()` called from Python never does."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass
