"""Mixture weights of the ensemble: learned scalars or a uniform average.

Both use adanet's ComplexityRegularizedEnsembler with one scalar per member,
initialised to 1/i, no bias and no complexity penalty. "learned" trains the
scalars on the ensemble loss with momentum and the per-iteration cosine
schedule (only the mixture weights are in its var_list, so no gradient reaches
the members); "uniform" never trains them, so they stay exactly 1/i.
"""

from __future__ import annotations

import tensorflow as tf

from improve_nas import optimizers
from improve_nas.builder import batch_accuracy
from improve_nas.compat import adanet

__all__ = ["MixtureWeightEnsembler"]


class MixtureWeightEnsembler(adanet.ensemble.ComplexityRegularizedEnsembler):
  """Scalar mixture weights on the members' logits, learned or uniform."""

  def __init__(self, learn: bool, learning_rate: float = 0.025,
               momentum: float = 0.9, steps_per_iteration: int = 1):
    super().__init__(
        mixture_weight_type=adanet.ensemble.MixtureWeightType.SCALAR,
        use_bias=False, adanet_lambda=0.0, adanet_beta=0.0,
        name="learned" if learn else "uniform")
    self._learn = learn
    self._learning_rate = learning_rate
    self._momentum = momentum
    self._steps = steps_per_iteration

  def build_train_op(self, ensemble, loss, var_list, labels, iteration_step,
                     summary, previous_ensemble):
    del previous_ensemble
    for i, weighted in enumerate(ensemble.weighted_subnetworks):
      summary.scalar(f"mixture_weight/{i}", weighted.weight)
    summary.scalar("accuracy", batch_accuracy(ensemble.logits, labels))
    if not var_list:
      # Under MirroredStrategy the replicas after the first reuse the
      # variables the first one created, so adanet's diff of the variable
      # collections finds none for them: take the mixture weights directly.
      var_list = [w.weight for w in ensemble.weighted_subnetworks
                  if isinstance(w.weight, tf.Variable)]  # mirrored ones too
    if not self._learn or not var_list:
      return tf.no_op()
    learning_rate = optimizers.cosine_learning_rate(
        self._learning_rate, iteration_step, self._steps)
    summary.scalar("learning_rate", learning_rate)
    return optimizers.momentum_train_op(
        loss, var_list, learning_rate, self._momentum,
        name="mixture_momentum")
