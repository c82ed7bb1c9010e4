"""How the Keras engine sets TensorFlow's runtime up for NASNet-A towers:
one thread per operation, as many operations at once as cores
(improve_nas/threads.py), and no Grappler: its graph rewrites took 2.5 s of
each iteration's first step and did not make the steps faster.
"""

from __future__ import annotations

import tensorflow as tf

from improve_nas import threads

__all__ = ["configure"]


def configure() -> bool:
  """Sets the graph options above, and the threads unless the environment
  sets them or TensorFlow has already run an operation in this process
  (they are fixed at its first); returns whether the threads were set."""
  tf.config.optimizer.set_experimental_options(
      {"disable_meta_optimizer": True})
  return threads.configure()
