"""Runs a small search under MirroredStrategy on logical CPU devices (or on
one device) and reports what the tests check, as JSON.

    python tests/mirrored_probe.py OUT.json MODEL_DIR CPU_DEVICES [FIELD=VALUE ...]

CPU_DEVICES 0 runs on one device, without a strategy. The logical devices
must be made before TensorFlow starts its runtime, hence a process of its
own. Reported: the search records, and per training call (adanet's
bookkeeping calls included) whether every mirrored variable was equal on
all replicas at its end, and the candidates' total losses at each step.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  pylint: disable=g-import-not-at-top
import tensorflow as tf  # noqa: E402  pylint: disable=g-import-not-at-top

from improve_nas.verbosity import set_tf_verbosity  # noqa: E402  pylint: disable=g-import-not-at-top
from improve_nas import mirrored  # noqa: E402  pylint: disable=g-import-not-at-top
from improve_nas import search  # noqa: E402  pylint: disable=g-import-not-at-top
from improve_nas.builder import LOSS_COLLECTION  # noqa: E402  pylint: disable=g-import-not-at-top
from improve_nas.configs.demo import get_config  # noqa: E402  pylint: disable=g-import-not-at-top


class ReplicaCheck(tf.estimator.SessionRunHook):
  """Records the candidates' losses each step and, at the end of each
  training call, whether each mirrored variable's copies are equal."""

  def __init__(self, report):
    self._report = report

  def begin(self):
    graph = tf.compat.v1.get_default_graph()
    self._losses = graph.get_collection(LOSS_COLLECTION)
    self._mirrored = [v for v in graph.get_collection(
        tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
                      if hasattr(v, "values") and len(v.values) > 1
                      and type(v).__name__ == "MirroredVariable"]
    self._call = {"losses": [], "mirrored_variables": len(self._mirrored),
                  "unequal": []}
    self._report["calls"].append(self._call)

  def before_run(self, run_context):
    return tf.estimator.SessionRunArgs(self._losses)

  def after_run(self, run_context, run_values):
    self._call["losses"].append(
        [float(np.mean(v)) for v in run_values.results])

  def end(self, session):
    # One run for all of them: each new set of fetches costs a graph prune.
    values = session.run([list(v.values) for v in self._mirrored])
    for variable, copies in zip(self._mirrored, values):
      if not all(np.array_equal(copies[0], c) for c in copies[1:]):
        self._call["unequal"].append(variable.name)


def main(out, model_dir, cpu_devices, *fields):
  cpu_devices = int(cpu_devices)
  set_tf_verbosity(False)
  run_config = None
  if cpu_devices:
    run_config = tf.estimator.RunConfig(
        train_distribute=mirrored.strategy(cpu_devices))
  c = get_config()
  for field in fields:
    key, value = field.split("=", 1)
    c[key] = type(c[key])(value) if not isinstance(c[key], bool) else (
        value == "True")
  report = {"calls": []}
  result = search.run_search(c, model_dir, run_config=run_config,
                             hooks=[ReplicaCheck(report)])
  report["records"] = [
      {"chosen": r.chosen, "test_accuracy": r.test_accuracy,
       "candidates": [k.name for k in r.candidates],
       "selection_losses": [k.selection_loss for k in r.candidates],
       "mixture_weights": r.mixture_weights} for r in result.records]
  with open(out, "w") as f:
    json.dump(report, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
