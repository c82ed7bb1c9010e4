"""adanet's side of a candidate: the Builder of one NASNet-A tower (its loss
and its train op) and the Generator that turns proposals into Builders."""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from improve_nas import config as config_lib
from improve_nas import distillation
from improve_nas import optimizers
from improve_nas.compat import adanet
from improve_nas.data.input import IMAGE_KEY
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.tower import NasnetTower
from improve_nas.proposals import (Candidate, Proposer, candidate_arch,
                                  candidate_name)
from improve_nas.restored_variables import restored_variables

__all__ = ["TrainingConfig", "NasnetBuilder", "CandidateGenerator",
           "LOSS_COLLECTION", "MEMBER_LOGITS_COLLECTION", "IMAGE_COLLECTION",
           "tensor_candidate", "tensor_iteration", "batch_accuracy"]
# Graph collection holding each training candidate's total loss, for progress
# reporting (see improve_nas.progress).
LOSS_COLLECTION = "improve_nas_candidate_losses"
# Graph collection holding the logits of every tower built for inference
# (evaluation, prediction): each member's own predictions, for its accuracy.
MEMBER_LOGITS_COLLECTION = "improve_nas_member_logits"
# Graph collection holding PNG-encoded augmented training images.
IMAGE_COLLECTION = "improve_nas_augmented_images"
# Augmented training images shown in TensorBoard, per candidate.
_SUMMARY_IMAGES = 3


def tensor_candidate(tensor: tf.Tensor) -> str:
  """The candidate ("nasnet_1x24") a tensor of the adanet graph belongs to."""
  match = re.search(r"subnetwork_t\d+_(nasnet_\w+?)/", tensor.name)
  return match.group(1) if match else tensor.name


def tensor_iteration(tensor: tf.Tensor) -> int:
  """The adanet iteration of a candidate's tensor (-1 when not one)."""
  match = re.search(r"subnetwork_t(\d+)_nasnet_", tensor.name)
  return int(match.group(1)) if match else -1


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """How every member of the ensemble is trained: the config's training
  fields (their defaults and meaning are in config.base_config)."""

  steps_per_iteration: int
  learning_rate: float
  momentum: float
  clip_gradients: float
  weight_decay: float
  label_smoothing: float
  drop_path_keep_prob: float
  use_aux_head: bool
  aux_head_weight: float
  aux_head_filters: Tuple[int, int]
  knowledge_distillation: str
  kd_temperature: float
  seed: int  # initial weights; drop-path noise (with the global step)

  def __post_init__(self):
    distillation.check_mode(self.knowledge_distillation)

  @classmethod
  def from_config(cls, c, **overrides) -> "TrainingConfig":
    """The training fields of config `c`, with `overrides`."""
    fields = {f.name: c[f.name] for f in dataclasses.fields(cls)
              if f.name != "aux_head_filters"}
    fields["aux_head_filters"] = config_lib.aux_head_filters(c)
    fields.update(overrides)
    return cls(**fields)


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
    return candidate_name(self._arch)

  @property
  def arch(self) -> ArchSpec:
    return self._arch

  def _progress(self, iteration_step) -> tf.Tensor:
    return tf.minimum(
        tf.cast(iteration_step, tf.float32) /
        float(self._training.steps_per_iteration), 1.0)

  def _noise_seed(self, iteration_step) -> tf.Tensor:
    """Drop-path seed of this training step: (global step, config seed).

    Stateless, so a run resumed from a checkpoint draws what an
    uninterrupted run would have; adanet increments the steps only after
    every train op has run, so the read is the step being trained.
    """
    step = tf.compat.v1.train.get_global_step()
    step = iteration_step if step is None else step
    return tf.stack([tf.cast(step, tf.int64),
                     tf.constant(self._training.seed, tf.int64)])

  def build_subnetwork(self, features, logits_dimension, training,
                       iteration_step, summary, previous_ensemble=None):
    cfg = self._training
    images = features[IMAGE_KEY]
    members = (len(previous_ensemble.weighted_subnetworks)
               if previous_ensemble else 0)
    # Initial weights depend on the seed, the architecture and the member's
    # position, so a constant generator's members do not start alike.
    init_seed = zlib.crc32(f"{cfg.seed}/{self._arch}/{members}".encode())
    tower = NasnetTower(self._arch, logits_dimension,
                        use_aux_head=cfg.use_aux_head,
                        drop_path_keep_prob=cfg.drop_path_keep_prob,
                        name="nasnet", seed=init_seed,
                        aux_head_filters=cfg.aux_head_filters)
    progress = self._progress(iteration_step)
    # adanet builds a tower for inference only where a checkpoint fills it
    # (evaluations, exports, a frozen member in a training graph).
    with restored_variables(enabled=not training):
      outputs = tower(images, training=training, progress=progress,
                      seed=(self._noise_seed(iteration_step) if training
                            else None))
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
    if not training:
      tf.compat.v1.add_to_collection(MEMBER_LOGITS_COLLECTION,
                                     outputs["logits"])
    else:
      shared["teacher_logits"] = distillation.teacher_logits(
          cfg.knowledge_distillation, previous_ensemble)
      summary.scalar("drop_path_keep_prob/last_cell",
                     tower.keep_probs(progress)[-1])
      _summarize_images(images)
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
    summary.scalar("accuracy", batch_accuracy(subnetwork.logits, labels))
    tf.compat.v1.add_to_collection(LOSS_COLLECTION, total)
    return optimizers.momentum_train_op(
        total, tower.trainable_weights, learning_rate, cfg.momentum,
        clip_norm=cfg.clip_gradients, dependencies=tower.updates)


def _summarize_images(images: tf.Tensor) -> None:
  """Puts a few augmented training images, PNG-encoded and as pixels, in
  IMAGE_COLLECTION once per graph (all candidates see the same batch);
  `ImageSummaryHook` writes them to TensorBoard.

  Not adanet's scoped `summary.image`: its TF 2 image op leaves an unused
  Assert that TensorFlow reports as an error on every graph build, and adanet
  replaces the Estimator's own summary op with an empty one.
  """
  graph = tf.compat.v1.get_default_graph()
  if graph.get_collection(IMAGE_COLLECTION):
    return
  with graph.name_scope(None), tf.name_scope("augmented_images"):
    pixels = tf.cast(tf.round((images[:_SUMMARY_IMAGES] + 1.0) * 127.5),
                     tf.uint8)
    encoded = tf.map_fn(tf.io.encode_png, pixels,
                        fn_output_signature=tf.string)
  graph.add_to_collection(IMAGE_COLLECTION, encoded)
  graph.add_to_collection(IMAGE_COLLECTION, pixels)


def batch_accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Share of the batch whose arg-max logit is the label."""
  predicted = tf.argmax(logits, axis=-1, output_type=tf.int64)
  labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
  return tf.reduce_mean(tf.cast(tf.equal(predicted, labels), tf.float32))


def member_archs(previous_ensemble) -> List[Tuple[ArchSpec, int]]:
  """(arch, params) of every member of an adanet ensemble, oldest first."""
  if previous_ensemble is None:
    return []
  return [(ArchSpec.parse(ws.subnetwork.shared["arch"]),
           int(ws.subnetwork.shared["params"]))
          for ws in previous_ensemble.weighted_subnetworks]


class CandidateGenerator(adanet.subnetwork.Generator):
  """adanet's Generator of a `Proposer`: a `NasnetBuilder` per candidate
  that fits the budget. adanet asks again whenever it rebuilds a past
  iteration; `fitting[t]` keeps what iteration t was given."""

  def __init__(self, proposer: Proposer, builder_fn):
    self._proposer = proposer
    self._builder_fn = builder_fn  # arch -> adanet.subnetwork.Builder
    self.fitting: Dict[int, List[Candidate]] = {}

  def check_next_fits(self, member_names: List[str], iteration: int) -> None:
    """Raises SearchEnded when no candidate of `iteration` fits the budget
    after the members named (candidate names, oldest first)."""
    self._proposer.fitting_after([candidate_arch(n) for n in member_names],
                                 iteration)

  def generate_candidates(self, previous_ensemble, iteration_number,
                          previous_ensemble_reports, all_reports, config):
    del previous_ensemble_reports, all_reports, config
    fitting = self._proposer.fitting(member_archs(previous_ensemble),
                                     iteration_number)
    self.fitting[iteration_number] = fitting
    return [self._builder_fn(c.arch) for c in fitting]
