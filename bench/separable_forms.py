"""A NASNet separable convolution as TensorFlow computes it, against the same
function as one dense convolution.

    .venv/bin/python bench/separable_forms.py [--batch_size=32] [--steps=40]

A separable convolution (k x k depthwise, then 1x1 pointwise) equals one
k x k dense convolution whose kernel is the depthwise kernel times the
pointwise one, broadcast: the same variables and parameter counts, more
multiply-adds (k*k*C*F per pixel against k*k*C + C*F), but one large
oneDNN convolution instead of a depthwise one, whose kernels with few
channels run far below the machine's rate (bench/step_profile.py: the
depthwise convolutions and their gradients are the largest share of a
1@96 tower's step). For the shapes of the towers' cells (C = F channels,
k = 3, 5, 7, stride 1 and 2), each form's forward and backward pass
(gradients for the input and both kernels) is timed in a graph with the
search's session options, after warm-up. `ratio` is the separable time over
the dense one: above 1, the dense form would be faster. Prints one JSON
object.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("steps", 40, "Timed passes per form (after 10 warm-up).")

FLAGS = flags.FLAGS

# (spatial size, channels): a 1@96 tower's cells at 32x32 have 4, 8 and 16
# channels at 32, 16 and 8 pixels; wider towers have more.
SHAPES = [(32, 4), (16, 8), (8, 16), (32, 32), (16, 64)]


def pass_ms(size: int, channels: int, kernel: int, stride: int,
            dense: bool) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.estimator import _session_config  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  with tf.Graph().as_default():
    x = tf.Variable(rng.randn(FLAGS.batch_size, size, size,
                              channels).astype(np.float32))
    depthwise = tf.Variable(rng.randn(kernel, kernel, channels, 1)
                            .astype(np.float32))
    pointwise = tf.Variable(rng.randn(1, 1, channels, channels)
                            .astype(np.float32))
    strides = [1, stride, stride, 1]
    if dense:
      y = tf.nn.conv2d(x, depthwise * pointwise, strides, "SAME")
    else:
      y = tf.nn.separable_conv2d(x, depthwise, pointwise, strides, "SAME")
    grads = tf.gradients(tf.reduce_sum(y * y), [x, depthwise, pointwise])
    step = tf.group(*grads)
    with tf.compat.v1.Session(config=_session_config()) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for _ in range(10):
        session.run(step)
      start = time.perf_counter()
      for _ in range(FLAGS.steps):
        session.run(step)
      return (time.perf_counter() - start) / FLAGS.steps * 1e3


def main(argv):
  del argv
  from improve_nas import threads  # pylint: disable=g-import-not-at-top
  threads.configure()
  from improve_nas.verbosity import set_tf_verbosity  # pylint: disable=g-import-not-at-top
  set_tf_verbosity(False)
  rows = []
  for size, channels in SHAPES:
    for kernel in (3, 5, 7):
      for stride in (1, 2):
        separable = pass_ms(size, channels, kernel, stride, dense=False)
        dense = pass_ms(size, channels, kernel, stride, dense=True)
        rows.append({"size": size, "channels": channels, "kernel": kernel,
                     "stride": stride, "separable_ms": round(separable, 3),
                     "dense_ms": round(dense, 3),
                     "ratio": round(separable / dense, 2)})
  print(json.dumps({
      "benchmark": "separable_forms", "cpu_count": os.cpu_count(),
      "batch_size": FLAGS.batch_size,
      "dense_faster": sum(r["ratio"] > 1 for r in rows),
      "cases": len(rows),
      "best_ratio": max(r["ratio"] for r in rows),
      "rows": rows,
  }))


if __name__ == "__main__":
  app.run(main)
