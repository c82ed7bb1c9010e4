"""TensorFlow's threads for NASNet-A towers, on both engines.

A tower's training step is thousands of small operations (a 1@96 tower at
8x8 is about 4,300 per step on the adanet engine and 6,200 on the Keras
engine), most of them on a few channels. TensorFlow's default, every core
for each operation (intra-op) and as many operations at once (inter-op),
spends more on splitting the small ones than it gains. One thread per
operation, with as many operations at once as there are cores, measured on
2 cores:
- adanet engine (TensorFlow 2.15): a 1@96 step at 8x8 1,076 -> 3,166
  examples/s (bench/step_profile.py), the demo search 131.4 -> 89.4 s
  (bench/session_threads.py);
- Keras engine (TensorFlow 2.21, bench/keras_threads.py): 2.2x the steps/s
  at 8x8 and 1.6x at 32x32.

TensorFlow sizes the pool that runs operations once per process, when its
first operation or session runs, so `configure` has to come first. Either
of TensorFlow's own TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS in
the environment leaves the threads to them (TF_NUM_INTRAOP_THREADS=0:
TensorFlow's default), e.g. on many cores with large towers, where one
convolution may be worth several cores: that case is not measured here.
"""

from __future__ import annotations

import os

__all__ = ["configure", "session_threads", "per_operation", "ENV_INTRA",
           "ENV_INTER"]

ENV_INTRA = "TF_NUM_INTRAOP_THREADS"
ENV_INTER = "TF_NUM_INTEROP_THREADS"


def per_operation() -> bool:
  """Whether improve_nas sets the threads (the environment does not)."""
  return ENV_INTRA not in os.environ and ENV_INTER not in os.environ


def _counts():
  """(threads per operation, operations at once)."""
  return 1, os.cpu_count() or 2


def configure() -> bool:
  """Sets one thread per operation and as many operations at once as
  cores. Returns False (and changes nothing) when the environment sets the
  threads or TensorFlow has already run an operation in this process."""
  if not per_operation():
    return False
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    intra, inter = _counts()
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
  except RuntimeError:
    return False
  return True


def session_threads(config) -> None:
  """The same threads in a TF 1 session's ConfigProto (they count when the
  session is the process's first)."""
  if per_operation():
    (config.intra_op_parallelism_threads,
     config.inter_op_parallelism_threads) = _counts()
