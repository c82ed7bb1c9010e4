"""Two candidates trained in one graph against the two trained one after
the other.

    .venv/bin/python bench/joint_candidates.py [--steps=80] \
        [--config=improve_nas/configs/demo.py] [--config.FIELD=VALUE ...]

The demo's first iteration (8x8 digits, batch 32) with its dynamic
generator trains two candidates in one graph, each on every batch (from
1@48: 2@48 and 1@96). The same two towers are then trained alone, each as
the single candidate of a constant generator. Each run is one iteration of
--steps steps in a fresh model_dir, timed by a hook after 10 warm-up steps.
Reported: steps per second of each run, and candidate-examples per second
(candidates x batch x steps/s): together against one after the other
(the two alone runs' step times added). A ratio above 1 means training the
candidates together costs less than training them in turn. Prints one
JSON object.
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

import improve_nas  # pylint: disable=g-import-not-at-top
from step_clock import clock_hook, quiet, step_seconds  # pylint: disable=g-bad-import-order

config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Search whose first iteration is used.")
flags.DEFINE_integer("steps", 80, "Steps of each run.")

FLAGS = flags.FLAGS


def _one_iteration(c, model_dir):
  from improve_nas import search  # pylint: disable=g-import-not-at-top
  segments = []
  result = search.run_search(c, model_dir, hooks=[clock_hook(segments)])
  return result.records[0], step_seconds(max(segments, key=len))


def main(argv):
  del argv
  quiet()
  c = FLAGS.config
  c.max_iterations = 1
  c.steps_per_iteration = FLAGS.steps
  c.generator = "dynamic"
  with tempfile.TemporaryDirectory() as tmp:
    record, joint = _one_iteration(c, os.path.join(tmp, "joint"))
    archs = [x.arch for x in record.candidates]
    alone = {}
    for i, arch in enumerate(archs):
      single = c.copy_and_resolve_references()
      single.generator = "constant"
      single.initial_arch = arch
      _, alone[arch] = _one_iteration(single, os.path.join(tmp, f"alone{i}"))
  n, batch = len(archs), c.batch_size
  together = n * batch / joint
  in_turn = n * batch / sum(alone.values())
  print(json.dumps({
      "benchmark": "joint_candidates",
      "cpu_count": os.cpu_count(),
      "candidates": archs, "batch_size": batch, "steps": FLAGS.steps,
      "joint_steps_per_second": round(1 / joint, 2),
      "alone_steps_per_second": {a: round(1 / s, 2) for a, s in alone.items()},
      "candidate_examples_per_second_together": round(together, 1),
      "candidate_examples_per_second_in_turn": round(in_turn, 1),
      "ratio_together_to_in_turn": round(together / in_turn, 3),
  }))


if __name__ == "__main__":
  app.run(main)
