"""Runs (or resumes) an AdaNAS search on the Keras engine.

`run_search` does what the adanet engine's `improve_nas.search.run_search`
does (same config, lock, records, TensorBoard tags, progress lines). Each
iteration trains its candidates (`training.IterationTrainer`) from the
batches the adanet engine would read, chooses the candidate whose ensemble
has the lowest loss on the training split, evaluates that ensemble on the
eval split, records it, and keeps the chosen tower in memory as a member.

A checkpoint (MODEL_DIR/keras.ckpt-STEP: the global step, the members and
their mixture weights, the candidates, the optimizer slots) is written
every save_checkpoints_steps (0: at the end of each iteration), at Ctrl-C
or SIGTERM, and at the end. A run on the same model_dir resumes from it and
makes the same choices as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, List, Optional

import ml_collections
import tensorflow as tf

from improve_nas import config as config_lib
from improve_nas import tf_config
from improve_nas.data.input import PipelineConfig, make_input_fn
from improve_nas.dataset_facts import DatasetFacts
from improve_nas.errors import ConfigError, SearchEnded
from improve_nas.iteration import (IterationFacts, diverged_message,
                                   make_record, summarize)
from improve_nas.keras_engine import ENGINE
from improve_nas.keras_engine import replicas
from improve_nas.keras_engine import runtime
from improve_nas.keras_engine.clock import Clock
from improve_nas.keras_engine import summaries
from improve_nas.keras_engine.training import (IterationTrainer, Member,
                                               make_tower, tower_variables)
from improve_nas.lock import ModelDirLock
from improve_nas.model_dir import (CONFIG_TAG, ensure_intact_checkpoint,
                                   saved_config, summary_metadata)
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.progress_line import Progress
from improve_nas.prepare import prepare_model_dir
from improve_nas.proposals import make_proposer
from improve_nas.records import (IterationRecord, check_model_dir,
                                 check_model_dir_usable, load_records,
                                 write_records)

__all__ = ["SearchResult", "run_search", "export_only", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "keras.ckpt"


@dataclasses.dataclass
class SearchResult:
  records: List[IterationRecord]
  ended: Optional[str] = None     # why the search stopped early, if it did
  diverged: bool = False          # every candidate of an iteration diverged
  interrupted: Optional[str] = None  # set when a signal stopped it: where
  export_path: Optional[str] = None  # the SavedModel, when exported
  members: List[Member] = dataclasses.field(default_factory=list)


def run_search(c: ml_collections.ConfigDict, model_dir: str, *,
               overwrite: bool = False,
               on_iteration: Optional[Callable[[IterationRecord], None]] = None,
               on_progress: Optional[Callable[[Progress], None]] = None,
               progress_secs: float = 10.0, export: bool = False,
               stop=None, on_status: Optional[Callable[[str], None]] = None,
               on_notice: Optional[Callable[[str], None]] = None,
               on_start: Optional[Callable[[ml_collections.ConfigDict],
                                           None]] = None,
               strategy: Optional[tf.distribute.Strategy] = None
               ) -> SearchResult:
  """Runs (or resumes) the search of config `c` in `model_dir`.

  The arguments mean what they mean for the adanet engine's run_search:
  `overwrite` starts over, `on_iteration` gets each new IterationRecord,
  `on_progress` a Progress every `progress_secs`, `export` writes the final
  ensemble to MODEL_DIR/export, `stop` (a stopping.StopRequest) stops at
  the next step with a checkpoint, `on_status` and `on_notice` get lines.
  `on_start` gets the config as the search runs it (validated, and shrunk
  when quick) once the model_dir is known to take it. With a `strategy`
  (improve_nas.mirrored.strategy: several devices of this machine), each
  training step is split over its replicas, config.batch_size being the
  global batch; selection, evaluation and export run on one device.

  TensorFlow's threads are set for the towers (see runtime.py) unless
  TensorFlow has already run an operation in this process.

  Raises:
    ConfigError: a bad config, a model_dir holding another search (or the
      adanet engine's) or in use by another process, a TF_CONFIG cluster.
  """
  runtime.configure()
  c = config_lib.prepared(c)
  if tf_config.current_task().distributed:
    raise ConfigError(
        "TF_CONFIG describes a cluster, and the keras engine runs on one "
        "machine; unset TF_CONFIG, or run the cluster with --engine=adanet")
  replicas.count(strategy or tf.distribute.get_strategy(), c.batch_size)
  check_model_dir_usable(model_dir)
  if not overwrite:
    check_model_dir(c, model_dir, saved_config(model_dir)[0], engine=ENGINE)
  facts = DatasetFacts.load(c)
  proposer = make_proposer(c, facts.params)
  proposer.check_first_fits()
  notice = on_notice or (lambda line: None)
  lock = ModelDirLock(model_dir, role="search")
  took_over = lock.acquire()
  try:
    if took_over:
      notice(took_over)
    done, step = prepare_model_dir(c, model_dir, overwrite, notice,
                                   engine=ENGINE)
    if on_start:
      on_start(c)
    run = _Run(c, model_dir, facts, proposer, done, step, stop,
               on_progress, progress_secs, on_status or (lambda line: None),
               strategy)
    result = run.run(on_iteration)
    if export and result.records and not result.interrupted:
      if stop is not None and stop.signal is not None:
        result.interrupted = "stopped before the export"
      else:
        from improve_nas.keras_engine import export as export_lib  # pylint: disable=g-import-not-at-top
        target = os.path.join(model_dir, "export")
        run.status(f"exporting the final ensemble to {target}")
        result.export_path = export_lib.export_ensemble(
            facts, result.members, target)
    return result
  finally:
    lock.release()


def export_only(c: ml_collections.ConfigDict, model_dir: str,
                on_notice: Optional[Callable[[str], None]] = None) -> str:
  """Exports the ensemble of the last finished iteration in `model_dir` (a
  search of config `c`) to a new SavedModel in MODEL_DIR/export; returns it.

  Raises:
    ConfigError: no checkpoint, or no finished iteration, to export.
  """
  runtime.configure()
  c = config_lib.prepared(c)
  facts = DatasetFacts.load(c)
  proposer = make_proposer(c, facts.params)
  notice = on_notice or (lambda line: None)
  with ModelDirLock(model_dir, role="export"):
    step, lines = ensure_intact_checkpoint(model_dir)
    for line in lines:
      notice(line)
    run = _Run(c, model_dir, facts, proposer, load_records(model_dir), step,
               None, None, 0.0, lambda line: None)
    members = run.finished_members()
    if not members:
      raise ConfigError(f"model_dir {model_dir!r} holds no finished "
                        "iteration to export; run the search there first")
    from improve_nas.keras_engine import export as export_lib  # pylint: disable=g-import-not-at-top
    return export_lib.export_ensemble(facts, members,
                                      os.path.join(model_dir, "export"))


class _Run:
  """One run of a search over its iterations: train -> choose -> evaluate ->
  record -> grow."""

  def __init__(self, c, model_dir, facts, proposer, done, step, stop,
               on_progress, progress_secs, status, strategy=None):
    self.c, self.model_dir, self.facts = c, model_dir, facts
    self.proposer = proposer
    self.done = {r.iteration: r for r in done}
    self.stop = stop
    self.on_progress, self.progress_secs = on_progress, progress_secs
    self.status = status
    self.strategy = strategy or tf.distribute.get_strategy()
    self.replicas = replicas.count(self.strategy, c.batch_size)
    with self.strategy.scope():
      self.global_step = tf.Variable(
          0, dtype=tf.int64, name="global_step",
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.state = tf.Variable("{}", dtype=tf.string, name="state")
    self.members: List[Member] = []
    self.records: List[IterationRecord] = []
    self.resume_step = step
    self.overheads: List[float] = []
    self.writers = summaries.Writers(model_dir)

  def _stopping(self) -> bool:
    return self.stop is not None and self.stop.signal is not None

  def _checkpoint(self, trainer: IterationTrainer) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(
        global_step=self.global_step, state=self.state,
        members=[tower_variables(m.tower) for m in self.members],
        **trainer.checkpointed())

  def _save(self, trainer: IterationTrainer) -> None:
    self.state.assign(json.dumps({
        "iteration": trainer.iteration,
        "members": [{"arch": str(m.arch), "iteration": m.iteration,
                     "weight": m.weight} for m in self.members],
        "candidates": [str(x.arch) for x in trainer.candidates]}))
    manager = tf.train.CheckpointManager(
        self._checkpoint(trainer), self.model_dir, max_to_keep=3,
        checkpoint_name=CHECKPOINT_NAME)
    manager.save(checkpoint_number=int(self.global_step.numpy()))

  def _restored_state(self) -> Optional[dict]:
    """The state of the checkpoint to resume, with its members rebuilt."""
    path = tf.train.latest_checkpoint(self.model_dir)
    if self.resume_step is None or not path:
      return None
    reader = tf.train.load_checkpoint(path)
    state = json.loads(reader.get_tensor(
        "state/.ATTRIBUTES/VARIABLE_VALUE").decode())
    for i, m in enumerate(state["members"]):
      arch = ArchSpec.parse(m["arch"])
      with self.strategy.scope():
        tower = make_tower(self.c, self.facts, arch, i)
      self.members.append(Member(arch, m["iteration"], tower, m["weight"]))
    state["path"] = path
    self.status(f"resuming from {os.path.basename(path)}")
    return state

  def finished_members(self) -> List[Member]:
    """The members of the last finished iteration the checkpoint holds: its
    frozen members, and the chosen candidate of an iteration it completes
    (its record says which)."""
    state = self._restored_state()
    if state is None:
      return []
    t = state["iteration"]
    if t in self.done and self.resume_step >= (
        t + 1) * self.c.steps_per_iteration:
      trainer = self._trainer(t, self._candidates(t))
      self._checkpoint(trainer).restore(state["path"]).assert_consumed()
      self._grow(trainer, self.done[t])
    return self.members

  def _candidates(self, t: int):
    """What iteration t trains after the members (SearchEnded: nothing
    fits the budget); the same for a run and its resumption."""
    return self.proposer.fitting(
        [(m.arch, self.facts.params(m.arch)) for m in self.members], t)

  def _trainer(self, t: int, candidates) -> IterationTrainer:
    return replicas.make_trainer(self.strategy, self.c, self.facts, t,
                                 self.members, candidates, self.global_step)

  def run(self, on_iteration) -> SearchResult:
    c = self.c
    writer = self.writers.search
    with writer.as_default(step=self.resume_step or 0):
      tf.summary.write(CONFIG_TAG, c.to_json(), metadata=summary_metadata())
    writer.flush()
    result = SearchResult(records=self.records, members=self.members)
    state = self._restored_state()
    t = state["iteration"] if state else 0
    self.records.extend(self.done[i] for i in range(t) if i in self.done)
    while t < c.max_iterations:
      start = time.time()
      try:
        candidates = self._candidates(t)
      except SearchEnded as e:
        result.ended = str(e)
        break
      trainer = self._trainer(t, candidates)
      if state is not None:
        self._checkpoint(trainer).restore(state["path"]).assert_consumed()
        state = None
      first_step = int(self.global_step.numpy())
      training_seconds = self._train(trainer)
      if training_seconds is None:
        step = int(self.global_step.numpy()) - t * c.steps_per_iteration
        result.interrupted = (f"stopped at step {step} of iteration "
                              f"{t + 1}; checkpoint saved")
        break
      train_seconds = time.time() - start
      record = self.done.get(t)
      if record is None:
        record = self._evaluate(trainer, start)
        if record is None:
          result.ended = diverged_message(c, t, candidates, self.records)
          result.diverged = True
          break
        trained = (t + 1) * c.steps_per_iteration - first_step
        record.train_seconds = round(train_seconds, 1)
        record.steps_per_second = round(trained / max(train_seconds, 1e-9), 4)
        self.overheads.append(max(0.0, record.seconds - training_seconds))
        self.records.append(record)
        write_records(self.model_dir, self.records, None)
        summarize(writer, record)
        if on_iteration:
          on_iteration(record)
      else:
        self.records.append(record)
      self._grow(trainer, record)
      t += 1
      if self._stopping() and t < c.max_iterations:
        result.interrupted = f"stopped after iteration {t}"
        break
    write_records(self.model_dir, self.records, result.ended)
    self.writers.close()
    return result

  def _input(self, split: str, training: bool, seed: int = 0, skip: int = 0):
    c, facts = self.c, self.facts
    config = PipelineConfig(
        split=split, image_size=facts.image_size, batch_size=c.batch_size,
        training=training, random_flip=c.random_flip,
        cutout_size=c.cutout_size, shuffle_buffer=c.shuffle_buffer)
    return make_input_fn(facts.source, config,
                         seed_fn=lambda: (seed, skip))()

  def _train(self, trainer: IterationTrainer) -> Optional[float]:
    """Trains iteration t to its last step (a finished one returns at once).
    Returns the seconds spent in steps after the warm-up, None when a stop
    was requested (a checkpoint is saved)."""
    c, t = self.c, trainer.iteration
    steps = c.steps_per_iteration
    first = t * steps
    end = first + steps
    step = int(self.global_step.numpy())
    if step >= end:
      return 0.0
    if step == first:
      self.status(f"iteration {t + 1}/{c.max_iterations}: training "
                  f"{', '.join(x.name for x in trainer.candidates)}")
    data = self._input(c.train_split, True, seed=c.seed + first,
                       skip=step - first)
    if self.replicas > 1:
      # Each global batch split in consecutive shares, one per replica.
      data = self.strategy.experimental_distribute_dataset(data)
    clock = Clock(self, trainer, step - first)
    for features, labels in data:
      images = features["image"]
      out = replicas.train_step(self.strategy, trainer, images, labels)
      step += 1
      if step % c.save_summary_steps == 0 or step == end:
        self.writers.training(
            trainer, out(), step,
            self.strategy.experimental_local_results(images)[0])
      if c.save_checkpoints_steps and step % c.save_checkpoints_steps == 0 \
          and step < end:
        self._save(trainer)
      clock.tick(step - first, out)
      if self._stopping() and step < end:
        self._save(trainer)
        return None
      if step >= end:
        break
    self._save(trainer)
    return clock.seconds()

  def _evaluate(self, trainer: IterationTrainer, start: float
                ) -> Optional[IterationRecord]:
    c, t = self.c, trainer.iteration
    self.status(f"iteration {t + 1}/{c.max_iterations}: selecting among "
                f"{len(trainer.candidates)} candidate(s)")
    selection = self._input(c.train_split, False)
    if c.selection_steps:
      selection = selection.take(c.selection_steps)
    losses = trainer.selection_losses(selection)
    finite = [k for k, x in enumerate(losses) if x == x]
    if not finite:
      return None
    chosen = min(finite, key=lambda k: losses[k])
    self.status(f"iteration {t + 1}/{c.max_iterations}: evaluating the "
                f"chosen ensemble on {c.eval_split!r}")
    evaluation = self._input(c.eval_split, False)
    if c.eval_steps:
      evaluation = evaluation.take(c.eval_steps)
    metrics, own = trainer.evaluate(evaluation, chosen,
                                    int(self.global_step.numpy()))
    record = make_record(
        IterationFacts(t, trainer.candidates, losses,
                       trainer.candidates[chosen], metrics, own,
                       time.time() - start),
        self.records, self.facts.cost, c)
    record.mixture_weights = [round(w, 6)
                              for w in trainer.mixture_weights(chosen)]
    return record

  def _grow(self, trainer: IterationTrainer, record: IterationRecord) -> None:
    """The chosen candidate joins the members, with the mixture weights of
    its ensemble."""
    k = next(i for i, x in enumerate(trainer.candidates)
             if x.name == record.chosen)
    weights = trainer.mixture_weights(k)
    for member, weight in zip(self.members, weights):
      member.weight = weight
    self.members.append(Member(trainer.candidates[k].arch,
                               trainer.iteration, trainer.towers[k],
                               weights[-1], trainer.candidate_logits[k]))

