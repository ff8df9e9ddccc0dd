"""Give freed heap memory back to the operating system (glibc's malloc_trim), where there is one.

The main process of `slm prepare` frees what each batch and part used, but glibc keeps freed
chunks between live ones in its heap, and over hundreds of batches that free-but-held memory
grew with the corpus (about 1 MB per 10 MB of text in stage 1). Trimming after each part keeps
the process at its working set. Elsewhere (macOS, musl, Windows) this does nothing.
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
