"""Builds an AdaNAS search once and runs it iteration by iteration.

`build_search` validates the config (and shrinks it when quick) once, loads
the dataset once, reads TF_CONFIG once, and builds the `AdaNasEstimator`
with its input functions. `run_search` then trains each iteration,
evaluates the chosen ensemble on the eval split, and records what happened:
one `IterationRecord` per iteration (every candidate with its parameters and
selection loss, the chosen one, the members, mixture weights, size and eval
metrics, wall time and steps/second) in `MODEL_DIR/search.json`, and a text
summary plus a few scalars in the TensorBoard run `MODEL_DIR/search`.
Re-running on the same model_dir resumes: finished iterations return at once
from the checkpoint and keep their records.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, List, Optional, Sequence

from absl import logging
import ml_collections
import tensorflow as tf

from improve_nas import config as config_lib
from improve_nas import memory
from improve_nas import tf_config
from improve_nas import threads
from improve_nas.adanas_estimator import AdaNasEstimator
from improve_nas.dataset_facts import DatasetFacts
from improve_nas.errors import SearchDiverged, SearchEnded
from improve_nas.estimator import (BuilderFn, InputFns, MemberAccuracyHook,
                                   build_estimator, input_fns)
from improve_nas.export import export_saved_model
from improve_nas.iteration import (IterationFacts, diverged_message,
                                   make_record, summarize)
from improve_nas.lock import ModelDirLock
from improve_nas.model_dir import (CONFIG_TAG, SUMMARY_DIR,
                                   checkpoint_iteration, latest_global_step,
                                   saved_config, summary_metadata)
from improve_nas.prepare import prepare_model_dir
from improve_nas.progress import ImageSummaryHook, Progress, ProgressHook
from improve_nas.records import (CONFIG_FILE, RECORDS_FILE, DamagedFile,
                                 IterationRecord, check_model_dir,
                                 check_model_dir_usable, load_search,
                                 write_records)
from improve_nas.stopping import StopHook, StopRequest

__all__ = ["Search", "SearchResult", "StopRequest", "build_search",
           "run_search", "load_search", "RECORDS_FILE", "CONFIG_FILE",
           "SUMMARY_DIR", "DamagedFile"]


@dataclasses.dataclass(frozen=True)
class Search:
  """One search, built: everything `run_search` needs, made once."""

  config: ml_collections.ConfigDict  # validated, and shrunk when quick
  model_dir: str
  estimator: AdaNasEstimator  # with its generator and selection evaluator
  input_fns: InputFns
  facts: DatasetFacts
  task: tf_config.ClusterTask
  overwrite: bool = False  # the search starts over (see run_search)


def build_search(c: ml_collections.ConfigDict, model_dir: str,
                 run_config: Optional[tf.estimator.RunConfig] = None, *,
                 builder_fn: Optional[BuilderFn] = None,
                 stream: int = 0,
                 task: Optional[tf_config.ClusterTask] = None,
                 overwrite: bool = False) -> Search:
  """The search of config `c` in `model_dir`, ready to run. Writes nothing.

  `builder_fn(arch, training)` makes each candidate's adanet Builder
  (default: builder.NasnetBuilder). `stream` k > 0 reads another order of
  the training data (worker k-1 of a cluster). `task`: this process's
  place in a TF_CONFIG cluster, when the caller has read it already.
  Unless `overwrite` (the search will start over), a model_dir holding
  another search is refused here, before the dataset is loaded.

  Raises:
    ConfigError: a bad config field, a model_dir that cannot be one or
      that holds another search, a dataset that cannot be read, a budget
      no first candidate fits.
  """
  threads.configure()  # (before TensorFlow's first operation, or nothing)
  c = config_lib.prepared(c)
  check_model_dir_usable(model_dir)
  if not overwrite:
    check_model_dir(c, model_dir, saved_config(model_dir)[0])
  task = task or tf_config.current_task()
  facts = DatasetFacts.load(c)
  fns = input_fns(c, model_dir, facts, stream=stream)
  estimator = build_estimator(c, model_dir, run_config, facts=facts,
                              task=task, selection_input_fn=fns.selection,
                              builder_fn=builder_fn)
  return Search(c, model_dir, estimator, fns, facts, task, overwrite)


@dataclasses.dataclass
class SearchResult:
  records: List[IterationRecord]
  ended: Optional[str] = None     # why the search stopped early, if it did
  diverged: bool = False          # it stopped because every candidate of
                                  # an iteration diverged
  interrupted: Optional[str] = None  # set when a signal stopped it: where
  estimator: object = None
  export_path: Optional[str] = None  # the SavedModel, when exported


def run_search(search: "Search | ml_collections.ConfigDict",
               model_dir: Optional[str] = None,
               run_config: Optional[tf.estimator.RunConfig] = None,
               on_iteration: Optional[Callable[[IterationRecord], None]] = None,
               overwrite: Optional[bool] = None,
               on_progress: Optional[Callable[[Progress], None]] = None,
               progress_secs: float = 10.0,
               export: bool = False,
               stop: Optional[StopRequest] = None,
               on_status: Optional[Callable[[str], None]] = None,
               hooks: Sequence[tf.estimator.SessionRunHook] = (),
               on_notice: Optional[Callable[[str], None]] = None
               ) -> SearchResult:
  """Runs (or resumes) a search built by `build_search`; a config with
  `model_dir` (and `run_config`) is short for `build_search` of them.

  With `overwrite` (default: as the search was built), an existing
  model_dir is deleted once the config is known to be good; otherwise a
  search there with the same config is resumed.
  `on_iteration` gets each new IterationRecord; `on_progress` gets a
  `Progress` about every `progress_secs` seconds of training. With `export`,
  the final ensemble is exported as a SavedModel to MODEL_DIR/export. With
  an installed `stop` (see StopRequest), Ctrl-C or SIGTERM stops the search
  at the next safe point with a checkpoint; `interrupted` says where.
  `on_status` gets a line when a phase other than training starts (adanet's
  selection and graph growing, the test evaluation, the export). `hooks`
  are extra SessionRunHooks for every iteration's training call.

  The model_dir is locked while the search runs (see lock.py). What a
  damaged model_dir forces, or a lock taken over from a dead process, is
  said in one line to `on_notice` (default: a logged warning).

  Raises:
    ConfigError: a bad config, a model_dir holding another search or in use
      by another process (ModelDirBusy), or one damaged beyond repair.
  """
  if not isinstance(search, Search):
    search = build_search(search, model_dir, run_config,
                          overwrite=bool(overwrite))
  c, model_dir, task = search.config, search.model_dir, search.task
  overwrite = search.overwrite if overwrite is None else overwrite
  notice = on_notice or (lambda line: logging.warning("%s", line))
  status = on_status or (lambda line: None)
  lock = ModelDirLock(model_dir, role="search" if not task.distributed else
                      "chief of a cluster",
                      cluster=task.cluster if task.distributed else None)
  took_over = lock.acquire()
  try:
    if took_over:
      notice(took_over)
    # The chief of a TF_CONFIG cluster serves its part of the graph (kept
    # referenced until the search returns).
    server = (tf_config.start_server(task) if task.type == "chief" else
              None)
    done, _ = prepare_model_dir(c, model_dir, overwrite, notice)
    result = _Run(search, done, on_progress, progress_secs, stop,
                  status, hooks).run(on_iteration)
    if export and result.records and not result.interrupted:
      if stop is not None and stop.signal is not None:
        result.interrupted = "stopped before the export"
      else:
        status("exporting the final ensemble to "
               f"{os.path.join(model_dir, 'export')}")
        result.export_path = export_saved_model(
            c, model_dir, estimator=search.estimator, facts=search.facts)
    del server
    return result
  finally:
    lock.release()


class _Run:
  """One run of a built search over its iterations: train -> evaluate ->
  record."""

  def __init__(self, search: Search, done: List[IterationRecord],
               on_progress, progress_secs, stop, status, hooks):
    self._s = search
    self._done = {r.iteration: r for r in done}
    self._on_progress = on_progress
    self._progress_secs = progress_secs
    self._stop = stop
    self._status = status
    self._hooks = list(hooks)
    self._overheads: List[float] = []  # seconds outside training steps
    self.records: List[IterationRecord] = []

  def _stopping(self) -> bool:
    return self._stop is not None and self._stop.signal is not None

  def run(self, on_iteration) -> SearchResult:
    c, model_dir = self._s.config, self._s.model_dir
    writer = tf.summary.create_file_writer(
        os.path.join(model_dir, SUMMARY_DIR))
    with writer.as_default(step=latest_global_step(model_dir)):
      tf.summary.write(CONFIG_TAG, c.to_json(), metadata=summary_metadata())
    writer.flush()
    checkpoint = tf.train.latest_checkpoint(model_dir)
    if checkpoint:
      self._status(f"resuming from {os.path.basename(checkpoint)}")
    result = SearchResult(records=self.records, estimator=self._s.estimator)
    for t in range(c.max_iterations):
      start = time.time()
      first_step = latest_global_step(model_dir)
      outcome, progress = self._train(t, first_step)
      if outcome is not None:
        if outcome != "interrupted":
          result.ended, result.diverged = outcome
        else:
          step = latest_global_step(model_dir) - t * c.steps_per_iteration
          result.interrupted = (f"stopped at step {step} of iteration "
                                f"{t + 1}; checkpoint saved")
        break
      if t in self._done:
        self.records.append(self._done[t])
        continue
      train_seconds = time.time() - start
      record = self._evaluate(t, start)
      if record is None:
        result.ended = diverged_message(
            c, t, self._s.estimator.candidates(t), self.records)
        result.diverged = True
        break
      trained = (t + 1) * c.steps_per_iteration - max(
          first_step, t * c.steps_per_iteration)
      record.train_seconds = round(train_seconds, 1)
      record.steps_per_second = round(trained / max(train_seconds, 1e-9), 4)
      self.records.append(record)
      if progress is not None and progress.training_seconds:
        self._overheads.append(
            max(0.0, record.seconds - progress.training_seconds))
      # The hooks hold tensors, and through them the whole training graph.
      progress = None
      memory.release_freed_memory()
      write_records(model_dir, self.records, None)
      summarize(writer, record)
      if on_iteration:
        on_iteration(record)
      if self._stopping() and t + 1 < c.max_iterations:
        result.interrupted = f"stopped after iteration {t + 1}"
        break
    write_records(model_dir, self.records, result.ended)
    writer.close()
    return result

  def _train(self, t: int, first_step: int):
    """Trains iteration t (a finished one returns at once). Returns
    (None or (why it ended, diverged) or "interrupted", its ProgressHook)."""
    c, estimator, fns = self._s.config, self._s.estimator, self._s.input_fns
    steps = c.steps_per_iteration
    hooks = [ImageSummaryHook(self._s.model_dir, c.save_summary_steps),
             *self._hooks]
    if self._stop is not None:
      hooks.append(StopHook(self._stop))
    progress = None
    if self._on_progress and t not in self._done:
      progress = ProgressHook(
          t, c.max_iterations, steps, c.batch_size, self._on_progress,
          every_secs=self._progress_secs,
          overhead=(sum(self._overheads) / len(self._overheads)
                    if self._overheads else None))
      hooks.append(progress)
    grow = (t and t not in self._done and
            checkpoint_iteration(self._s.model_dir) < t)
    if grow:
      self._status(f"iteration {t + 1}/{c.max_iterations}: selecting the "
                   f"best candidate of iteration {t} and growing the graph")
    try:
      if grow and first_step >= t * steps:
        # What the training call would do first, without its rebuilding
        # and reopening the finished iteration's training graph.
        estimator.prepare_next_iteration(fns.train, hooks)
      estimator.train(fns.train, max_steps=(t + 1) * steps, hooks=hooks)
    except (SearchDiverged, tf.compat.v1.train.NanLossDuringTrainingError):
      # (NanLoss: only when every candidate's loss is NaN; see compat.py.)
      return (diverged_message(c, t, estimator.candidates(t), self.records),
              True), progress
    except SearchEnded as e:
      return (str(e), False), progress
    if (self._stopping() and
        latest_global_step(self._s.model_dir) < (t + 1) * steps):
      return "interrupted", progress
    return None, progress

  def _evaluate(self, t: int, start: float) -> Optional[IterationRecord]:
    """Evaluates the ensemble chosen at iteration t on the eval split and
    returns its record; None when every new candidate diverged."""
    c, estimator = self._s.config, self._s.estimator
    estimator.forget_selection_losses()
    self._status(f"iteration {t + 1}/{c.max_iterations}: evaluating the "
                 f"chosen ensemble on {c.eval_split!r}")
    members = MemberAccuracyHook()
    try:
      metrics = estimator.evaluate_locally(
          self._s.input_fns.eval, steps=c.eval_steps or None, name="test",
          hooks=[members])
    except SearchDiverged:  # the first iteration: nothing to fall back on
      estimator.mark_diverged()
    if estimator.diverged:  # it fell back on the previous ensemble, if any
      return None
    chosen = estimator.chosen(t, metrics)
    record = make_record(
        IterationFacts(t, estimator.candidates(t),
                       estimator.selection_losses(t), chosen, metrics,
                       members.accuracies, time.time() - start),
        self.records, self._s.facts.cost, c)
    record.mixture_weights = estimator.mixture_weights(t, chosen)
    return record
