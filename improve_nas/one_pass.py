"""Selection and test evaluation of an iteration in one graph and one session.

adanet 0.9.0 evaluates a finished iteration twice over: its candidate
evaluation phase builds the iteration's whole graph in EVAL mode, restores
the checkpoint and runs every candidate ensemble over the selection split
to pick the best; then `evaluate` builds the same graph again, with that
index as a constant, restores again and runs the test split. At the demo's
sizes those were 1.7-7.2 s and 2.5-6.6 s of each boundary, nearly all graph
building and restoring.

Here `evaluate` builds the graph once, with
- the input read through one iterator that either split can initialise,
- the best candidate's index in a local variable instead of a constant,
and, in the evaluation session before its first step (`SelectFirst`),
initialises the iterator with the selection split, runs every candidate
ensemble's adanet loss over it, averages the batches as adanet's Evaluator
does (float32 totals, batch by batch), lets the search's evaluator choose,
stores the index, and initialises the iterator with the test split; the
Estimator's evaluation then runs as before. The selection's result is the
one the separate phase gives on the same checkpoint.
"""

from __future__ import annotations

import inspect
from typing import Callable, List, Optional

import numpy as np
import tensorflow as tf

__all__ = ["NotCombinable", "Plan", "combined_input_fn", "SelectFirst",
           "batch_mean"]


class NotCombinable(Exception):
  """The two input_fns cannot share one iterator (not datasets, or their
  elements differ in structure, type or example shape): evaluate the usual
  way."""


class Plan:
  """One combined evaluation: passed to adanet as
  `best_ensemble_index_override`, it gets the iteration's candidate
  ensembles (adanet's order) from the iteration builder (see
  compat.nan_candidates_lose), which takes its `index_tensor` as the best
  index: a local int32 variable that `SelectFirst` sets before the first
  step. It also keeps the iterator's two initialisers and the choice."""

  def __init__(self):
    self.candidates: list = []
    self.assign = None
    self.value = None  # the placeholder `assign` takes
    self.selection_init = None
    self.test_init = None
    self.chosen: Optional[int] = None

  def index_tensor(self, candidates) -> tf.Tensor:
    self.candidates = list(candidates)
    variable = tf.compat.v1.get_variable(
        "dynamic_best_index", shape=[], dtype=tf.int32,
        initializer=tf.compat.v1.zeros_initializer(), trainable=False,
        collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES])
    self.value = tf.compat.v1.placeholder(tf.int32, [], name="best_index")
    self.assign = variable.assign(self.value)
    return variable.read_value()

  def architecture(self, index: int):
    return self.candidates[index].ensemble_spec.architecture


def _call(fn: Callable, mode, params, config):
  """`fn` called as the Estimator calls an input_fn."""
  names = inspect.signature(fn).parameters
  kwargs = {}
  for name, value in (("mode", mode), ("params", params),
                      ("config", config)):
    if name in names:
      kwargs[name] = value
  return fn(**kwargs)


def _batch_relaxed(a: tf.TensorShape, b: tf.TensorShape) -> tf.TensorShape:
  """The shape both `a` and `b` have, the batch size left open; raises
  NotCombinable when they differ in anything else (the graph is built for
  one shape of example)."""
  if (a.rank is None or a.rank != b.rank or
      a.as_list()[1:] != b.as_list()[1:]):
    raise NotCombinable(f"the splits' examples differ in shape: {a}, {b}")
  return a.most_specific_compatible_shape(b)


def combined_input_fn(plan: Plan, selection_fn: Callable,
                      test_fn: Callable) -> Callable:
  """An Estimator input_fn reading either split through one iterator
  (the test split unless `SelectFirst` says otherwise).

  Raises NotCombinable (when the Estimator calls it) if either input_fn
  does not return a tf.data.Dataset, or their elements differ in type or in
  shape (the batch size aside)."""

  def input_fn(mode, params, config):
    datasets = [_call(fn, mode, params, config)
                for fn in (selection_fn, test_fn)]
    if not all(isinstance(ds, tf.data.Dataset) for ds in datasets):
      raise NotCombinable("an input_fn returned no tf.data.Dataset")
    types = [tf.compat.v1.data.get_output_types(ds) for ds in datasets]
    classes = [tf.compat.v1.data.get_output_classes(ds) for ds in datasets]
    try:
      tf.nest.assert_same_structure(types[0], types[1])
    except (ValueError, TypeError) as e:
      raise NotCombinable(str(e)) from None
    if types[0] != types[1] or classes[0] != classes[1]:
      raise NotCombinable("the splits' elements differ in type")
    shapes = tf.nest.map_structure(
        _batch_relaxed, tf.compat.v1.data.get_output_shapes(datasets[0]),
        tf.compat.v1.data.get_output_shapes(datasets[1]))
    iterator = tf.compat.v1.data.Iterator.from_structure(
        types[0], shapes, output_classes=classes[0])
    plan.selection_init = iterator.make_initializer(datasets[0])
    plan.test_init = iterator.make_initializer(datasets[1])
    return iterator.get_next()

  return input_fn


def batch_mean(batches: List[np.ndarray], width: int) -> List[float]:
  """Each of `width` columns' mean over the batches, as
  tf.compat.v1.metrics.mean of one scalar per batch computes it: float32
  running totals, divided by the float32 count (0 when there are no
  batches)."""
  if not batches:
    return [0.0] * width
  totals = np.zeros(width, np.float32)
  for values in batches:
    totals = (totals + np.asarray(values, np.float32)).astype(np.float32)
  count = np.float32(len(batches))
  return [float(v) for v in (totals / count).astype(np.float32)]


class SelectFirst(tf.compat.v1.train.SessionRunHook):
  """Runs the selection in the evaluation session before its first step
  (see the module docstring). `choose(values)` gets every candidate
  ensemble's selection loss and returns the best index (it may raise, e.g.
  when every candidate diverged); a lone candidate is chosen unevaluated,
  as adanet does. `steps`: at most that many selection batches."""

  def __init__(self, plan: Plan, choose: Callable[[List[float]], int],
               steps: Optional[int]):
    self._plan = plan
    self._choose = choose
    self._steps = steps

  def after_create_session(self, session, coord):
    del coord
    plan = self._plan
    if not plan.candidates:  # adanet's iteration builder did not ask
      raise RuntimeError("the evaluation graph holds no adanet iteration "
                         "to select from")
    losses = [c.ensemble_spec.adanet_loss for c in plan.candidates]
    index = 0
    if len(losses) > 1:
      session.run(plan.selection_init)
      batches = []
      while self._steps is None or len(batches) < self._steps:
        try:
          batches.append(session.run(losses))
        except tf.errors.OutOfRangeError:
          break
      index = int(self._choose(batch_mean(batches, len(losses))))
    session.run(plan.assign, {plan.value: index})
    session.run(plan.test_init)
    plan.chosen = index
