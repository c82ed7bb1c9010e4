"""Training speed and time left during a Keras-engine iteration, handed to
the search's `on_progress` as the adanet engine's ProgressHook does: speed
and ETAs count from the end of a warm-up (the first step traces the
iteration's graph), and the search's ETA adds, per iteration left, the
time earlier iterations spent outside their training steps."""

from __future__ import annotations

import time
from typing import Callable, Dict

from improve_nas.progress_line import Progress

__all__ = ["Clock"]

_WARMUP_STEPS = 10


class Clock:
  """Training speed and time left, for progress lines."""

  def __init__(self, run, trainer, first: int):
    self.run, self.first = run, first
    self.iteration = trainer.iteration
    self.candidates = trainer.candidates
    self.started = None  # (time, step) at the end of the warm-up
    self.last_report = time.time()
    self.step = first

  def tick(self, step: int, out: Callable[[], Dict]) -> None:
    self.step = step
    if self.started is None and step - self.first >= _WARMUP_STEPS:
      self.started = (time.time(), step)
    run = self.run
    if not run.on_progress or time.time() - self.last_report < \
        run.progress_secs:
      return
    self.last_report = time.time()
    c = run.c
    rate = None
    eta_iteration = eta_search = None
    if self.started and step > self.started[1]:
      rate = (step - self.started[1]) / (time.time() - self.started[0])
      eta_iteration = (c.steps_per_iteration - step) / rate
      overhead = (sum(run.overheads) / len(run.overheads)
                  if run.overheads else None)
      later = c.max_iterations - self.iteration - 1
      eta_search = eta_iteration + later * (
          c.steps_per_iteration / rate + (overhead or 0.0))
    out = out()  # (the step's outputs, made when needed)
    losses = {x.name: float(terms["total"])
              for x, terms in zip(self.candidates, out["terms"])}
    run.on_progress(Progress(
        self.iteration, c.max_iterations, step, c.steps_per_iteration,
        None if rate is None else rate * c.batch_size, losses,
        eta_iteration, eta_search,
        sum(run.overheads) / len(run.overheads) if run.overheads else None))

  def seconds(self) -> float:
    if self.started is None:
      return 0.0
    return time.time() - self.started[0]
