"""The optimizer and the learning-rate schedule that restarts every iteration."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import tensorflow as tf

__all__ = ["cosine_learning_rate", "momentum_train_op"]


def cosine_learning_rate(base_rate: float, iteration_step,
                         steps_per_iteration: int) -> tf.Tensor:
  """Cosine decay from `base_rate` to 0 over one iteration's steps.

  `iteration_step` is adanet's per-iteration step, so the schedule restarts
  with every new iteration.
  """
  progress = tf.minimum(
      tf.cast(iteration_step, tf.float32) / float(steps_per_iteration), 1.0)
  return 0.5 * base_rate * (1.0 + tf.cos(3.141592653589793 * progress))


def momentum_train_op(loss: tf.Tensor, var_list: Sequence[tf.Variable],
                      learning_rate: tf.Tensor, momentum: float,
                      clip_norm: Optional[float] = None,
                      dependencies: Iterable[tf.Operation] = (),
                      name: str = "momentum") -> tf.Operation:
  """Momentum step on `var_list` after global-norm clipping.

  The step waits for `dependencies` (e.g. batch-norm moving-average updates).
  It does not touch any global step: adanet increments its own steps.
  """
  optimizer = tf.compat.v1.train.MomentumOptimizer(
      learning_rate, momentum, name=name)
  var_list = list(var_list)
  context = tf.distribute.get_replica_context()
  replicas = context.num_replicas_in_sync if context else 1
  if replicas > 1:
    # Under MirroredStrategy apply_gradients sums the replicas' gradients;
    # each replica's loss is the mean over its share of the global batch,
    # so 1/replicas makes the sum the gradient of the global batch's mean.
    loss = loss / replicas
  pairs = [(g, v) for g, v in zip(tf.gradients(loss, var_list), var_list)
           if g is not None]
  grads = [g for g, _ in pairs]
  if clip_norm and grads:
    grads = _clip_by_global_norm(grads, clip_norm, context, replicas)
  with tf.control_dependencies(list(dependencies)):
    return optimizer.apply_gradients(
        [(g, v) for g, (_, v) in zip(grads, pairs)])


def _clip_by_global_norm(grads, clip_norm, context, replicas):
  """Scales `grads` so that the global batch's gradient has norm at most
  `clip_norm`. Under replicas, `grads` is this replica's share of that
  gradient (the shares sum to it): clipping each share alone would let the
  sum reach `replicas` times `clip_norm`, so the norm is taken of the
  summed gradient and every share is scaled by the same factor."""
  if replicas == 1:
    return tf.clip_by_global_norm(grads, clip_norm)[0]
  # Not context.all_reduce: in graph mode its custom gradient looks the
  # replicas' variables up by name and fails ("Unsuccessful at finding
  # variable w/replica_1").
  def summed(distribution, shares):
    return distribution.extended.batch_reduce_to(
        tf.distribute.ReduceOp.SUM, [(share, share) for share in shares])

  total = context.merge_call(
      summed, args=([tf.convert_to_tensor(g) for g in grads],))
  norm = tf.linalg.global_norm(total)
  scale = clip_norm / tf.maximum(norm, clip_norm)
  return [g * scale for g in grads]
