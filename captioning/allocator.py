"""Process-wide setting of the C allocator, applied by the entry points (library code never calls it).

A training step allocates and frees the same large buffers (logits, activations, gradients) every step.
glibc gives some freed blocks back to the system and maps them again, zero-filled page by page, at the next
step: thousands of page faults per step, 3-4% of an epoch's time on a 2-core CPU (more for buffers over
glibc's 32 MB limit). Keeping freed memory in the heap costs no more resident memory than the step's peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory instead of returning it to the system; False where it is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, 2**31 - 1),
            (_M_TOP_PAD, 64 * 1024 * 1024),
        )
    )
