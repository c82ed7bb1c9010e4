"""A running search's progress, as any engine reports it: one `Progress`
every few seconds of training, and the console line the command line prints
for it."""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

__all__ = ["Progress", "format_progress", "format_seconds"]


@dataclasses.dataclass(frozen=True)
class Progress:
  iteration: int                 # 0-based
  iterations: int                # config.max_iterations
  step: int                      # steps done in this iteration
  steps: int                     # steps per iteration
  examples_per_second: Optional[float]  # None while warming up
  losses: Dict[str, float]       # each training candidate's total loss
  eta_iteration: Optional[float]  # seconds; None while warming up
  eta_search: Optional[float]
  # Measured seconds per iteration outside its training steps (graph
  # rebuilds, selection, evaluation); None in the first iteration.
  overhead: Optional[float] = None


def format_seconds(seconds: Optional[float]) -> str:
  """3725 -> '1h02m', 125 -> '2m05s', None -> '?'."""
  if seconds is None:
    return "?"
  seconds = int(round(seconds))
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  if seconds >= 60:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds}s"


def format_progress(p: Progress) -> str:
  """One console line, e.g. 'iteration 2/10  step 300/1000  410 ex/s ...'."""
  if len(p.losses) == 1:
    loss = f"loss {next(iter(p.losses.values())):.4f}"
  else:
    loss = "loss " + " ".join(f"{k}={v:.4f}" for k, v in sorted(
        p.losses.items()))
  speed = ("warming up" if p.examples_per_second is None
           else f"{p.examples_per_second:,.0f} ex/s")
  return (f"  iteration {p.iteration + 1}/{p.iterations}  step {p.step}/"
          f"{p.steps}  {speed}  {loss}  ETA iteration "
          f"{format_seconds(p.eta_iteration)}, search "
          f"{format_seconds(p.eta_search)}")
