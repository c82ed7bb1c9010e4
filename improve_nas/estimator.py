"""Config -> AdaNasEstimator, and the input_fns that go with it.

`make_estimator` is the entry point for people with their own pipeline
(`tf.estimator.train_and_evaluate`, `evaluate`, `predict`); a search builds
the same estimator through `search.build_search`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional

import ml_collections
import numpy as np
import tensorflow as tf

from improve_nas import config as config_lib
from improve_nas import memory
from improve_nas import mirrored
from improve_nas import tf_config
from improve_nas import threads
from improve_nas.adanas_estimator import (AdaNasEstimator, RecordingEvaluator,
                                          placement_strategy)
from improve_nas.builder import (MEMBER_LOGITS_COLLECTION, CandidateGenerator,
                                 NasnetBuilder, TrainingConfig,
                                 tensor_candidate, tensor_iteration)
from improve_nas.compat import adanet
from improve_nas.data.input import PipelineConfig, make_input_fn
from improve_nas.dataset_facts import DatasetFacts
from improve_nas.ensemble import MixtureWeightEnsembler
from improve_nas.errors import ConfigError
from improve_nas.model_dir import latest_global_step
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.proposals import make_proposer, member_key

__all__ = ["InputFns", "make_estimator", "build_estimator", "input_fns",
           "MemberAccuracyHook", "BuilderFn"]

# arch, training -> the adanet Builder of that candidate (NasnetBuilder).
BuilderFn = Callable[[ArchSpec, TrainingConfig], adanet.subnetwork.Builder]


@dataclasses.dataclass(frozen=True)
class InputFns:
  """The input_fns of a search: training, test evaluation and selection."""

  train: Callable
  eval: Callable
  selection: Callable


def input_fns(c: ml_collections.ConfigDict, model_dir: Optional[str] = None,
              facts: Optional[DatasetFacts] = None,
              stream: int = 0) -> InputFns:
  """Training, evaluation and selection input_fns for config `c`.

  Training input is shuffled and augmented with a seed that changes with
  each iteration, so each adanet iteration sees a new order, and a run
  resumed from a checkpoint in `model_dir` (even mid-iteration) sees what an
  uninterrupted one would have seen. `stream` k > 0 gives another order and
  other augmentations (worker k-1 of a cluster; the chief reads stream 0).
  """
  facts = facts or DatasetFacts.load(c)
  source = facts.source
  common = dict(image_size=facts.image_size, batch_size=c.batch_size,
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
  outweighs what it saves (see bench/demo_search.py). Threads: one per
  operation, as many operations at once as cores (improve_nas/threads.py;
  they count when the process has run nothing before).
  """
  config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
  config.graph_options.rewrite_options.disable_meta_optimizer = True
  threads.session_threads(config)
  return config


def make_estimator(c: ml_collections.ConfigDict,
                   run_config: Optional[tf.estimator.RunConfig] = None,
                   model_dir: Optional[str] = None,
                   builder_fn: Optional[BuilderFn] = None) -> AdaNasEstimator:
  """The AdaNAS search for config `c` as an adanet.Estimator.

  Works with `tf.estimator.train_and_evaluate`, `evaluate` and `predict`;
  features are {"image": float32 [batch, size, size, channels]} in [-1, 1]
  (see `input_fns`), labels int class ids. `builder_fn(arch, training)`
  makes each candidate's adanet Builder (default: NasnetBuilder).

  Raises:
    ConfigError: a bad config field, or a budget no first candidate fits.
  """
  c = config_lib.prepared(c)
  facts = DatasetFacts.load(c)
  model_dir = model_dir or (run_config.model_dir if run_config else None)
  return build_estimator(c, model_dir, run_config, facts=facts,
                         task=tf_config.current_task(),
                         selection_input_fn=input_fns(c, model_dir,
                                                      facts).selection,
                         builder_fn=builder_fn)


def _run_config(c, run_config, model_dir: str,
                task: tf_config.ClusterTask) -> tf.estimator.RunConfig:
  """`run_config` (default: RunConfig(), which reads TF_CONFIG) with the
  config's seed, checkpoint and summary cadence and session options."""
  default_run_config = run_config is None
  run_config = run_config or tf.estimator.RunConfig()
  overrides = dict(model_dir=model_dir)
  if run_config.tf_random_seed is None:
    overrides["tf_random_seed"] = c.seed
  if c.save_checkpoints_steps:
    overrides["save_checkpoints_steps"] = c.save_checkpoints_steps
  overrides["save_summary_steps"] = c.save_summary_steps
  if run_config.session_config is None or default_run_config:
    overrides["session_config"] = tf_config.session_config(
        task, _session_config())
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
  return run_config.replace(**overrides)


def build_estimator(c: ml_collections.ConfigDict, model_dir: Optional[str],
                    run_config: Optional[tf.estimator.RunConfig], *,
                    facts: DatasetFacts, task: tf_config.ClusterTask,
                    selection_input_fn: Callable,
                    builder_fn: Optional[BuilderFn] = None
                    ) -> AdaNasEstimator:
  """`make_estimator` for a config already prepared (config.prepared) and
  its dataset already loaded."""
  memory.limit_heap_fragmentation()
  if model_dir is None:
    raise ConfigError("model_dir is not set: pass model_dir= or a RunConfig "
                      "with model_dir")
  run_config = _run_config(c, run_config, model_dir, task)
  training = TrainingConfig.from_config(c)
  builder_fn = builder_fn or NasnetBuilder
  proposer = make_proposer(c, facts.params)
  proposer.check_first_fits()
  ensembler = MixtureWeightEnsembler(
      learn=c.learn_mixture_weights, learning_rate=c.learning_rate,
      momentum=c.momentum, steps_per_iteration=c.steps_per_iteration)
  # Passed only when it is not adanet's default: adanet calls the argument
  # experimental (verbosity.py filters that warning out).
  placement = placement_strategy(c.placement)
  extra = ({} if placement is None else
           {"experimental_placement_strategy": placement})
  return AdaNasEstimator(
      head=tf.estimator.MultiClassHead(facts.num_classes),
      subnetwork_generator=CandidateGenerator(
          proposer, lambda arch: builder_fn(arch, training)),
      max_iteration_steps=c.steps_per_iteration,
      ensemblers=[ensembler],
      ensemble_strategies=[adanet.ensemble.GrowStrategy()],
      evaluator=RecordingEvaluator(selection_input_fn,
                                   steps=c.selection_steps or None),
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
      key = member_key(tensor_iteration(logits), tensor_candidate(logits))
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
