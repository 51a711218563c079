"""Give freed heap back to the system: after a burst the allocator keeps the pages it grew into, so the
process's RSS would stay at its peak. glibc only (`malloc_trim`); elsewhere a no-op."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import cast

__all__ = ["trim"]


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return cast(Callable[[int], int], ctypes.CDLL(name).malloc_trim)
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def trim() -> bool:
    """Return the free pages at the top and inside the heap to the system; True when any were."""
    return bool(_TRIM(0)) if _TRIM is not None else False
