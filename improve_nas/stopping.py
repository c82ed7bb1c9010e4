"""A clean stop on Ctrl-C or SIGTERM: the step in flight finishes, a
checkpoint is written, and the search returns saying where it stopped."""

from __future__ import annotations

import signal
import threading
from typing import Optional

import tensorflow as tf

__all__ = ["StopRequest", "StopHook"]


class StopRequest:
  """Turns SIGINT (Ctrl-C) and SIGTERM into a clean stop while installed
  (`with StopRequest() as stop:`, main thread only).

  The first signal sets `signal`; training stops after the step in flight,
  tf.estimator's CheckpointSaverHook writes a checkpoint of that step, and
  `run_search` returns. A second signal raises KeyboardInterrupt at once.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signal: Optional[int] = None
    self._previous = {}

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:
      self.__exit__()
      raise KeyboardInterrupt
    self.signal = signum


class StopHook(tf.compat.v1.train.SessionRunHook):
  """Ends the training session after the current step once a stop is
  requested; the session's end writes the checkpoint."""

  def __init__(self, stop: StopRequest):
    self._stop = stop

  def after_run(self, run_context, run_values):
    del run_values
    if self._stop.signal is not None:
      run_context.request_stop()
