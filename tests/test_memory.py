"""The allocator setting that keeps a long search's heap from fragmenting
(improve_nas.memory)."""

import os
import subprocess
import sys

import pytest

from improve_nas import memory


# In a fresh interpreter: optionally applies improve_nas's allocator setting
# (importing improve_nas.memory loads no TensorFlow), allocates 8 MiB and
# frees it (glibc then raises its own mmap threshold past it), then prints
# whether a 1 MiB block got a mapping of its own (1) or came from the heap.
_MAPPED_PROBE = """
import ctypes, sys
if sys.argv[1] == "limit":
  sys.path.insert(0, sys.argv[2])
  from improve_nas import memory
  assert "tensorflow" not in sys.modules
  memory.limit_heap_fragmentation()
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in (
      "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
      "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _mapped(mode):
  return subprocess.run(
      [sys.executable, "-c", _MAPPED_PROBE, mode,
       os.path.dirname(os.path.dirname(memory.__file__))],
      capture_output=True, text=True, check=True).stdout.strip()


def test_large_blocks_keep_their_own_mappings_after_glibc_raises_its_threshold(
    monkeypatch):
  monkeypatch.delenv(memory.MMAP_THRESHOLD_ENV, raising=False)
  # Plain glibc: the 1 MiB block comes from the heap, where, freed, it
  # stays resident and fragments the heap.
  assert _mapped("plain") == "0"
  # What make_estimator sets: a mapping of its own, returned when freed.
  assert _mapped("limit") == "1"
  # IMPROVE_NAS_MMAP_THRESHOLD=0 leaves glibc alone.
  monkeypatch.setenv(memory.MMAP_THRESHOLD_ENV, "0")
  assert _mapped("limit") == "0"


def test_allocator_threshold_comes_from_the_environment(monkeypatch):
  monkeypatch.setenv(memory.MMAP_THRESHOLD_ENV, "1048576")
  assert memory.limit_heap_fragmentation() == 1 << 20
  monkeypatch.setenv(memory.MMAP_THRESHOLD_ENV, str(64 << 20))
  with pytest.raises(ValueError, match="IMPROVE_NAS_MMAP_THRESHOLD='67108864"):
    memory.limit_heap_fragmentation()
  monkeypatch.setenv(memory.MMAP_THRESHOLD_ENV, "0")  # leaves glibc alone
  assert memory.limit_heap_fragmentation() == 0
  monkeypatch.delenv(memory.MMAP_THRESHOLD_ENV)
  assert memory.limit_heap_fragmentation() == 64 * 1024
