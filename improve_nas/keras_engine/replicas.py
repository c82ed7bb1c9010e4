"""An iteration's training step under tf.distribute replicas (several
devices of one machine, improve_nas.mirrored.strategy), or on one device.

Every variable is made in the strategy's scope. Each replica trains on its
consecutive share of the global batch (drop path draws the global batch's
noise and keeps its share, as ops.DropPath does), the gradients of the
shares are summed over the replicas (training._global_batch_gradients),
and every replica applies the same update; the optimizer slots, mixture
weights and global step keep the first replica's value.
"""

from __future__ import annotations

from typing import Callable, Dict

import tensorflow as tf

from improve_nas import mirrored
from improve_nas.keras_engine.training import IterationTrainer

__all__ = ["count", "make_trainer", "train_step"]


def count(strategy: tf.distribute.Strategy, batch_size: int) -> int:
  """The replicas of `strategy`.

  Raises:
    ConfigError: the global batch does not split evenly over them.
  """
  replicas = strategy.num_replicas_in_sync
  if replicas > 1:
    mirrored.replica_batch_size(batch_size, replicas)
  return replicas


def make_trainer(strategy, c, facts, iteration, members, candidates,
                 global_step) -> IterationTrainer:
  """The trainer of an iteration, its variables made in `strategy`'s
  scope."""
  with strategy.scope():
    trainer = IterationTrainer(c, facts, iteration, members, candidates,
                               global_step)
  if strategy.num_replicas_in_sync > 1:
    trainer.replicated_step = tf.function(
        lambda images, labels: strategy.run(trainer.train_step,
                                            args=(images, labels)))
  return trainer


def train_step(strategy, trainer: IterationTrainer, images,
               labels) -> Callable[[], Dict]:
  """One training step (`images` and `labels`: a distributed dataset's
  element under replicas). Returns a function of the step's outputs,
  averaged over the replicas, for when they are written or shown."""
  if strategy.num_replicas_in_sync == 1:
    out = trainer.train_step(images, labels)
    return lambda: out
  out = trainer.replicated_step(images, labels)
  mean = tf.distribute.ReduceOp.MEAN
  return lambda: tf.nest.map_structure(
      lambda v: strategy.reduce(mean, v, axis=None), out)
