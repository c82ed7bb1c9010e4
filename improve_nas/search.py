"""Runs an AdaNAS search iteration by iteration and records what happened.

`run_search` drives the adanet.Estimator of `estimator.make_estimator`: it
trains one iteration, evaluates the chosen ensemble on the eval split, and
appends one `IterationRecord` (every candidate with its parameters and
selection loss, the chosen one, the ensemble's members, mixture weights, size
and eval metrics, the iteration's wall time and steps/second) to
`MODEL_DIR/search.json`, and a text summary of the chosen architecture plus a
few per-iteration scalars to the TensorBoard run `MODEL_DIR/search`.
Re-running on the same model_dir resumes: finished iterations return at once
from the checkpoint and keep their records.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from typing import Callable, List, Optional, Sequence

from absl import logging
import ml_collections
import tensorflow as tf

from improve_nas import compat
from improve_nas import config as config_lib
from improve_nas import distributed
from improve_nas import memory
from improve_nas.errors import SearchDiverged, SearchEnded
from improve_nas.lock import LOCK_FILE, ModelDirLock
from improve_nas.model_dir import (CONFIG_TAG, RECORD_TAG, SUMMARY_DIR,
                                   ensure_intact_checkpoint, saved_config,
                                   saved_records, summary_metadata)
from improve_nas.builder import member_key
from improve_nas.export import export_saved_model
from improve_nas.estimator import (MemberAccuracyHook,
                                   input_fns, latest_global_step,
                                   make_estimator, newest_iteration,
                                   tower_cost_fn)
from improve_nas.progress import ImageSummaryHook, Progress, ProgressHook
# The records and model_dir checks, under the names callers have used.
from improve_nas.records import (CONFIG_FILE, RECORDS_FILE, CandidateRecord,
                                 DamagedFile,
                                 IterationRecord, check_model_dir,
                                 check_model_dir_usable, load_records,
                                 load_saved_config, load_search,
                                 write_records)

__all__ = ["StopRequest", "CandidateRecord", "IterationRecord", "SearchResult",
           "run_search", "load_records", "load_search", "load_saved_config",
           "RECORDS_FILE", "CONFIG_FILE", "SUMMARY_DIR", "check_model_dir",
           "check_model_dir_usable", "DamagedFile"]



@dataclasses.dataclass
class SearchResult:
  records: List[IterationRecord]
  ended: Optional[str] = None     # why the search stopped early, if it did
  diverged: bool = False          # it stopped because every candidate of an
                                  # iteration diverged
  interrupted: Optional[str] = None  # set when a signal stopped it: where
  estimator: object = None
  export_path: Optional[str] = None  # the SavedModel, when exported


def run_search(c: ml_collections.ConfigDict, model_dir: str,
               run_config: Optional[tf.estimator.RunConfig] = None,
               on_iteration: Optional[Callable[[IterationRecord], None]] = None,
               overwrite: bool = False,
               on_progress: Optional[Callable[[Progress], None]] = None,
               progress_secs: float = 10.0,
               export: bool = False,
               stop: Optional[StopRequest] = None,
               on_status: Optional[Callable[[str], None]] = None,
               hooks: Sequence[tf.estimator.SessionRunHook] = (),
               on_notice: Optional[Callable[[str], None]] = None
               ) -> SearchResult:
  """Runs (or resumes) the search of config `c` in `model_dir`.

  With `overwrite`, an existing model_dir is deleted once the config is known
  to be good; otherwise a search there with the same config is resumed.
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
  said in one line to `on_notice` (default: a logged warning): a damaged
  newest checkpoint skipped for the newest intact one, a damaged
  search.json or config.json rebuilt from the TensorBoard run 'search'.

  Raises:
    ConfigError: a bad config, a model_dir holding another search or in use
      by another process (ModelDirBusy), or one damaged beyond repair.
  """
  config_lib.validate(c)
  c = config_lib.apply_quick(c)
  check_model_dir_usable(model_dir)
  notice = on_notice or (lambda line: logging.warning("%s", line))
  if not overwrite:
    check_model_dir(c, model_dir, saved_config(model_dir)[0])
  estimator = make_estimator(c, run_config, model_dir=model_dir)
  task = distributed.current_task()
  lock = ModelDirLock(model_dir, role="search" if not task.distributed else
                      "chief of a cluster",
                      cluster=task.cluster if task.distributed else None)
  took_over = lock.acquire()
  try:
    if took_over:
      notice(took_over)
    return _run_locked(c, model_dir, estimator, task, overwrite, notice,
                       on_iteration, on_progress, progress_secs, export, stop,
                       on_status, hooks)
  finally:
    lock.release()


def _prepare(c, model_dir: str, overwrite: bool, notice
             ) -> List[IterationRecord]:
  """With the lock held: starts over, or checks what the model_dir holds
  and recovers what can be; writes config.json. Returns the records of
  the iterations already done."""
  tf.io.gfile.makedirs(model_dir)
  config_path = os.path.join(model_dir, CONFIG_FILE)
  if overwrite:
    for name in tf.io.gfile.listdir(model_dir):
      path = os.path.join(model_dir, name)
      if name == LOCK_FILE:
        continue
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      else:
        tf.io.gfile.remove(path)
    done = []
  else:
    saved, damaged = saved_config(model_dir)  # again, under the lock
    if saved is not None:  # (a cluster's workers may have written already)
      check_model_dir(c, model_dir, saved)
    if damaged:
      tf.io.gfile.rename(config_path, config_path + ".damaged", overwrite=True)
      notice(f"{damaged}; kept the damaged file as {CONFIG_FILE}.damaged")
    step, lines = ensure_intact_checkpoint(model_dir, c.steps_per_iteration)
    for line in lines:
      notice(line)
    done, rebuilt = saved_records(model_dir, step,
                                  _checkpoint_iteration(model_dir))
    if rebuilt:
      notice(rebuilt)
      write_records(model_dir, done, None)
  with tf.io.gfile.GFile(config_path, "w") as f:
    f.write(c.to_json(indent=1))
  return done


def _run_locked(c, model_dir, estimator, task, overwrite, notice,
                on_iteration, on_progress, progress_secs, export, stop,
                on_status, hooks) -> SearchResult:
  """run_search, once the model_dir is locked."""
  # The chief of a TF_CONFIG cluster serves its part of the graph (kept
  # referenced until the search returns).
  server = distributed.start_server(task) if task.type == "chief" else None
  done = {r.iteration: r for r in _prepare(c, model_dir, overwrite, notice)}
  writer = tf.summary.create_file_writer(os.path.join(model_dir, SUMMARY_DIR))
  with writer.as_default(step=latest_global_step(model_dir)):
    tf.summary.write(CONFIG_TAG, c.to_json(), metadata=summary_metadata())
  writer.flush()
  fns = input_fns(c, model_dir)
  cost = tower_cost_fn(c)
  generator = estimator._subnetwork_generator  # pylint: disable=protected-access
  evaluator = estimator._evaluator  # pylint: disable=protected-access
  records: List[IterationRecord] = []
  ended, diverged, interrupted = None, False, None
  status = on_status or (lambda line: None)
  checkpoint = tf.train.latest_checkpoint(model_dir)
  if checkpoint:
    status(f"resuming from {os.path.basename(checkpoint)}")
  stopping = lambda: stop is not None and stop.signal is not None
  steps = c.steps_per_iteration
  overheads: List[float] = []  # seconds outside training steps, per iteration
  for t in range(c.max_iterations):
    start = time.time()
    first_step = latest_global_step(model_dir)
    train_hooks = [ImageSummaryHook(model_dir, c.save_summary_steps),
                   *hooks]
    if stop is not None:
      train_hooks.append(_StopHook(stop))
    progress = None
    if on_progress and t not in done:
      progress = ProgressHook(
          t, c.max_iterations, steps, c.batch_size, on_progress,
          every_secs=progress_secs,
          overhead=sum(overheads) / len(overheads) if overheads else None)
      train_hooks.append(progress)
    grow = t and t not in done and _checkpoint_iteration(model_dir) < t
    if grow:
      status(f"iteration {t + 1}/{c.max_iterations}: selecting the best "
             f"candidate of iteration {t} and growing the graph")
    try:
      if grow and first_step >= t * steps:
        # What the training call would do first, without its rebuilding
        # and reopening the finished iteration's training graph.
        compat.prepare_next_iteration(estimator, fns.train, train_hooks)
      estimator.train(fns.train, max_steps=(t + 1) * steps,
                      hooks=train_hooks)
    except SearchDiverged:
      ended, diverged = _diverged_message(c, t, generator, records), True
      break
    except SearchEnded as e:
      ended = str(e)
      break
    except tf.compat.v1.train.NanLossDuringTrainingError:
      # Only when every candidate's loss is NaN (see compat.py).
      ended, diverged = _diverged_message(c, t, generator, records), True
      break
    if stopping():
      step = latest_global_step(model_dir)
      if step < (t + 1) * steps:
        interrupted = (f"stopped at step {step - t * steps} of iteration "
                       f"{t + 1}; checkpoint saved")
        break
    if t in done:
      records.append(done[t])
      continue
    train_seconds = time.time() - start
    trained = (t + 1) * steps - max(first_step, t * steps)
    evaluator.last_values = []  # adanet skips it when one candidate remains
    status(f"iteration {t + 1}/{c.max_iterations}: evaluating the chosen "
           f"ensemble on {c.eval_split!r}")
    members = MemberAccuracyHook()
    try:
      metrics = compat.evaluate_locally(
          estimator, fns.eval, steps=c.eval_steps or None, name="test",
          hooks=[members])
    except SearchDiverged:  # the first iteration: nothing to fall back on
      evaluator.diverged = True
    if evaluator.diverged:  # it fell back on the previous ensemble, if any
      ended, diverged = _diverged_message(c, t, generator, records), True
      break
    record = _record(t, metrics, members.accuracies, generator, evaluator,
                     time.time() - start, records, cost, c)
    record.train_seconds = round(train_seconds, 1)
    record.steps_per_second = round(trained / max(train_seconds, 1e-9), 4)
    record.mixture_weights = _mixture_weights(
        model_dir, t, f"t{t}_{record.chosen}_grow_"
        f"{'learned' if c.learn_mixture_weights else 'uniform'}")
    records.append(record)
    if progress is not None and progress.training_seconds:
      overheads.append(max(0.0, record.seconds - progress.training_seconds))
    # The hooks hold tensors, and through them the whole training graph.
    train_hooks = progress = None
    memory.release_freed_memory()
    write_records(model_dir, records, ended)
    _summarize(writer, record)
    if on_iteration:
      on_iteration(records[-1])
    if stopping() and t + 1 < c.max_iterations:
      interrupted = f"stopped after iteration {t + 1}"
      break
  write_records(model_dir, records, ended)
  writer.close()
  if stopping() and export and records and not interrupted:
    interrupted = "stopped before the export"
  export_path = None
  if export and records and not interrupted:
    status(f"exporting the final ensemble to "
           f"{os.path.join(model_dir, 'export')}")
    export_path = export_saved_model(c, model_dir, estimator=estimator)
  del server
  return SearchResult(records=records, ended=ended, estimator=estimator,
                      export_path=export_path, diverged=diverged,
                      interrupted=interrupted)


class StopRequest:
  """Turns SIGINT (Ctrl-C) and SIGTERM into a clean stop while installed
  (`with StopRequest() as stop:`, main thread only).

  The first signal sets `signal`; training stops after the step in flight,
  tf.estimator's CheckpointSaverHook writes a checkpoint of that step, and
  `run_search` returns. A second signal raises KeyboardInterrupt at once.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signal: Optional[int] = None
    self._previous = {}

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:
      self.__exit__()
      raise KeyboardInterrupt
    self.signal = signum


class _StopHook(tf.compat.v1.train.SessionRunHook):
  """Ends the training session after the current step once a stop is
  requested; the session's end writes the checkpoint."""

  def __init__(self, stop: StopRequest):
    self._stop = stop

  def after_run(self, run_context, run_values):
    del run_values
    if self._stop.signal is not None:
      run_context.request_stop()


def _diverged_message(c, t: int, generator,
                      records: List[IterationRecord]) -> str:
  names = ", ".join(f"nasnet_{x.arch.slug}"
                    for x in generator.proposals.get(t, ([], []))[1])
  kept = (f"the ensemble of iteration {t} "
          f"({' + '.join(records[-1].ensemble_archs)}) is kept" if records
          else "there is no ensemble to keep")
  return (f"iteration {t + 1}: every candidate diverged ({names}: loss NaN or "
          f"inf); {kept}; lower --config.learning_rate (now "
          f"{c.learning_rate:g}) or --config.clip_gradients (now "
          f"{c.clip_gradients:g})")


def _checkpoint_iteration(model_dir: str) -> int:
  """The adanet iteration of the latest checkpoint (0 when none)."""
  if not tf.train.latest_checkpoint(model_dir):
    return 0
  return newest_iteration(
      tf.train.load_checkpoint(model_dir).get_variable_to_shape_map())


def _mixture_weights(model_dir: str, t: int, ensemble: str) -> List[float]:
  """The chosen ensemble's mixture weights, one per member, from the latest
  checkpoint."""
  reader = tf.train.load_checkpoint(model_dir)
  prefix = f"adanet/iteration_{t}/ensemble_{ensemble}/"
  names = [n for n in reader.get_variable_to_shape_map()
           if n.startswith(prefix) and n.endswith("logits/mixture_weight")]
  # weighted_subnetwork_0, _1, ...: sort by the member's index.
  names.sort(key=lambda n: int(n.split("weighted_subnetwork_")[1]
                               .split("/")[0]))
  return [round(float(reader.get_tensor(n)), 6) for n in names]


def _summarize(writer, r: "IterationRecord") -> None:
  """The chosen architecture (text) and per-iteration scalars, for
  TensorBoard, at the iteration's last global step."""
  rows = "\n".join(f"| {i} | {arch} | {w:.4f} |" for i, (arch, w) in
                   enumerate(zip(r.ensemble_archs, r.mixture_weights or
                                 [float("nan")] * len(r.ensemble_archs))))
  text = (f"**Iteration {r.iteration}**: chose {r.chosen} "
          f"({next(x.arch for x in r.candidates if x.name == r.chosen)}) of "
          f"{', '.join(x.arch for x in r.candidates)}; ensemble of "
          f"{r.ensemble_params:,} parameters, test accuracy "
          f"{r.test_accuracy:.4f}\n\n| member | architecture | mixture "
          f"weight |\n|---|---|---|\n{rows}")
  with writer.as_default(step=r.global_step):
    tf.summary.write(RECORD_TAG, json.dumps(dataclasses.asdict(r)),
                     metadata=summary_metadata())
    tf.summary.text("architecture", text)
    tf.summary.scalar("ensemble/test_accuracy", r.test_accuracy)
    tf.summary.scalar("ensemble/params", float(r.ensemble_params))
    tf.summary.scalar("iteration/steps_per_second", r.steps_per_second)
    tf.summary.scalar("iteration/seconds", r.seconds)
    if r.member_accuracies and r.member_accuracies[-1] is not None:
      tf.summary.scalar("member/own_test_accuracy", r.member_accuracies[-1])
    if r.ensemble_gain is not None:
      tf.summary.scalar("ensemble/gain_over_best_member", r.ensemble_gain)
  writer.flush()


def _record(t, metrics, own, generator, evaluator, seconds,
            previous: List[IterationRecord], cost, c) -> IterationRecord:
  """The record of iteration t from adanet's proposals, the selection losses,
  the test metrics and each tower's own test accuracy (`own`, by
  member_key); `cost(arch)` is the arch's TowerCost."""
  _, fitting = generator.proposals[t]
  offset = 1 if t else 0  # the previous ensemble comes first from t=1 on
  losses = list(evaluator.last_values)
  if len(losses) != offset + len(fitting):  # a lone candidate: not evaluated
    losses = [None] * (offset + len(fitting))

  def own_accuracy(iteration, name):
    value = own.get(member_key(iteration, name))
    return None if value is None else round(float(value), 6)

  candidates = []
  for i, x in enumerate(fitting):
    loss = losses[offset + i]
    diverged = loss is not None and not math.isfinite(loss)
    name = f"nasnet_{x.arch.slug}"
    candidates.append(CandidateRecord(
        name=name, arch=str(x.arch), reason=x.reason,
        params=x.params, selection_loss=None if diverged else loss,
        diverged=diverged, test_accuracy=own_accuracy(t, name),
        mult_adds=cost(x.arch).mult_adds))
  best = int(metrics[f"best_ensemble_index_{t}"]) - offset
  chosen = candidates[best]
  before = previous[-1] if previous else None
  members = (before.ensemble_archs if before else []) + [chosen.arch]
  params = (before.ensemble_params if before else 0) + chosen.params
  # Frozen members: measured again in this evaluation graph; the record of
  # their own iteration is the fallback.
  accuracies = [own_accuracy(r.iteration, r.chosen) for r in previous]
  if before and len(before.member_accuracies) == len(accuracies):
    accuracies = [a if a is not None else b
                  for a, b in zip(accuracies, before.member_accuracies)]
  accuracies.append(chosen.test_accuracy)
  accuracy = float(metrics["accuracy"])
  known = [a for a in accuracies if a is not None]
  trained = sum(3 * (cost(x.arch).mult_adds_with_aux if c.use_aux_head
                     else cost(x.arch).mult_adds) for x in fitting)
  frozen = sum(cost(arch).mult_adds for arch in members[:-1])
  return IterationRecord(
      iteration=t, candidates=candidates, chosen=chosen.name,
      ensemble_archs=members, ensemble_params=params,
      test_accuracy=accuracy,
      test_loss=float(metrics["average_loss"]),
      eval_metrics={k: round(float(v), 6) for k, v in metrics.items()
                    if k in ("accuracy", "average_loss", "loss")},
      global_step=int(metrics["global_step"]), seconds=round(seconds, 1),
      member_accuracies=accuracies,
      # (+ 0.0: a gain of "-0.0" is none)
      ensemble_gain=round(accuracy - max(known), 6) + 0.0 if known else None,
      train_mult_adds=(trained + frozen) * c.steps_per_iteration *
      c.batch_size)
