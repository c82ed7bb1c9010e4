"""Runs one piece of the model on one device and mirrored over logical CPU
devices, on the same global batch, and prints both results as JSON:

    python tests/replica_probe.py momentum REPLICAS CLIP_NORM
    python tests/replica_probe.py drop_path REPLICAS

momentum: a linear model's weights after a few steps of
`optimizers.momentum_train_op`. drop_path: `ops.DropPath`'s output on the
global batch (the replicas' shares concatenated).

The logical devices must be made before TensorFlow starts its runtime,
hence a process of its own.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  pylint: disable=g-import-not-at-top
import tensorflow as tf  # noqa: E402  pylint: disable=g-import-not-at-top

from improve_nas import mirrored  # noqa: E402  pylint: disable=g-import-not-at-top
from improve_nas import optimizers  # noqa: E402  pylint: disable=g-import-not-at-top
from improve_nas.nasnet import ops  # noqa: E402  pylint: disable=g-import-not-at-top

STEPS = 4


def train(replicas, clip_norm, x, y):
  """The weights after STEPS steps; replicas 0: one device, no strategy."""
  with tf.Graph().as_default():
    strategy = mirrored.strategy(replicas) if replicas else None
    with strategy.scope() if strategy else tf.init_scope():
      w = tf.compat.v1.get_variable(
          "w", initializer=tf.constant(np.ones((x.shape[1], 1), np.float32)))

    def step():
      features, targets = tf.constant(x), tf.constant(y)
      if strategy:
        features, targets = _share(features, replicas), _share(targets,
                                                                replicas)
      loss = tf.reduce_mean(tf.square(tf.matmul(features, w) - targets))
      return optimizers.momentum_train_op(loss, [w], 0.05, 0.9,
                                          clip_norm=clip_norm or None)

    if strategy:
      train_op = strategy.group(strategy.extended.call_for_each_replica(step))
    else:
      train_op = step()
    config = tf.compat.v1.ConfigProto(device_count={"CPU": max(replicas, 1)})
    with tf.compat.v1.Session(config=config) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for _ in range(STEPS):
        session.run(train_op)
      if strategy:
        copies = session.run(list(w.values))
        assert all(np.array_equal(copies[0], c) for c in copies[1:])
        return copies[0]
      return session.run(w)


def _share(tensor, replicas):
  """This replica's consecutive share of a global-batch tensor."""
  share = tensor.shape[0] // replicas
  replica = tf.distribute.get_replica_context().replica_id_in_sync_group
  return tensor[replica * share:(replica + 1) * share]


def drop_path(replicas):
  """DropPath's output on a global batch of ones."""
  with tf.Graph().as_default():
    strategy = mirrored.strategy(replicas) if replicas else None
    layer = ops.DropPath()
    seed = tf.constant([3, 4], tf.int64)

    def apply():
      images = tf.ones([16, 2, 2, 1])
      if strategy:
        images = _share(images, replicas)
      return layer(images, 0.5, training=True, seed=seed)

    if strategy:
      outputs = strategy.experimental_local_results(
          strategy.extended.call_for_each_replica(apply))
    else:
      outputs = [apply()]
    config = tf.compat.v1.ConfigProto(device_count={"CPU": max(replicas, 1)})
    with tf.compat.v1.Session(config=config) as session:
      return np.concatenate(session.run(list(outputs)))


def main(piece, replicas, clip_norm=0):
  replicas, clip_norm = int(replicas), float(clip_norm)
  if piece == "drop_path":
    print(json.dumps({"mirrored": drop_path(replicas)[:, 0, 0, 0].tolist(),
                      "single": drop_path(0)[:, 0, 0, 0].tolist()}))
    return
  rng = np.random.RandomState(0)
  x = rng.normal(size=(8, 3)).astype(np.float32)
  y = (x @ np.array([[3.0], [-2.0], [0.5]], np.float32) +
       rng.normal(size=(8, 1)).astype(np.float32))
  mirrored_w = train(replicas, clip_norm, x, y)
  single_w = train(0, clip_norm, x, y)
  print(json.dumps({"mirrored": mirrored_w.ravel().tolist(),
                    "single": single_w.ravel().tolist()}))


if __name__ == "__main__":
  main(*sys.argv[1:])
