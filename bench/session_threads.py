"""The adanet engine's threads: TensorFlow's default against one thread per
operation (improve_nas/threads.py, what the engine now uses), on the demo
search. Prints one JSON object.

    .venv/bin/python bench/session_threads.py [--repetitions=1] \
        [--config.FIELD=VALUE ...]

Runs the same seeded search (default: the demo config) under both
settings, alternating, each run in its own process, and reports each run's
wall seconds and training steps per second per iteration, whether the
records (members, selection losses, mixture weights, test accuracies:
every field but the times) repeat within each setting, and whether they
are equal between the two (the thread count changes how some kernels split
their sums, so a seeded search's floating point, and possibly its choices,
can differ).

TensorFlow's default leg runs with TF_NUM_INTRAOP_THREADS=0 and
TF_NUM_INTEROP_THREADS=0 in its environment, which improve_nas leaves to
TensorFlow. (The first version of this benchmark set the threads in the
sessions' ConfigProto only; TensorFlow had already sized its pool at the
process's first operation, before the first session, so both legs ran
TensorFlow's default and it reported no difference.)
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
from improve_nas import search
from improve_nas import threads
from improve_nas.verbosity import set_tf_verbosity

flags.DEFINE_integer("repetitions", 1, "Runs per setting, alternating.")
flags.DEFINE_bool("leg", False, "Run one search in this process and print "
                  "its JSON (what each child process does).")
config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Config to run.")

_TIMES = ("seconds", "train_seconds", "steps_per_second")
_LEGS = {"tensorflow_default": {threads.ENV_INTRA: "0",
                                threads.ENV_INTER: "0"},
         "one_thread_per_op": {}}


def _without_times(record) -> dict:
  return {k: v for k, v in dataclasses.asdict(record).items()
          if k not in _TIMES}


def _run(c) -> dict:
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
  env = {k: v for k, v in os.environ.items()
         if k not in (threads.ENV_INTRA, threads.ENV_INTER)}
  env.update(_LEGS[name])
  out = subprocess.run([sys.executable, os.path.abspath(__file__),
                        "--leg"] + argv[1:], env=env,
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main(argv):
  del argv
  if flags.FLAGS.leg:
    set_tf_verbosity(False)
    logging.set_verbosity(logging.WARNING)
    print(json.dumps(_run(flags.FLAGS.config)))
    return
  # absl has taken the flags out of argv: the children get the command
  # line's own (--config overrides included), less --repetitions.
  children = [a for a in sys.argv if not a.startswith("--repetitions")]
  runs = {name: [] for name in _LEGS}
  for _ in range(flags.FLAGS.repetitions):
    for name, leg_runs in runs.items():
      leg_runs.append(_leg(name, children))
  records = {name: [run.pop("records") for run in leg_runs]
             for name, leg_runs in runs.items()}
  best = {name: min(r["wall_seconds"] for r in leg_runs)
          for name, leg_runs in runs.items()}
  print(json.dumps({
      "benchmark": "session_threads",
      "cpu_count": os.cpu_count(),
      "runs": runs,
      "best_wall_ratio_one_thread_to_default": round(
          best["one_thread_per_op"] / best["tensorflow_default"], 3),
      "records_repeat_within_each_setting": all(
          all(r == leg[0] for r in leg) for leg in records.values()),
      "records_equal_between_settings": (
          records["tensorflow_default"][0] == records["one_thread_per_op"][0]),
  }))


if __name__ == "__main__":
  app.run(main)
