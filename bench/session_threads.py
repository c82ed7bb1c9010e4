"""The adanet engine's session threads: TensorFlow's default against one
thread per operation, on the demo search. Prints one JSON object.

    .venv/bin/python bench/session_threads.py [--repetitions=1] \
        [--config.FIELD=VALUE ...]

The Keras engine runs each operation on one thread and as many operations
at once as there are cores (`intra_op_parallelism_threads=1`,
`inter_op_parallelism_threads=os.cpu_count()`), 1.6-2.2x faster steps
under TensorFlow 2.21 (keras_threads.py); the adanet engine's sessions keep
TensorFlow's default (both 0: every operation may use every core). This
runs the same seeded search (default: the demo config) under both,
alternating, and
reports each run's wall seconds and training steps per second per
iteration, and whether the records (members, selection losses, mixture
weights, test accuracies: every field but the times) are equal between the
two settings. Each run is its own process: TensorFlow sizes its thread
pools at a process's first session, and later sessions share them.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

import improve_nas
from improve_nas import estimator
from improve_nas import search
from improve_nas.verbosity import set_tf_verbosity

flags.DEFINE_integer("repetitions", 1, "Runs per setting, alternating.")
flags.DEFINE_enum("leg", None, ["tensorflow_default", "one_thread_per_op"],
                  "Run one search with this setting and print its JSON "
                  "(what each child process does).")
config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Config to run.")

_TIMES = ("seconds", "train_seconds", "steps_per_second")
_SEARCH_SESSION = estimator._session_config  # pylint: disable=protected-access


def _one_thread_per_op():
  config = _SEARCH_SESSION()
  config.intra_op_parallelism_threads = 1
  config.inter_op_parallelism_threads = os.cpu_count() or 2
  return config


def _without_times(record) -> dict:
  return {k: v for k, v in dataclasses.asdict(record).items()
          if k not in _TIMES}


def _run(c, session_config) -> dict:
  estimator._session_config = session_config  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory() as model_dir:
    start = time.time()
    result = search.run_search(c, os.path.join(model_dir, "run"))
    seconds = time.time() - start
  return {"wall_seconds": round(seconds, 1),
          "steps_per_second": [round(r.steps_per_second, 2)
                               for r in result.records],
          "final_test_accuracy": round(result.records[-1].test_accuracy, 4),
          "records": [_without_times(r) for r in result.records]}


def _leg(name: str, argv) -> dict:
  out = subprocess.run([sys.executable, os.path.abspath(__file__),
                        f"--leg={name}"] + argv[1:],
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main(argv):
  del argv
  if flags.FLAGS.leg:
    set_tf_verbosity(False)
    logging.set_verbosity(logging.WARNING)
    settings = {"tensorflow_default": _SEARCH_SESSION,
                "one_thread_per_op": _one_thread_per_op}
    print(json.dumps(_run(flags.FLAGS.config, settings[flags.FLAGS.leg])))
    return
  # absl has taken the flags out of argv: the children get the command
  # line's own (--config overrides included), less --repetitions.
  children = [a for a in sys.argv if not a.startswith("--repetitions")]
  runs = {"tensorflow_default": [], "one_thread_per_op": []}
  for _ in range(flags.FLAGS.repetitions):
    for name, leg_runs in runs.items():
      leg_runs.append(_leg(name, children))
  records = [run.pop("records") for name in runs for run in runs[name]]
  default_wall = min(r["wall_seconds"] for r in runs["tensorflow_default"])
  one_wall = min(r["wall_seconds"] for r in runs["one_thread_per_op"])
  print(json.dumps({
      "benchmark": "session_threads",
      "cpu_count": os.cpu_count(),
      "runs": runs,
      "best_wall_ratio_one_thread_to_default": round(
          one_wall / default_wall, 3),
      "records_equal": all(r == records[0] for r in records),
  }))


if __name__ == "__main__":
  app.run(main)
