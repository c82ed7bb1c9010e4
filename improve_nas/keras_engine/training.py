"""One iteration of the Keras engine: its candidates trained side by side on
every batch, the frozen members running forward in inference mode, and the
evaluations that choose a candidate and measure the ensemble.

What a candidate is trained on is what the adanet engine trains it on
(builder.NasnetBuilder): label cross entropy with label smoothing, the
auxiliary head's cross entropy times aux_head_weight, weight decay on every
kernel, and knowledge distillation from the frozen previous ensemble (or its
last member); momentum with the per-iteration cosine learning rate, after
gradient clipping by global norm. Each candidate ensemble (the members so
far plus one candidate) mixes its towers' logits with scalar weights that
start at 1/n and are trained on the ensemble's cross entropy when learned,
only then, as adanet's ComplexityRegularizedEnsembler does. Drop-path noise
is drawn from (global step, seed), so a resumed run repeats an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import types
import zlib
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from improve_nas import config as config_lib
from improve_nas import distillation
from improve_nas import optimizers
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.tower import NasnetTower
from improve_nas.proposals import Candidate, member_key

__all__ = ["Member", "make_tower", "tower_variables", "IterationTrainer",
           "variable_name", "mix", "inference_logits"]


def variable_name(variable) -> str:
  """A variable's full name ("nasnet/stem_conv/kernel")."""
  return getattr(variable, "path", None) or variable.name


@dataclasses.dataclass
class Member:
  """A frozen member of the ensemble."""

  arch: ArchSpec
  iteration: int        # the iteration that trained and chose it
  tower: NasnetTower
  weight: float         # its mixture weight in the current ensemble
  # Its inference logits, traced once (see inference_logits); made by the
  # first trainer that needs them when not handed over by the iteration
  # that chose it.
  logits: Optional[Callable] = None

  @property
  def name(self) -> str:
    return f"nasnet_{self.arch.slug}"

  @property
  def key(self) -> str:
    return member_key(self.iteration, self.name)


def tower_variables(tower: NasnetTower) -> Dict[str, object]:
  """Every variable of a tower by its path, for tf.train.Checkpoint.

  Not the tower itself: a cell keeps its op layers in tuples, which Keras 3
  finds but TensorFlow's object graph does not, so a checkpoint of the
  tower object would leave the cells out.
  """
  return {variable_name(v).replace("/", "."): v for v in tower.weights}


def inference_logits(tower: NasnetTower, spec: tf.TensorSpec) -> Callable:
  """The tower's logits in inference mode as one traced function, for the
  whole of its life: a candidate's selection and evaluation, then, once it
  is a member, every later iteration's teacher and evaluation. Each
  iteration's graphs call it rather than trace the tower again (at 1@96
  about 0.3 s per frozen member in each iteration's step, so a search's
  tracing grew with the square of its iterations)."""
  return tf.function(lambda images: tower(images, training=False)["logits"],
                     input_signature=[spec])


def make_tower(c, facts, arch: ArchSpec, members_before: int) -> NasnetTower:
  """A candidate's tower with all its weights made. Its initial weights
  depend on the seed, the architecture and the member's position, as in the
  adanet engine (so a constant generator's members do not start alike)."""
  seed = zlib.crc32(f"{c.seed}/{arch}/{members_before}".encode())
  tower = NasnetTower(arch, facts.num_classes, use_aux_head=c.use_aux_head,
                      drop_path_keep_prob=c.drop_path_keep_prob,
                      name="nasnet", seed=seed,
                      aux_head_filters=config_lib.aux_head_filters(c))
  images = tf.zeros([1, facts.image_size, facts.image_size, facts.channels])
  tower(images, training=False)
  if c.use_aux_head:
    # The auxiliary head is made by a training call, which also moves the
    # batch-norm statistics of the rest: they are put back.
    saved = [(v, v.numpy()) for v in tower.non_trainable_variables]
    tower(images, training=True, seed=tf.constant([0, 0], tf.int64))
    for variable, value in saved:
      variable.assign(value)
  return tower


def _cross_entropy(labels, logits, smoothing: float = 0.0):
  """Per-example softmax cross entropy against (smoothed) one-hot labels."""
  num_classes = logits.shape[-1]
  onehot = tf.one_hot(labels, num_classes)
  if smoothing:
    onehot = onehot * (1.0 - smoothing) + smoothing / num_classes
  return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)


def mix(weights: Sequence, logits: Sequence[tf.Tensor]) -> tf.Tensor:
  """An ensemble's logits: its towers' logits times their mixture weights,
  summed (in training, selection, evaluation and export alike)."""
  return tf.add_n([w * l for w, l in zip(weights, logits)])


def _previous_ensemble(logits: Sequence[tf.Tensor], weights: Sequence[float]):
  """The frozen ensemble in the shape distillation.teacher_logits reads
  (adanet's Ensemble: `logits` and `weighted_subnetworks`)."""
  if not logits:
    return None
  return types.SimpleNamespace(
      logits=mix(weights, logits),
      weighted_subnetworks=[types.SimpleNamespace(
          subnetwork=types.SimpleNamespace(logits=l)) for l in logits])


class IterationTrainer(tf.Module):
  """The candidates of iteration `iteration`, their optimizer slots and
  their candidate ensembles' mixture weights, around the frozen `members`.

  `global_step` counts every step of the search (iteration t trains steps
  t * steps_per_iteration to (t + 1) * steps_per_iteration).
  """

  def __init__(self, c, facts, iteration: int, members: List[Member],
               candidates: Sequence[Candidate], global_step: tf.Variable):
    super().__init__(name=f"iteration_{iteration}")
    self.c = c
    self.iteration = iteration
    self.members = list(members)
    self.candidates = list(candidates)
    self.global_step = global_step
    self.towers = [make_tower(c, facts, x.arch, len(members))
                   for x in candidates]
    self.weights = [list(t.trainable_variables) for t in self.towers]
    self.kernels = [[v for v in vs if "kernel" in variable_name(v)]
                    for vs in self.weights]
    # Under replicas every replica computes the same update (from the
    # summed gradients): the first one's value is kept.
    kept = dict(trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.slots = [[tf.Variable(tf.zeros(v.shape), **kept) for v in vs]
                  for vs in self.weights]
    n = len(members) + 1
    self.mix = [[tf.Variable(1.0 / n, aggregation=kept["aggregation"])
                 for _ in range(n)] for _ in candidates]
    self.mix_slots = [[tf.Variable(0.0, **kept) for _ in range(n)]
                      for _ in candidates]
    self._member_weights = [m.weight for m in members]
    # Any batch size: the eval split's last batch is smaller.
    spec = tf.TensorSpec([None, facts.image_size, facts.image_size,
                          facts.channels], tf.float32)
    for m in self.members:
      if m.logits is None:
        m.logits = inference_logits(m.tower, spec)
    self.candidate_logits = [inference_logits(t, spec) for t in self.towers]
    self.forward = tf.function(self._forward, input_signature=[spec])

  def checkpointed(self) -> Dict[str, object]:
    """What a checkpoint of this iteration holds besides the members."""
    return {"candidates": [tower_variables(t) for t in self.towers],
            "slots": self.slots, "mix": self.mix,
            "mix_slots": self.mix_slots}

  def _members_forward(self, images) -> List[tf.Tensor]:
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
      # In a replica's step, each replica reads its own copies of the
      # members' variables: their towers are traced into the step.
      return [m.tower(images, training=False)["logits"]
              for m in self.members]
    return [m.logits(images) for m in self.members]

  @tf.function
  def train_step(self, images, labels):
    """One step of every candidate (and its learned mixture weights).

    Returns {"terms": [{term: loss}] per candidate, "ensemble": [{"loss",
    "accuracy", "learning_rate"}] per candidate ensemble}.
    """
    c = self.c
    steps = c.steps_per_iteration
    step = self.global_step.read_value()
    iteration_step = step - self.iteration * steps
    progress = tf.minimum(tf.cast(iteration_step, tf.float32) / steps, 1.0)
    learning_rate = optimizers.cosine_learning_rate(
        c.learning_rate, iteration_step, steps)
    seed = tf.stack([step, tf.constant(c.seed, tf.int64)])
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    member_logits = self._members_forward(images)
    teacher = distillation.teacher_logits(
        c.knowledge_distillation,
        _previous_ensemble(member_logits, self._member_weights))
    out = {"terms": [], "ensemble": []}
    for k, tower in enumerate(self.towers):
      with tf.GradientTape() as tape:
        outputs = tower(images, training=True, progress=progress, seed=seed)
        terms = {"label": tf.reduce_mean(_cross_entropy(
            labels, outputs["logits"], c.label_smoothing))}
        terms["aux"] = (c.aux_head_weight * tf.reduce_mean(_cross_entropy(
            labels, outputs["aux_logits"], c.label_smoothing))
                        if "aux_logits" in outputs else tf.constant(0.0))
        terms["weight_decay"] = c.weight_decay * tf.add_n(
            [tf.nn.l2_loss(v) for v in self.kernels[k]])
        terms["kd"] = distillation.kd_loss(outputs["logits"], teacher,
                                           c.kd_temperature)
        total = tf.add_n(list(terms.values()))
      grads = _global_batch_gradients(tape, total, self.weights[k])
      if c.clip_gradients:
        grads = tf.clip_by_global_norm(grads, c.clip_gradients)[0]
      _momentum(self.weights[k], grads, self.slots[k], learning_rate,
                c.momentum)
      terms["total"] = total
      terms["accuracy"] = _accuracy(outputs["logits"], labels)
      terms["learning_rate"] = learning_rate
      terms["drop_path_keep_prob"] = tower.keep_probs(progress)[-1]
      out["terms"].append(terms)
      out["ensemble"].append(self._mixture_step(
          k, member_logits, tf.stop_gradient(outputs["logits"]), labels,
          iteration_step))
    self.global_step.assign_add(1)
    return out

  def _mixture_step(self, k, member_logits, logits, labels, iteration_step):
    weights = self.mix[k]
    with tf.GradientTape() as tape:
      mixed = mix(weights, member_logits + [logits])
      loss = tf.reduce_mean(_cross_entropy(labels, mixed))
    rate = optimizers.cosine_learning_rate(
        self.c.learning_rate, iteration_step, self.c.steps_per_iteration)
    if self.c.learn_mixture_weights:
      grads = _global_batch_gradients(tape, loss, weights)
      _momentum(weights, grads, self.mix_slots[k], rate, self.c.momentum)
    return {"loss": loss, "accuracy": _accuracy(mixed, labels),
            "learning_rate": rate}

  def _forward(self, images):
    """Inference logits of every frozen member and every candidate."""
    return (self._members_forward(images),
            [logits(images) for logits in self.candidate_logits])

  def selection_losses(self, dataset) -> List[float]:
    """Each candidate ensemble's mean loss over the batches of `dataset`
    (the training split, unaugmented): what chooses the candidate. NaN for
    a candidate that diverged."""
    sums = np.zeros(len(self.towers))
    batches = 0
    weights = [self.mixture_weights(k) for k in range(len(self.towers))]
    for features, labels in dataset:
      members, candidates = self.forward(features["image"])
      labels = np.reshape(labels.numpy(), [-1])
      for k, logits in enumerate(candidates):
        mixed = mix(weights[k], list(members) + [logits])
        sums[k] += float(tf.reduce_mean(_cross_entropy(labels, mixed)))
      batches += 1
    losses = sums / max(batches, 1)
    return [float(x) if np.isfinite(x) else float("nan") for x in losses]

  def mixture_weights(self, k: int) -> List[float]:
    return [float(w.numpy()) for w in self.mix[k]]

  def evaluate(self, dataset, chosen: int, global_step: int):
    """(metrics of the ensemble with candidate `chosen`, each tower's own
    accuracy by member_key) over the batches of `dataset`."""
    right = {}
    seen = 0
    correct = loss_sum = batch_loss_sum = 0.0
    batches = 0
    keys = ([m.key for m in self.members] +
            [member_key(self.iteration, x.name) for x in self.candidates])
    weights = self.mixture_weights(chosen)
    for features, labels in dataset:
      members, candidates = self.forward(features["image"])
      labels = np.reshape(labels.numpy(), [-1])
      for key, logits in zip(keys, list(members) + list(candidates)):
        right[key] = right.get(key, 0) + int(np.sum(
            np.argmax(logits.numpy(), -1) == labels))
      mixed = mix(weights, list(members) + [candidates[chosen]])
      losses = _cross_entropy(labels, mixed).numpy()
      correct += float(np.sum(np.argmax(mixed.numpy(), -1) == labels))
      loss_sum += float(np.sum(losses))
      batch_loss_sum += float(np.mean(losses))
      seen += len(labels)
      batches += 1
    metrics = {"accuracy": correct / max(seen, 1),
               "average_loss": loss_sum / max(seen, 1),
               "loss": batch_loss_sum / max(batches, 1),
               "global_step": global_step}
    return metrics, {k: v / max(seen, 1) for k, v in right.items()}


def _global_batch_gradients(tape, loss, variables):
  """The gradients of the global batch's mean loss. Under tf.distribute
  replicas, `loss` is the mean over this replica's equal share of the
  global batch: the shares' gradients, each divided by the number of
  replicas, are summed over the replicas, so every replica applies the
  same update (and clips the same norm)."""
  grads = tape.gradient(loss, variables)
  context = tf.distribute.get_replica_context()
  replicas = context.num_replicas_in_sync if context else 1
  if replicas == 1:
    return grads
  present = [i for i, g in enumerate(grads) if g is not None]
  summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                              [grads[i] / replicas for i in present])
  for i, g in zip(present, summed):
    grads[i] = g
  return grads


def _accuracy(logits, labels):
  predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_mean(tf.cast(tf.equal(predicted, labels), tf.float32))


def _momentum(variables, grads, slots, learning_rate, momentum) -> None:
  """TF 1's momentum (what the adanet engine uses): accumulator =
  momentum * accumulator + gradient; variable -= learning_rate *
  accumulator."""
  learning_rate = tf.cast(learning_rate, tf.float32)
  momentum = tf.constant(momentum, tf.float32)
  for variable, grad, slot in zip(variables, grads, slots):
    if grad is None:
      continue
    # One fused operation per variable (under replicas, on this replica's
    # copies, which all receive the same summed gradient).
    tf.raw_ops.ResourceApplyMomentum(
        var=variable.handle, accum=slot.handle, lr=learning_rate, grad=grad,
        momentum=momentum, use_locking=False, use_nesterov=False)
