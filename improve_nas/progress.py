"""Progress of a running search: step, speed, loss and time left.

`ProgressHook` is a SessionRunHook for one iteration's `estimator.train`
call. Every `every_secs` it hands a `Progress` to a callback (the command line
prints it; the library itself never prints). Speed and the ETAs are measured
from the end of a warm-up (the first steps of a session run graph
optimisation and fill the input pipeline), so they do not start pessimistic.
The search ETA adds, per iteration left, the time earlier iterations spent
outside their training steps (adanet's graph rebuilds, candidate selection,
evaluation), once one iteration has finished.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import tensorflow as tf

from improve_nas.builder import (IMAGE_COLLECTION, LOSS_COLLECTION,
                                 tensor_candidate, tensor_iteration)
from improve_nas.progress_line import Progress, format_progress, format_seconds

__all__ = ["Progress", "ProgressHook", "ImageSummaryHook", "IMAGE_TAG",
           "format_progress", "format_seconds"]

IMAGE_TAG = "augmented_images"


class ProgressHook(tf.compat.v1.train.SessionRunHook):
  """Reports progress of iteration `iteration` every `every_secs` seconds."""

  def __init__(self, iteration: int, iterations: int, steps: int,
               batch_size: int, callback: Callable[[Progress], None],
               every_secs: float = 10.0, warmup_steps: Optional[int] = None,
               overhead: Optional[float] = None,
               clock: Callable[[], float] = time.monotonic):
    self._iteration = iteration
    self._iterations = iterations
    self._steps = steps
    self._batch_size = batch_size
    self._callback = callback
    self._every_secs = every_secs
    self._warmup = (warmup_steps if warmup_steps is not None
                    else max(2, min(20, steps // 10)))
    self._clock = clock
    self._overhead = overhead
    self._first_time = None   # when the first step of this iteration ended
    self._last_time = None    # when the last one ended
    self._first_step = None   # iteration step when this session started
    self._step = None         # the last step seen
    self._mark = None         # (iteration step, time) at the end of warm-up
    self._last_report = None

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()
    # adanet.Estimator.train may also open a session on the next
    # iteration's graph (to write its first checkpoint); only a graph that
    # trains this hook's iteration is reported.
    self._losses = {tensor_candidate(t): t
                    for t in tf.compat.v1.get_collection(LOSS_COLLECTION)
                    if tensor_iteration(t) == self._iteration}

  def after_create_session(self, session, coord):
    del session, coord
    self._last_report = self._clock()

  def _due(self) -> bool:
    last_step = self._step is not None and self._step + 1 >= self._steps
    return last_step or self._clock() - self._last_report >= self._every_secs

  def before_run(self, run_context):
    if not self._losses:
      return None
    fetches = {"step": self._global_step}
    if self._due():
      fetches["losses"] = self._losses
    return tf.compat.v1.train.SessionRunArgs(fetches)

  def after_run(self, run_context, run_values):
    if not self._losses:
      return
    results = run_values.results
    # The global step as read before this step's update, in iteration terms.
    step = int(results["step"]) - self._iteration * self._steps + 1
    now = self._clock()
    if self._step is not None and step <= self._step:
      return  # adanet may run a step that does not advance the global step
    self._step = step
    if self._first_step is None:
      self._first_step = step - 1
      self._first_time = now
    self._last_time = now
    if self._mark is None and step - self._first_step >= self._warmup:
      self._mark = (step, now)
    if "losses" not in results:
      return
    self._last_report = now
    rate = None
    if self._mark is not None and step > self._mark[0]:
      rate = (step - self._mark[0]) / max(now - self._mark[1], 1e-9)
    left = max(self._steps - step, 0)
    eta_iteration = left / rate if rate else None
    eta_search = None
    if rate:
      later = self._iterations - self._iteration - 1
      extra = self._overhead or 0.0
      eta_search = (eta_iteration + extra +
                    later * (self._steps / rate + extra))
    self._callback(Progress(
        iteration=self._iteration, iterations=self._iterations, step=step,
        steps=self._steps,
        examples_per_second=rate * self._batch_size if rate else None,
        losses={k: float(v) for k, v in results["losses"].items()},
        eta_iteration=eta_iteration, eta_search=eta_search,
        overhead=self._overhead))

  @property
  def training_seconds(self) -> float:
    """Seconds from the end of the first to the end of the last step seen."""
    if self._first_time is None:
      return 0.0
    return self._last_time - self._first_time


class ImageSummaryHook(tf.compat.v1.train.SessionRunHook):
  """Writes the augmented training images of IMAGE_COLLECTION to the
  TensorBoard run `logdir` at the first step of each session and then every
  `every_steps` global steps."""

  def __init__(self, logdir: str, every_steps: int):
    self._logdir = logdir
    self._every_steps = max(1, every_steps)
    self._writer = None
    self._encoded = None

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()
    found = tf.compat.v1.get_collection(IMAGE_COLLECTION)
    if found:
      self._encoded, pixels = found[0], found[1]
      self._height, self._width, self._channels = pixels.shape[1:]
      self._next_step = None  # the global step the next run will reach

  def before_run(self, run_context):
    if self._encoded is None:
      return None
    fetches = {"step": self._global_step}
    if self._next_step is None or self._next_step % self._every_steps == 0:
      fetches["images"] = self._encoded
    return tf.compat.v1.train.SessionRunArgs(fetches)

  def after_run(self, run_context, run_values):
    if self._encoded is None:
      return
    results = run_values.results
    step = int(results["step"]) + 1
    self._next_step = step + 1
    if "images" not in results:
      return
    if self._writer is None:
      # The writer the Estimator's own hooks share: a second one on this
      # directory, opened within the same second, would append to the
      # same events file name and interleave its records.
      self._writer = tf.compat.v1.summary.FileWriterCache.get(self._logdir)
    summary = tf.compat.v1.Summary(value=[
        tf.compat.v1.Summary.Value(
            tag=f"{IMAGE_TAG}/image/{i}",
            image=tf.compat.v1.Summary.Image(
                height=self._height, width=self._width,
                colorspace=self._channels, encoded_image_string=png))
        for i, png in enumerate(results["images"])])
    self._writer.add_summary(summary, step)

  def end(self, session):
    del session
    if self._writer is not None:
      self._writer.flush()
      self._writer = None
