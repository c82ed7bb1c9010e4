"""Helpers of the benchmarks that time a search's training steps."""

import statistics
import time

from absl import logging

from improve_nas.verbosity import set_tf_verbosity

WARMUP = 10  # untimed steps at the start of each iteration


def quiet() -> None:
  """Only warnings and errors from TensorFlow, absl and TFDS."""
  set_tf_verbosity(False)
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()


def clock_hook(segments):
  """A SessionRunHook appending (start, end) of each step to a new list in
  `segments` for each training call (one per iteration)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class Clock(tf.estimator.SessionRunHook):

    def begin(self):
      segments.append([])

    def before_run(self, run_context):
      self._start = time.perf_counter()

    def after_run(self, run_context, run_values):
      segments[-1].append((self._start, time.perf_counter()))

  return Clock()


def step_seconds(segment) -> float:
  """Median wall time of the steps after the warm-up."""
  timed = segment[WARMUP:] or segment
  return statistics.median(end - start for start, end in timed)
