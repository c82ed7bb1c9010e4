"""Process memory over a long search: adanet builds a new graph for every
iteration (and several sessions per iteration), so a search allocates and
frees far more than any one iteration holds.

  * `release_freed_memory` frees a finished iteration's graph and gives
    freed heap pages back to the system;
  * `limit_heap_fragmentation` stops glibc's heap from fragmenting over the
    many graphs a search builds.

Both do nothing where the C library is not glibc. This module imports no
TensorFlow.
"""

from __future__ import annotations

import ctypes
import gc
import os

from improve_nas.errors import ConfigError

__all__ = ["release_freed_memory", "limit_heap_fragmentation",
           "MMAP_THRESHOLD_ENV"]


def _libc_function(name: str):
  try:
    return getattr(ctypes.CDLL("libc.so.6"), name)
  except (OSError, AttributeError):  # not glibc: nothing to tune
    return None


_MALLOC_TRIM = _libc_function("malloc_trim")
_MALLOPT = _libc_function("mallopt")
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD_ENV = "IMPROVE_NAS_MMAP_THRESHOLD"
_DEFAULT_MMAP_THRESHOLD = 64 * 1024
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def limit_heap_fragmentation() -> int:
  """Makes glibc serve every allocation of 64 KiB or more (or
  $IMPROVE_NAS_MMAP_THRESHOLD bytes; 0 leaves glibc alone) with its own
  mapping, returned to the system when freed. Returns the threshold set.

  glibc starts at 128 KiB but raises the threshold, up to 32 MiB, each time
  a mapped block is freed, so after TensorFlow frees its first large
  buffers, graphs' and tensors' large blocks come from the heap instead,
  where they fragment it: the demo's third iteration then peaked 160 MB
  above the same iteration run alone in a fresh process (see
  bench/memory_growth.py). A fixed threshold stops that.
  """
  value = os.environ.get(MMAP_THRESHOLD_ENV, "").strip()
  try:
    threshold = int(value) if value else _DEFAULT_MMAP_THRESHOLD
  except ValueError:
    threshold = -1
  # glibc refuses thresholds above half its 64 MiB heap size.
  if not 0 <= threshold <= _MAX_MMAP_THRESHOLD:
    raise ConfigError(
        f"{MMAP_THRESHOLD_ENV}={value!r} is not a size from 0 to "
        f"{_MAX_MMAP_THRESHOLD} bytes; set it to e.g. 65536, or to 0 to "
        "leave glibc's malloc alone")
  if threshold and _MALLOPT is not None:
    _MALLOPT(_M_MMAP_THRESHOLD, threshold)
  return threshold


def release_freed_memory() -> None:
  """Frees a finished graph now (it is a web of reference cycles, so only
  the cycle collector frees it) and asks glibc to give freed heap pages back
  to the system. Without this a long search keeps the high-water mark of
  every earlier iteration resident."""
  gc.collect()
  if _MALLOC_TRIM is not None:
    _MALLOC_TRIM(0)
