"""Times the offline demo search end to end and prints one JSON object.

    .venv/bin/python bench/demo_search.py [--config.FIELD=VALUE ...]

Reports wall seconds (the whole search: graph building, training, adanet's
selection and the test evaluation of every iteration), the final ensemble's
test accuracy on the 360 digits test images, and per-iteration figures.
"""

import json
import os
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

config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Config to time.")


def main(argv):
  del argv
  improve_nas.compat.set_tf_verbosity(False)
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  c = flags.FLAGS.config
  with tempfile.TemporaryDirectory() as model_dir:
    start = time.time()
    result = search.run_search(c, os.path.join(model_dir, "run"))
    seconds = time.time() - start
  last = result.records[-1]
  print(json.dumps({
      "benchmark": "demo_search",
      "cpu_count": os.cpu_count(),
      "wall_seconds": round(seconds, 1),
      "iterations": len(result.records),
      "steps_per_iteration": c.steps_per_iteration,
      "final_test_accuracy": round(last.test_accuracy, 4),
      "final_ensemble": last.ensemble_archs,
      "final_ensemble_params": last.ensemble_params,
      "per_iteration": [{"iteration": r.iteration, "chosen": r.chosen,
                         "test_accuracy": round(r.test_accuracy, 4),
                         "seconds": r.seconds} for r in result.records],
  }))


if __name__ == "__main__":
  app.run(main)
