"""Config -> adanet.Estimator, and the input_fns that go with it."""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Dict, List, Optional

import adanet
import ml_collections
import numpy as np
import tensorflow as tf

from improve_nas import compat
from improve_nas import config as config_lib
from improve_nas import distributed
from improve_nas import memory
from improve_nas import mirrored
from improve_nas.builder import (MEMBER_LOGITS_COLLECTION, NasnetBuilder,
                                 TrainingConfig, candidate_iteration,
                                 candidate_name, member_key)
from improve_nas.data import datasets
from improve_nas.data.input import PipelineConfig, make_input_fn
from improve_nas.ensemble import MixtureWeightEnsembler
from improve_nas.errors import ConfigError, SearchDiverged
from improve_nas.generators import make_generator
from improve_nas.nasnet.counting import count_params, tower_cost

__all__ = ["InputFns", "RecordingEvaluator", "make_estimator",
           "newest_iteration",
           "input_fns", "resolve_image_size", "latest_global_step",
           "MemberAccuracyHook", "tower_cost_fn", "tower_shape"]


@dataclasses.dataclass(frozen=True)
class InputFns:
  """The input_fns of a search: training, test evaluation and selection."""

  train: Callable
  eval: Callable
  selection: Callable


class RecordingEvaluator(adanet.Evaluator):
  """adanet's Evaluator that always grows the ensemble, keeps the last values
  it computed, and never selects a diverged candidate.

  `last_values[k]` is the selection loss of candidate ensemble k (index 0 is
  the previous ensemble from the second iteration on). The best new
  candidate is selected (the paper's AdaNAS always grows; we do here what
  adanet's `force_grow` would, because adanet then skips evaluation when one
  new candidate is left, so a diverged one would be taken). A NaN or
  infinite loss counts as missing. When every new candidate of an iteration
  after the first has diverged, the previous ensemble (index 0) is selected
  and `diverged` is True; at the first iteration there is nothing to fall
  back to and `SearchDiverged` is raised.
  """

  def __init__(self, input_fn, steps=None):
    super().__init__(input_fn=input_fn, steps=steps)
    self.last_values: List[float] = []
    self.diverged = False
    self._iteration = 0

  def evaluate(self, sess, ensemble_metrics):
    self._iteration = _graph_iteration(sess.graph)
    self.last_values = [float(v) if np.isfinite(v) else float("nan")
                        for v in super().evaluate(sess, ensemble_metrics)]
    return self.last_values

  @property
  def objective_fn(self):
    def best(values):
      first_new = 1 if self._iteration else 0
      new = np.asarray(values[first_new:], dtype=np.float64)
      self.diverged = bool(np.all(np.isnan(new)))
      if not self.diverged:
        return first_new + int(np.nanargmin(new))
      if not self._iteration:  # run_search words the message
        raise SearchDiverged("every candidate of iteration 1 diverged")
      return 0  # the previous ensemble: nothing new is added
    return best


def newest_iteration(variable_names) -> int:
  """The newest adanet iteration among variable names ("adanet/iteration_3/
  ..."), 0 when there is none: the iteration a graph or checkpoint is for."""
  return max((int(m.group(1)) for name in variable_names
              for m in [re.match(r"adanet/iteration_(\d+)/", name)] if m),
             default=0)


def _graph_iteration(graph: tf.Graph) -> int:
  return newest_iteration(v.op.name for v in graph.get_collection(
      tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))


def resolve_image_size(c: ml_collections.ConfigDict,
                       info: datasets.DatasetInfo) -> int:
  """The side images are resized to: config.image_size, else the native one."""
  height, width, _ = info.image_shape
  if not c.image_size and (height is None or height != width):
    raise ConfigError(
        f"config.image_size=0: dataset {info.name!r} has images of varying or "
        f"non-square size {info.image_shape[:2]}; set --config.image_size to "
        "a multiple of 4 such as 32 (images are resized)")
  size = c.image_size or height
  if size % 4:
    raise ConfigError(
        f"config.image_size={size}: dataset {info.name!r} has {size}-pixel "
        "images; set --config.image_size to a multiple of 4 (they are resized)")
  return size


def tower_shape(c: ml_collections.ConfigDict) -> tuple:
  """(classes, image size, channels) of the towers of config `c`."""
  info = datasets.load_source(c.dataset, c.data_dir or None).info
  return (info.num_classes, resolve_image_size(c, info), info.image_shape[-1])


def tower_cost_fn(c: ml_collections.ConfigDict) -> Callable:
  """arch -> TowerCost (parameters, multiply-adds) of a tower of config
  `c`: its dataset's classes, image size and channels, its auxiliary head."""
  shape = tower_shape(c)
  filters = config_lib.aux_head_filters(c)
  return lambda arch: tower_cost(arch, *shape, aux_head_filters=filters)


def latest_global_step(model_dir: Optional[str]) -> int:
  """The global step of the latest checkpoint in `model_dir` (0 if none)."""
  path = tf.train.latest_checkpoint(model_dir) if model_dir else None
  return int(path.rsplit("-", 1)[-1]) if path else 0


def input_fns(c: ml_collections.ConfigDict, model_dir: Optional[str] = None,
              source: Optional[datasets.Source] = None,
              stream: int = 0) -> InputFns:
  """Training, evaluation and selection input_fns for config `c`.

  Training input is shuffled and augmented with a seed that changes with
  each iteration, so each adanet iteration sees a new order, and a run
  resumed from a checkpoint in `model_dir` (even mid-iteration) sees what an
  uninterrupted one would have seen. `stream` k > 0 gives another order and
  other augmentations (worker k-1 of a cluster; the chief reads stream 0).
  """
  source = source or datasets.load_source(c.dataset, c.data_dir or None)
  info = source.info
  datasets.split_size(c.train_split, info, "train_split")
  datasets.split_size(c.eval_split, info, "eval_split")
  size = resolve_image_size(c, info)
  common = dict(image_size=size, batch_size=c.batch_size,
                random_flip=c.random_flip, cutout_size=c.cutout_size,
                shuffle_buffer=c.shuffle_buffer)

  def resume_point():
    """(seed, batches to skip): each iteration's input starts from the seed
    plus the iteration's first global step, and a run resumed mid-iteration
    skips the batches already trained on."""
    step = latest_global_step(model_dir)
    into = step % c.steps_per_iteration
    return c.seed + step - into + stream * _STREAM_SEED_OFFSET, into

  train = make_input_fn(
      source, PipelineConfig(split=c.train_split, training=True, **common),
      seed_fn=resume_point)
  evaluation = make_input_fn(
      source, PipelineConfig(split=c.eval_split, **common))
  selection = make_input_fn(
      source, PipelineConfig(split=c.train_split, **common))
  return InputFns(train=train, eval=evaluation, selection=selection)


# Seeds of different input streams are this far apart: more than the steps
# of any search, so no two streams share a seed.
_STREAM_SEED_OFFSET = 1_000_000_007


def _session_config() -> tf.compat.v1.ConfigProto:
  """Session options for adanet's many short-lived sessions.

  adanet opens several sessions per iteration (training, bookkeeping,
  selection, evaluation), each on a graph holding every candidate. Grappler
  re-optimises that graph every time; on the towers we train its cost
  outweighs what it saves (see bench/demo_search.py).
  """
  config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
  config.graph_options.rewrite_options.disable_meta_optimizer = True
  return config


def make_estimator(c: ml_collections.ConfigDict,
                   run_config: Optional[tf.estimator.RunConfig] = None,
                   model_dir: Optional[str] = None) -> adanet.Estimator:
  """The AdaNAS search for config `c` as an adanet.Estimator.

  Works with `tf.estimator.train_and_evaluate`, `evaluate` and `predict`;
  features are {"image": float32 [batch, size, size, channels]} in [-1, 1]
  (see `input_fns`), labels int class ids.

  Raises:
    ConfigError: a bad config field, or a budget no first candidate fits.
  """
  config_lib.validate(c)
  c = config_lib.apply_quick(c)
  memory.limit_heap_fragmentation()
  # RunConfig() reads TF_CONFIG: a cluster task (see distributed.py).
  default_run_config = run_config is None
  run_config = run_config or tf.estimator.RunConfig()
  model_dir = model_dir or run_config.model_dir
  if model_dir is None:
    raise ConfigError("model_dir is not set: pass model_dir= or a RunConfig "
                      "with model_dir")
  overrides = dict(model_dir=model_dir)
  if run_config.tf_random_seed is None:
    overrides["tf_random_seed"] = c.seed
  if c.save_checkpoints_steps:
    overrides["save_checkpoints_steps"] = c.save_checkpoints_steps
  overrides["save_summary_steps"] = c.save_summary_steps
  if run_config.session_config is None or default_run_config:
    overrides["session_config"] = distributed.session_config(
        distributed.current_task(), _session_config())
  # adanet creates a training session several times per iteration, and each
  # time the CheckpointSaverHook would print the whole graph as graph.pbtxt
  # (a pure-Python text dump, seconds per call) and a .meta file per
  # checkpoint. TensorBoard still gets the graph from the event files.
  overrides["checkpoint_save_graph_def"] = False
  if run_config.train_distribute is not None:
    mirrored.replica_batch_size(
        c.batch_size, run_config.train_distribute.num_replicas_in_sync)
  cpus = mirrored.cpu_device_count(run_config.train_distribute)
  if cpus:
    # A Session only has the logical CPU devices it is told to create.
    session = tf.compat.v1.ConfigProto()
    session.CopyFrom(overrides.get("session_config") or
                     run_config.session_config or _session_config())
    session.device_count["CPU"] = max(session.device_count["CPU"], cpus)
    overrides["session_config"] = session
  run_config = run_config.replace(**overrides)

  source = datasets.load_source(c.dataset, c.data_dir or None)
  info = source.info
  size = resolve_image_size(c, info)
  channels = info.image_shape[-1]
  fns = input_fns(c, model_dir, source)

  training = TrainingConfig(
      steps_per_iteration=c.steps_per_iteration,
      learning_rate=c.learning_rate, momentum=c.momentum,
      clip_gradients=c.clip_gradients, weight_decay=c.weight_decay,
      label_smoothing=c.label_smoothing,
      drop_path_keep_prob=c.drop_path_keep_prob,
      use_aux_head=c.use_aux_head, aux_head_weight=c.aux_head_weight,
      aux_head_filters=config_lib.aux_head_filters(c),
      knowledge_distillation=c.knowledge_distillation,
      kd_temperature=c.kd_temperature, seed=c.seed)
  generator = make_generator(
      c.generator, c.initial_arch,
      builder_fn=lambda arch: NasnetBuilder(arch, training),
      count_fn=lambda arch: count_params(arch, info.num_classes, size,
                                         channels),
      param_budget=c.param_budget, reconsider_previous=c.reconsider_previous,
      depth_increment=c.depth_increment, width_increment=c.width_increment)
  _, fitting = generator.candidates([])
  if not fitting:
    smallest = min(generator.candidates([])[0], key=lambda x: x.params)
    raise ConfigError(
        f"config.param_budget={c.param_budget}: smaller than the smallest "
        f"first candidate {smallest.arch} ({smallest.params:,} parameters); "
        "raise it or set 0 for no budget")
  ensembler = MixtureWeightEnsembler(
      learn=c.learn_mixture_weights, learning_rate=c.learning_rate,
      momentum=c.momentum, steps_per_iteration=c.steps_per_iteration)
  # Passed only when it is not adanet's default: adanet calls the argument
  # experimental (compat.py filters that warning out).
  placement = distributed.placement_strategy(c.placement)
  extra = ({} if placement is None else
           {"experimental_placement_strategy": placement})
  estimator = adanet.Estimator(
      head=tf.estimator.MultiClassHead(info.num_classes),
      subnetwork_generator=generator,
      max_iteration_steps=c.steps_per_iteration,
      ensemblers=[ensembler],
      ensemble_strategies=[adanet.ensemble.GrowStrategy()],
      evaluator=RecordingEvaluator(fns.selection,
                                   steps=c.evaluator_steps or None),
      force_grow=False,  # RecordingEvaluator always grows (see there)
      # Per-candidate signatures of the last iteration only would confuse
      # users of the exported model; it serves the ensemble.
      export_subnetwork_logits=False,
      export_subnetwork_last_layer=False,
      max_iterations=c.max_iterations,
      metric_fn=_keep_labels,
      model_dir=model_dir,
      config=run_config,
      **extra,
      # On a cluster, workers poll for the chief's next iteration every
      # second, and start it staggered by one second per worker (adanet's
      # defaults, 5 s each, add up over short iterations).
      worker_wait_secs=1, delay_secs_per_worker=1, max_worker_delay_secs=10)
  compat.share_candidate_evaluation(estimator)
  return estimator


# Graph collection holding the evaluation's labels, for MemberAccuracyHook.
_EVAL_LABELS_COLLECTION = "improve_nas_eval_labels"


def _keep_labels(labels) -> dict:
  """adanet's `metric_fn`: no metrics of its own; it keeps the labels of the
  evaluation graph where MemberAccuracyHook finds them (adanet's metrics of
  an iteration are only those every candidate ensemble has, so per-tower
  metrics cannot go through it)."""
  graph = tf.compat.v1.get_default_graph()
  if not graph.get_collection(_EVAL_LABELS_COLLECTION):
    graph.add_to_collection(_EVAL_LABELS_COLLECTION,
                            tf.reshape(tf.cast(labels, tf.int64), [-1]))
  return {}


class MemberAccuracyHook(tf.compat.v1.train.SessionRunHook):
  """Counts, during an `evaluate` of the search's estimator, how often each
  tower of the evaluation graph (the frozen members and this iteration's
  candidates) predicts the label with its own raw logits.

  After the evaluation, `accuracies` maps member_key(iteration, candidate),
  e.g. "t0_nasnet_1x96", to that tower's accuracy.
  """

  def begin(self):
    graph = tf.compat.v1.get_default_graph()
    labels = graph.get_collection(_EVAL_LABELS_COLLECTION)
    self._correct = {}
    for logits in graph.get_collection(MEMBER_LOGITS_COLLECTION) if labels \
        else ():
      key = member_key(candidate_iteration(logits), candidate_name(logits))
      if key not in self._correct:
        self._correct[key] = tf.equal(
            tf.argmax(logits, axis=-1, output_type=tf.int64), labels[0])
    self._counts = {key: [0, 0] for key in self._correct}

  def before_run(self, run_context):
    del run_context
    return tf.compat.v1.train.SessionRunArgs(self._correct)

  def after_run(self, run_context, run_values):
    del run_context
    for key, correct in run_values.results.items():
      self._counts[key][0] += int(np.sum(correct))
      self._counts[key][1] += int(np.size(correct))

  @property
  def accuracies(self) -> Dict[str, float]:
    return {key: right / seen for key, (right, seen) in self._counts.items()
            if seen}
