"""Where one training step of a tower spends its time, by op type.

    .venv/bin/python bench/step_profile.py [--arch=1@96] [--image_size=32] \
        [--batch_size=32] [--steps=30] [--traced=5]

Builds one candidate's training step as the adanet engine does (the tower
in training mode with drop path, cross entropy with label smoothing, the
auxiliary head, weight decay, momentum with global-norm clipping and the
batch-norm updates) in a graph with the search's session options, runs
--steps untimed warm-up steps, times --steps steps, then traces --traced
steps with TensorFlow's step stats (RunOptions FULL_TRACE) and sums each
op type's time over the executed ops (the time an op ran; with two
threads, ops overlap, so the sum can exceed the step's wall time).

Reports examples/s, ops executed per step, and the op types that take
the most time. Prints one JSON object.
"""

import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

# The tower flags (--arch, --image_size, --channels, --batch_size,
# --num_classes), the tower and its loss.
from tower_construction import candidate_loss, make_tower  # pylint: disable=g-bad-import-order

flags.FLAGS.set_default("image_size", 32)
flags.DEFINE_integer("steps", 30, "Warm-up steps, then timed steps.")
flags.DEFINE_integer("traced", 5, "Traced steps.")
flags.DEFINE_integer("top", 15, "Op types reported.")

FLAGS = flags.FLAGS


def training_step():
  """(train op, tower) of one candidate in the default graph."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas import optimizers  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  images = tf.constant(rng.uniform(-1, 1, [
      FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size,
      FLAGS.channels]).astype(np.float32))
  labels = tf.constant(rng.randint(0, FLAGS.num_classes, FLAGS.batch_size))
  step = tf.compat.v1.train.get_or_create_global_step()
  tower = make_tower()
  seed = tf.stack([tf.cast(step, tf.int64), tf.constant(3, tf.int64)])
  outputs = tower(images, training=True, progress=0.5, seed=seed)
  loss = candidate_loss(tower, outputs, labels)
  rate = optimizers.cosine_learning_rate(0.05, step, 1000)
  train = optimizers.momentum_train_op(loss, tower.trainable_weights, rate,
                                       0.9, clip_norm=5.0,
                                       dependencies=tower.updates)
  with tf.control_dependencies([train]):
    train = step.assign_add(1)
  return train, tower


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.estimator import _session_config  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("ERROR")
  with tf.Graph().as_default() as graph:
    train, _ = training_step()
    graph_ops = len(graph.get_operations())
    with tf.compat.v1.Session(config=_session_config()) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for _ in range(FLAGS.steps):
        sess.run(train.op)
      start = time.perf_counter()
      for _ in range(FLAGS.steps):
        sess.run(train.op)
      seconds = (time.perf_counter() - start) / FLAGS.steps
      by_type = collections.defaultdict(float)
      counts = collections.Counter()
      executed = 0
      options = tf.compat.v1.RunOptions(
          trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
      for _ in range(FLAGS.traced):
        metadata = tf.compat.v1.RunMetadata()
        sess.run(train.op, options=options, run_metadata=metadata)
        for device in metadata.step_stats.dev_stats:
          for node in device.node_stats:
            kind = node.timeline_label.split("(")[0].split(" = ")[-1]
            kind = kind.strip() or node.node_name.split(":")[0]
            micros = node.all_end_rel_micros
            by_type[kind] += micros / FLAGS.traced
            counts[kind] += 1
            executed += 1
  total = sum(by_type.values())
  top = sorted(by_type.items(), key=lambda kv: -kv[1])[:FLAGS.top]
  print(json.dumps({
      "benchmark": "step_profile", "arch": FLAGS.arch,
      "image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size,
      "cpu_count": os.cpu_count(),
      "step_seconds": round(seconds, 5),
      "examples_per_second": round(FLAGS.batch_size / seconds, 1),
      "graph_ops": graph_ops,
      "ops_executed_per_step": executed // FLAGS.traced,
      "op_seconds_per_step": round(total / 1e6, 5),
      "top_op_types": [
          {"op": kind, "ms_per_step": round(micros / 1e3, 2),
           "share": round(micros / total, 3),
           "per_step": counts[kind] // FLAGS.traced}
          for kind, micros in top],
  }))


if __name__ == "__main__":
  app.run(main)
