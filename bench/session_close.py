"""How long closing a session takes, with and without tf.data's autotuning.

    .venv/bin/python bench/session_close.py [--trials=4] [--seconds=12]

The demo's training input (improve_nas/data/input.py, digits, batch 32) is
read as an Estimator reads it: an initializable iterator in a graph, in a
session with the search's options. Each trial draws batches for --seconds,
each with a --matmul square matrix product (a few milliseconds on both
cores, as a training step keeps them busy), then closes the session and
times the close. One leg runs the pipeline as the search
does (model-based autotuning off, `input.without_tuning_thread`), the other
with it on again, alternating.

With autotuning on, destroying the iterator waits for the tuning thread's
next wake-up, which comes at growing intervals of up to 10 s; that wait was
the 7-9 s of unexplained boundary time in bench/iteration_costs.py. Prints
one JSON object.
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

flags.DEFINE_integer("trials", 4, "Sessions per leg.")
flags.DEFINE_float("seconds", 12.0, "Seconds of reading before each close.")
flags.DEFINE_float("pause", 0.0, "Seconds of pause after each batch.")
flags.DEFINE_integer("matmul", 512, "Side of the matrix squared with each "
                     "batch, to load the cores as training steps do.")

FLAGS = flags.FLAGS


def close_seconds(input_fn, tuned: bool) -> float:
  """Reads `input_fn`'s batches for --seconds, then times the close."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.estimator import _session_config  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    ds = input_fn(params={})
    if tuned:
      options = tf.data.Options()
      options.autotune.enabled = True
      ds = ds.with_options(options)
    iterator = tf.compat.v1.data.make_initializable_iterator(ds)
    batch = iterator.get_next()
    # A training step's load on the cores, next to each batch.
    matrix = tf.random.stateless_uniform([FLAGS.matmul, FLAGS.matmul], [1, 2])
    busy = tf.reduce_sum(tf.matmul(matrix, matrix))
    session = tf.compat.v1.Session(config=_session_config())
    session.run(iterator.initializer)
    start = time.perf_counter()
    while time.perf_counter() - start < FLAGS.seconds:
      session.run([batch, busy])
      time.sleep(FLAGS.pause)
    start = time.perf_counter()
    session.close()
    return time.perf_counter() - start


def main(argv):
  del argv
  from improve_nas import threads  # pylint: disable=g-import-not-at-top
  threads.configure()
  from improve_nas import search  # pylint: disable=g-import-not-at-top
  from improve_nas.configs import demo  # pylint: disable=g-import-not-at-top
  from improve_nas.verbosity import set_tf_verbosity  # pylint: disable=g-import-not-at-top
  set_tf_verbosity(False)
  with tempfile.TemporaryDirectory() as model_dir:
    input_fn = search.build_search(demo.get_config(),
                                   os.path.join(model_dir, "run")
                                   ).input_fns.train
    legs = {"search_pipeline": [], "autotuning_on": []}
    for _ in range(FLAGS.trials):
      legs["search_pipeline"].append(close_seconds(input_fn, tuned=False))
      legs["autotuning_on"].append(close_seconds(input_fn, tuned=True))
  print(json.dumps({
      "benchmark": "session_close", "cpu_count": os.cpu_count(),
      "seconds_of_reading": FLAGS.seconds,
      "close_seconds": {
          leg: {"each": [round(s, 2) for s in values],
                "mean": round(statistics.mean(values), 2),
                "max": round(max(values), 2)}
          for leg, values in legs.items()},
  }))


if __name__ == "__main__":
  app.run(main)
