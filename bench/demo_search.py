"""Times the offline demo search end to end and prints one JSON object.

    .venv/bin/python bench/demo_search.py [--config.FIELD=VALUE ...]

Reports wall seconds (the whole search: graph building, training, adanet's
selection and the test evaluation of every iteration), the final ensemble's
test accuracy on the 360 digits test images, per-iteration figures, and the
process's memory: resident set size sampled every 50 ms, its peak during
each iteration and after each iteration, the peak of the whole run
(getrusage), and how much each iteration's peak grew against what the added
member needs (its float32 weights, plus batch-norm statistics, held once).
Pass --config.max_iterations=6 to see the trend over more iterations.
"""

import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

import improve_nas
from improve_nas import search
from improve_nas.verbosity import set_tf_verbosity

import psutil  # pylint: disable=g-bad-import-order
from rss_sampler import MB, MemorySampler  # pylint: disable=g-bad-import-order

config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Config to time.")


def main(argv):
  del argv
  set_tf_verbosity(False)
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  c = flags.FLAGS.config
  sampler = MemorySampler()
  rss_before = psutil.Process().memory_info().rss
  memory = []

  def iteration_done(record):
    memory.append({"peak_rss_mb": round(sampler.take_peak() / MB, 1),
                   "rss_after_mb": round(
                       psutil.Process().memory_info().rss / MB, 1)})

  sampler.start()
  with tempfile.TemporaryDirectory() as model_dir:
    start = time.time()
    result = search.run_search(c, os.path.join(model_dir, "run"),
                               on_iteration=iteration_done)
    seconds = time.time() - start
  sampler.stop()
  last = result.records[-1]
  added = [r.ensemble_params - (result.records[i - 1].ensemble_params
                                if i else 0)
           for i, r in enumerate(result.records)]
  per_iteration = []
  for i, (r, m) in enumerate(zip(result.records, memory)):
    growth = m["peak_rss_mb"] - memory[i - 1]["peak_rss_mb"] if i else None
    per_iteration.append({
        "iteration": r.iteration, "chosen": r.chosen,
        "test_accuracy": round(r.test_accuracy, 4), "seconds": r.seconds,
        "added_member_params": added[i],
        "added_member_weights_mb": round(added[i] * 4 / MB, 3),
        "peak_growth_mb": None if growth is None else round(growth, 1),
        **m})
  print(json.dumps({
      "benchmark": "demo_search",
      "cpu_count": os.cpu_count(),
      "wall_seconds": round(seconds, 1),
      "iterations": len(result.records),
      "steps_per_iteration": c.steps_per_iteration,
      "final_test_accuracy": round(last.test_accuracy, 4),
      "final_ensemble": last.ensemble_archs,
      "final_ensemble_params": last.ensemble_params,
      "rss_before_search_mb": round(rss_before / MB, 1),
      # ru_maxrss is in KiB on Linux.
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                           / 1024.0, 1),
      "per_iteration": per_iteration,
  }))


if __name__ == "__main__":
  app.run(main)
