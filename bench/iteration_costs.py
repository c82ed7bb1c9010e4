"""What each iteration of a search costs: its training steps, and the
boundary between iterations.

    .venv/bin/python bench/iteration_costs.py [--iterations=4] [--steps=150] \
        [--config=improve_nas/configs/demo.py] [--config.FIELD=VALUE ...]

Runs a search with `search.run_search`, as `improve-nas` does, with a hook
that clocks every training step. By default it is the demo's search (8x8
digits, batch 32, adaptive KD, learned mixture weights) with a constant
generator of 1@48, --iterations iterations of --steps steps; pass
--config.generator=dynamic --iterations=3 --steps=200 for the demo itself.

Reported per iteration:
- `steps_per_second`: the training rate after the first 10 steps of the
  iteration (graph building, session start and warm-up excluded);
- with a constant generator, `predicted_steps_per_second`: one candidate's
  training step (iteration 1's measured step time) plus one inference
  forward pass (batch-norm in inference mode, no gradients) per frozen
  member, that pass measured separately in the same process, in its own
  graph and a session with the search's session options; and
  `measured_over_predicted`, the ratio of step times (1.0 = frozen members
  cost exactly their forward pass);
- `boundary_seconds`: from the end of the iteration's last step to the start
  of the next iteration's first step: adanet's selection of the best
  candidate, the test evaluation `run_search` does, the records, building
  and restoring the next iteration's graph, the session start; and
  `boundary_share`, that gap over the wall time from this iteration's first
  step to the next one's (the last iteration's gap is to the end of the
  search, its selection, test evaluation and records, without an export).
- `boundary_phases`: the boundary split into its phases, in seconds:
  `selection` (adanet's candidate evaluation phase in a graph of its own:
  every candidate ensemble over the selection split; 0 since the test
  evaluation selects in its own graph and session, improve_nas/one_pass.py,
  unless a resumed search needs it), `test_evaluation` (the rest of
  `evaluate`: building the iteration's graph, the selection in it, running
  the test split), `graph_growing` (adanet's growing phase: the next iteration's
  graph built in a temporary model_dir and its first checkpoint written),
  `training_graph` (the next `train` call up to its hooks' `begin`: the
  next iteration's training graph built again), `session_start` (session
  creation and restore), `until_first_step` (hooks' `after_create_session`
  to the first step) and `other` (what is left: records, summaries).

Prints one JSON object.
"""

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

import improve_nas  # pylint: disable=g-import-not-at-top
from step_clock import clock_hook, quiet, step_seconds  # pylint: disable=g-bad-import-order

config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Search to measure.")
flags.DEFINE_integer("iterations", 4, "Iterations (config.max_iterations).")
flags.DEFINE_integer("steps", 150, "Steps per iteration.")
flags.DEFINE_string("arch", "1@48", "The constant generator's tower, unless "
                    "--config.generator is given.")

FLAGS = flags.FLAGS


def clock_phases(events):
  """Appends (name, start, end) to `events` for each call of adanet's
  selection, evaluation, graph growing and training, and (name, time, time)
  for each training session's hooks' `begin` and `after_create_session`.

  Returns the hook to pass to the search. Patches the AdaNasEstimator class
  of this process (a benchmark's own business)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.adanas_estimator import AdaNasEstimator  # pylint: disable=g-import-not-at-top

  def timed(name):
    # The outermost definition: AdaNasEstimator's where it has its own.
    method = getattr(AdaNasEstimator, name)

    def wrapper(*args, **kwargs):
      start = time.perf_counter()
      try:
        return method(*args, **kwargs)
      finally:
        events.append((name.strip("_"), start, time.perf_counter()))

    setattr(AdaNasEstimator, name, wrapper)

  for name in ("_execute_candidate_evaluation_phase", "evaluate",
               "_execute_graph_growing_phase", "train"):
    timed(name)

  class Marks(tf.estimator.SessionRunHook):

    def begin(self):
      now = time.perf_counter()
      events.append(("begin", now, now))

    def after_create_session(self, session, coord):
      now = time.perf_counter()
      events.append(("session", now, now))

  return Marks()


def boundary_phases(events, start: float, end: float) -> dict:
  """The phases of the boundary from `start` to `end` (see the docstring)."""
  inside = [e for e in events if start <= e[1] <= end]

  def total(name):
    return sum(e[2] - e[1] for e in inside if e[0] == name)

  def last(name):
    times = [e[1] for e in inside if e[0] == name]
    return times[-1] if times else None

  selection = total("execute_candidate_evaluation_phase")
  phases = {
      "selection": selection,
      "test_evaluation": total("evaluate") - selection,
      "graph_growing": total("execute_graph_growing_phase"),
  }
  train, begin, session = last("train"), last("begin"), last("session")
  if train is not None and begin is not None and train <= begin <= session:
    phases.update(training_graph=begin - train,
                  session_start=session - begin,
                  until_first_step=end - session)
  phases["other"] = (end - start) - sum(phases.values())
  return {name: round(seconds, 2) for name, seconds in phases.items()}


def forward_seconds(arch: str, num_classes: int, image_size: int,
                    channels: int, batch_size: int) -> float:
  """One inference forward pass of a tower, in a graph and session like
  the search's (median of 30 after 5 untimed)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.estimator import _session_config  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.tower import NasnetTower  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    images = tf.constant(np.random.RandomState(0).uniform(
        -1, 1, [batch_size, image_size, image_size, channels]), tf.float32)
    tower = NasnetTower(arch, num_classes, use_aux_head=True, seed=1)
    logits = tower(images, training=False)["logits"]
    with tf.compat.v1.Session(config=_session_config()) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      times = []
      for i in range(35):
        start = time.perf_counter()
        sess.run(logits.op)
        if i >= 5:
          times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  quiet()
  from improve_nas import search  # pylint: disable=g-import-not-at-top
  from improve_nas.data import datasets  # pylint: disable=g-import-not-at-top
  from improve_nas.dataset_facts import resolve_image_size  # pylint: disable=g-import-not-at-top

  c = FLAGS.config
  if not any(a.startswith("--config.generator") for a in sys.argv):
    c.generator = "constant"
    c.initial_arch = FLAGS.arch
  c.max_iterations = FLAGS.iterations
  c.steps_per_iteration = FLAGS.steps
  segments, events = [], []
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    result = search.run_search(c, os.path.join(tmp, "run"),
                               hooks=[clock_hook(segments),
                                      clock_phases(events)])
    end = time.perf_counter()
  records = result.records
  # adanet's training call also opens sessions of its own between
  # iterations (bookkeeping: none or one session.run each); they are part
  # of the boundary. The segments of many steps are the iterations.
  segments = [segment for segment in segments if len(segment) > 1]
  assert len(segments) == len(records), [len(s) for s in segments]
  info = datasets.load_source(c.dataset).info
  members_infer = None
  if c.generator == "constant":
    members_infer = forward_seconds(c.initial_arch, info.num_classes,
                                    resolve_image_size(c, info),
                                    info.image_shape[-1], c.batch_size)
  first_step = step_seconds(segments[0])
  iterations = []
  for t, segment in enumerate(segments):
    nxt = segments[t + 1][0][0] if t + 1 < len(segments) else end
    gap = nxt - segment[-1][1]
    measured = step_seconds(segment)
    entry = {
        "iteration": t + 1, "chosen": records[t].chosen,
        "members_before": t, "steps": len(segment),
        "steps_per_second": round(1 / measured, 2),
        "boundary_seconds": round(gap, 2),
        "boundary_share": round(gap / (nxt - segment[0][0]), 4),
        "boundary_phases": boundary_phases(events, segment[-1][1], nxt),
    }
    if members_infer is not None:
      predicted = first_step + t * members_infer
      entry["predicted_steps_per_second"] = round(1 / predicted, 2)
      entry["measured_over_predicted"] = round(measured / predicted, 3)
    iterations.append(entry)
  print(json.dumps({
      "benchmark": "iteration_costs",
      "cpu_count": os.cpu_count(),
      "generator": c.generator, "initial_arch": c.initial_arch,
      "image_size": c.image_size, "batch_size": c.batch_size,
      "steps_per_iteration": c.steps_per_iteration,
      "member_forward_seconds": (None if members_infer is None
                                 else round(members_infer, 5)),
      "before_first_step_seconds": round(segments[0][0][0] - start, 1),
      "wall_seconds": round(end - start, 1),
      "final_test_accuracy": round(records[-1].test_accuracy, 4),
      "iterations": iterations,
  }))


if __name__ == "__main__":
  app.run(main)
