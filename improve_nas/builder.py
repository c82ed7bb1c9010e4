"""The adanet Builder of one NASNet-A tower: its loss and its train op."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

import adanet
import numpy as np
import tensorflow as tf

from improve_nas import distillation
from improve_nas import optimizers
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.tower import NasnetTower

__all__ = ["TrainingConfig", "NasnetBuilder", "IMAGE_KEY"]

IMAGE_KEY = "image"


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """How every member of the ensemble is trained (paper defaults)."""

  steps_per_iteration: int
  learning_rate: float = 0.025
  momentum: float = 0.9
  clip_gradients: float = 5.0
  weight_decay: float = 5e-4
  label_smoothing: float = 0.1
  drop_path_keep_prob: float = 0.6
  use_aux_head: bool = True
  aux_head_weight: float = 0.4
  knowledge_distillation: str = "adaptive"
  kd_temperature: float = 1.0

  def __post_init__(self):
    distillation.check_mode(self.knowledge_distillation)


class NasnetBuilder(adanet.subnetwork.Builder):
  """Builds one NASNet-A(N@P) candidate and trains it with its own loss:

  label cross entropy (label smoothing) + aux_head_weight * auxiliary-head
  cross entropy + weight decay + knowledge distillation from the frozen
  previous ensemble; momentum with a per-iteration cosine learning rate,
  gradient clipping, and the towers' batch-norm updates.

  `subnetwork.shared` carries plain values (`arch`, `params`) for generators
  and reports, and the tensors the train op needs.
  """

  def __init__(self, arch: "ArchSpec | str", training: TrainingConfig):
    self._arch = ArchSpec.parse(arch)
    self._training = training

  @property
  def name(self) -> str:
    return f"nasnet_{self._arch.slug}"

  @property
  def arch(self) -> ArchSpec:
    return self._arch

  def _progress(self, iteration_step) -> tf.Tensor:
    return tf.minimum(
        tf.cast(iteration_step, tf.float32) /
        float(self._training.steps_per_iteration), 1.0)

  def build_subnetwork(self, features, logits_dimension, training,
                       iteration_step, summary, previous_ensemble=None):
    cfg = self._training
    images = features[IMAGE_KEY]
    tower = NasnetTower(self._arch, logits_dimension,
                        use_aux_head=cfg.use_aux_head,
                        drop_path_keep_prob=cfg.drop_path_keep_prob,
                        name="nasnet")
    progress = self._progress(iteration_step)
    outputs = tower(images, training=training, progress=progress)
    params = int(sum(np.prod(v.shape.as_list())
                     for v in tower.trainable_weights if "/aux_" not in v.name))
    shared: Dict[str, Any] = {
        "arch": str(self._arch),
        "params": params,
        "tower": tower,
        "aux_logits": outputs.get("aux_logits"),
        "teacher_logits": None,
        "progress": progress,
    }
    if training:
      shared["teacher_logits"] = distillation.teacher_logits(
          cfg.knowledge_distillation, previous_ensemble)
      summary.scalar("drop_path_keep_prob/last_cell",
                     tower.keep_probs(progress)[-1])
    return adanet.subnetwork.Subnetwork(
        last_layer=outputs["last_layer"],
        logits=outputs["logits"],
        complexity=tf.constant(float(params)),
        shared=shared)

  def losses(self, subnetwork, labels) -> Dict[str, tf.Tensor]:
    """The terms of this candidate's training loss, by name."""
    cfg = self._training
    shared = subnetwork.shared
    num_classes = subnetwork.logits.shape[-1]
    onehot = tf.one_hot(tf.reshape(tf.cast(labels, tf.int32), [-1]),
                        num_classes)

    def cross_entropy(logits):
      return tf.compat.v1.losses.softmax_cross_entropy(
          onehot, logits, label_smoothing=cfg.label_smoothing,
          reduction=tf.compat.v1.losses.Reduction.MEAN)

    terms = {"label": cross_entropy(subnetwork.logits)}
    if shared["aux_logits"] is not None:
      terms["aux"] = cfg.aux_head_weight * cross_entropy(shared["aux_logits"])
    else:
      terms["aux"] = tf.constant(0.0)
    kernels = [v for v in shared["tower"].trainable_weights
               if "kernel" in v.name]
    terms["weight_decay"] = cfg.weight_decay * tf.add_n(
        [tf.nn.l2_loss(v) for v in kernels])
    terms["kd"] = distillation.kd_loss(
        subnetwork.logits, shared["teacher_logits"], cfg.kd_temperature)
    return terms

  def build_subnetwork_train_op(self, subnetwork, loss, var_list, labels,
                                iteration_step, summary, previous_ensemble):
    del loss, var_list, previous_ensemble  # We build our own from the tower.
    cfg = self._training
    tower = subnetwork.shared["tower"]
    terms = self.losses(subnetwork, labels)
    total = tf.add_n(list(terms.values()))
    subnetwork.shared["losses"] = dict(terms, total=total)
    learning_rate = optimizers.cosine_learning_rate(
        cfg.learning_rate, iteration_step, cfg.steps_per_iteration)
    for name, value in terms.items():
      summary.scalar(f"loss/{name}", value)
    summary.scalar("loss/total", total)
    summary.scalar("learning_rate", learning_rate)
    return optimizers.momentum_train_op(
        total, tower.trainable_weights, learning_rate, cfg.momentum,
        clip_norm=cfg.clip_gradients, dependencies=tower.updates)
