"""Resident-memory sampling shared by the benchmarks."""

import threading

import psutil

MB = 1024.0 ** 2


class MemorySampler(threading.Thread):
  """Samples this process's resident set size every `every_secs`;
  `take_peak` returns the peak since the previous call, in bytes."""

  def __init__(self, every_secs=0.05):
    super().__init__(daemon=True)
    self._process = psutil.Process()
    self._every = every_secs
    self._peak = 0
    self._lock = threading.Lock()
    self._done = threading.Event()

  def run(self):
    while not self._done.wait(self._every):
      rss = self._process.memory_info().rss
      with self._lock:
        self._peak = max(self._peak, rss)

  def take_peak(self):
    rss = self._process.memory_info().rss
    with self._lock:
      peak, self._peak = max(self._peak, rss), rss
    return peak

  def stop(self):
    self._done.set()
