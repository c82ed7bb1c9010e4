"""What one finished iteration leaves behind: its `IterationRecord`, built
from plain facts an engine hands over, and its TensorBoard summaries."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from improve_nas.model_dir import RECORD_TAG, summary_metadata
from improve_nas.nasnet.counting import TowerCost
from improve_nas.proposals import Candidate, member_key
from improve_nas.records import CandidateRecord, IterationRecord

__all__ = ["IterationFacts", "make_record", "summarize", "diverged_message"]


@dataclasses.dataclass
class IterationFacts:
  """What an engine knows once iteration `iteration` is evaluated."""

  iteration: int
  candidates: Sequence[Candidate]         # those trained, engine's order
  selection_losses: Sequence[Optional[float]]  # NaN: diverged; None: none
  chosen: Candidate
  metrics: Dict[str, float]               # the chosen ensemble's test metrics
  own_accuracies: Dict[str, float]        # by member_key: each tower alone
  seconds: float


def make_record(facts: IterationFacts, previous: List[IterationRecord],
                cost: Callable[..., TowerCost], c) -> IterationRecord:
  """The record of an iteration; `previous` are the records before it and
  `cost(arch)` a tower's TowerCost."""
  t = facts.iteration

  def own_accuracy(iteration, name):
    value = facts.own_accuracies.get(member_key(iteration, name))
    return None if value is None else round(float(value), 6)

  candidates = []
  for x, loss in zip(facts.candidates, facts.selection_losses):
    diverged = loss is not None and not math.isfinite(loss)
    candidates.append(CandidateRecord(
        name=x.name, arch=str(x.arch), reason=x.reason,
        params=x.params, selection_loss=None if diverged else loss,
        diverged=diverged, test_accuracy=own_accuracy(t, x.name),
        mult_adds=cost(x.arch).mult_adds))
  chosen = next(r for r in candidates if r.name == facts.chosen.name)
  before = previous[-1] if previous else None
  members = (before.ensemble_archs if before else []) + [chosen.arch]
  params = (before.ensemble_params if before else 0) + chosen.params
  # Frozen members: measured again in this evaluation graph; the record of
  # their own iteration is the fallback.
  accuracies = [own_accuracy(r.iteration, r.chosen) for r in previous]
  if before and len(before.member_accuracies) == len(accuracies):
    accuracies = [a if a is not None else b
                  for a, b in zip(accuracies, before.member_accuracies)]
  accuracies.append(chosen.test_accuracy)
  metrics = facts.metrics
  accuracy = float(metrics["accuracy"])
  known = [a for a in accuracies if a is not None]
  trained = sum(3 * (cost(x.arch).mult_adds_with_aux if c.use_aux_head
                     else cost(x.arch).mult_adds) for x in facts.candidates)
  frozen = sum(cost(arch).mult_adds for arch in members[:-1])
  return IterationRecord(
      iteration=t, candidates=candidates, chosen=chosen.name,
      ensemble_archs=members, ensemble_params=params,
      test_accuracy=accuracy,
      test_loss=float(metrics["average_loss"]),
      eval_metrics={k: round(float(v), 6) for k, v in metrics.items()
                    if k in ("accuracy", "average_loss", "loss")},
      global_step=int(metrics["global_step"]), seconds=round(facts.seconds, 1),
      member_accuracies=accuracies,
      # (+ 0.0: a gain of "-0.0" is none)
      ensemble_gain=round(accuracy - max(known), 6) + 0.0 if known else None,
      train_mult_adds=(trained + frozen) * c.steps_per_iteration *
      c.batch_size)


def summarize(writer, r: IterationRecord) -> None:
  """The chosen architecture (text) and per-iteration scalars, for
  TensorBoard, at the iteration's last global step; the record itself as a
  summary of our own plugin (model_dir.recovered_records reads it back)."""
  rows = "\n".join(f"| {i} | {arch} | {w:.4f} |" for i, (arch, w) in
                   enumerate(zip(r.ensemble_archs, r.mixture_weights or
                                 [float("nan")] * len(r.ensemble_archs))))
  text = (f"**Iteration {r.iteration}**: chose {r.chosen} "
          f"({next(x.arch for x in r.candidates if x.name == r.chosen)}) of "
          f"{', '.join(x.arch for x in r.candidates)}; ensemble of "
          f"{r.ensemble_params:,} parameters, test accuracy "
          f"{r.test_accuracy:.4f}\n\n| member | architecture | mixture "
          f"weight |\n|---|---|---|\n{rows}")
  with writer.as_default(step=r.global_step):
    tf.summary.write(RECORD_TAG, json.dumps(dataclasses.asdict(r)),
                     metadata=summary_metadata())
    tf.summary.text("architecture", text)
    tf.summary.scalar("ensemble/test_accuracy", r.test_accuracy)
    tf.summary.scalar("ensemble/params", float(r.ensemble_params))
    tf.summary.scalar("iteration/steps_per_second", r.steps_per_second)
    tf.summary.scalar("iteration/seconds", r.seconds)
    if r.member_accuracies and r.member_accuracies[-1] is not None:
      tf.summary.scalar("member/own_test_accuracy", r.member_accuracies[-1])
    if r.ensemble_gain is not None:
      tf.summary.scalar("ensemble/gain_over_best_member", r.ensemble_gain)
  writer.flush()


def diverged_message(c, t: int, candidates: Sequence[Candidate],
                     records: List[IterationRecord]) -> str:
  """The line saying every candidate of iteration t diverged."""
  names = ", ".join(x.name for x in candidates)
  kept = (f"the ensemble of iteration {t} "
          f"({' + '.join(records[-1].ensemble_archs)}) is kept" if records
          else "there is no ensemble to keep")
  return (f"iteration {t + 1}: every candidate diverged ({names}: loss NaN or "
          f"inf); {kept}; lower --config.learning_rate (now "
          f"{c.learning_rate:g}) or --config.clip_gradients (now "
          f"{c.clip_gradients:g})")
