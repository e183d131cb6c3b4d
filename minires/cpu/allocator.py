"""Keep freed memory for reuse: glibc's allocator settings for a training loop.

Every op returns fresh arrays, and a training step allocates and frees the same few hundred
megabytes again and again. By default glibc serves each block of more than 128 KiB (after a few
frees, of more than a few MiB) with a fresh ``mmap`` and gives it back on ``free``, so every
activation is faulted in page by page (4 KiB each, zeroed by the kernel) on every step, and the
page faults of parallel threads queue on one lock. (What that costs a step was not measured on its
own: the commit that added this, with the shared thread pool, took a ResNet-20 step on 2 cores from
about 400 to about 300 ms in a one-off timing of 2026-11-27, not committed.)
:func:`keep_freed_memory` makes glibc serve blocks of up to 32 MiB from its heap and keep what is
freed there for the next step (the resident set stays at the step's peak, as with PyTorch's GPU
caching allocator). ``minires.cpu`` calls it on import on Linux with glibc; set
``MINIRES_KEEP_FREED_MEMORY=0`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 * 2 ** 20                  # glibc's upper limit for it on 64-bit systems
TRIM_THRESHOLD = 2 ** 30


def keep_freed_memory() -> bool:
    """Serve blocks of up to 32 MiB from the heap and return freed heap memory to the system only
    above 1 GiB of free space; True if glibc took both settings."""
    return set_thresholds(mmap=MMAP_THRESHOLD, trim=TRIM_THRESHOLD)


def set_thresholds(mmap: int, trim: int) -> bool:
    """glibc's ``mallopt``: blocks of ``mmap`` bytes or more get their own mapping (returned on
    free); free heap space above ``trim`` bytes goes back to the system. False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))
    except (OSError, AttributeError):
        return False


def wanted() -> bool:
    return os.environ.get("MINIRES_KEEP_FREED_MEMORY", "1") != "0"
