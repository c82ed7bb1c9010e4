"""How the Keras engine sets TensorFlow's runtime up for NASNet-A towers.

A tower's training step is thousands of small operations (a 1@96 tower at
8x8 is about 8,000), most of them on a few channels. TensorFlow's default,
every core for each operation (intra-op) and as many operations at once
(inter-op), spends more on splitting the small ones than it gains. One
thread per operation, with as many operations at once as there are cores,
trained a 1@96 candidate 2.2x faster at 8x8 and 1.6x faster at 32x32 on 2
cores (bench/keras_threads.py). Grappler's graph rewrites are turned off as
well: they took 2.5 s of each iteration's first step and did not make the
steps faster.
"""

from __future__ import annotations

import os

import tensorflow as tf

__all__ = ["configure"]


def configure() -> bool:
  """Sets the threads and graph options above. They can only be set before
  TensorFlow runs its first operation in the process; returns False (and
  changes nothing) when it already has."""
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(os.cpu_count() or 2)
  except RuntimeError:
    return False
  tf.config.optimizer.set_experimental_options(
      {"disable_meta_optimizer": True})
  return True
