"""A model_dir found damaged: what can be checked, recovered or refused.

* Checkpoints: `ensure_intact_checkpoint` reads every tensor of the newest
  checkpoint; when its files are damaged or missing it moves them to
  MODEL_DIR/damaged/ and points the checkpoint state at the newest intact
  one (and says so). A checkpoint state file (`checkpoint`) that does not
  parse, which TensorFlow would silently ignore and so start the search
  over, is rebuilt from the checkpoints on disk. With no intact checkpoint
  left it refuses, changing nothing.
* Records: each finished iteration's record, and the config of each start,
  are also written to the TensorBoard run MODEL_DIR/search as summaries of
  their own plugin (TensorBoard does not show them). When search.json or
  config.json is damaged, `recovered_records` and `recovered_config` read
  them back from there.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from typing import Dict, List, Optional, Tuple

from google.protobuf import text_format
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
# (the CheckpointState proto is not in TensorFlow's public API)
from tensorflow.python.training import checkpoint_state_pb2  # pylint: disable=g-direct-tensorflow-import

from improve_nas.config import upgrade_saved
from improve_nas.errors import ConfigError
from improve_nas.records import (RECORDS_FILE, DamagedFile,
                                 IterationRecord, load_saved_config,
                                 load_search)

__all__ = ["RECORD_TAG", "CONFIG_TAG", "DAMAGED_DIR", "SUMMARY_DIR",
           "summary_metadata", "recovered_records", "recovered_config",
           "saved_config", "saved_records", "ensure_intact_checkpoint",
           "checkpoint_damage", "newest_iteration", "checkpoint_iteration",
           "latest_global_step", "global_step_of"]

RECORD_TAG = "improve_nas/record"   # one IterationRecord as JSON
CONFIG_TAG = "improve_nas/config"   # the config of a start, as JSON
PLUGIN = "improve_nas_records"
DAMAGED_DIR = "damaged"             # where damaged checkpoint files go
STATE_FILE = "checkpoint"
SUMMARY_DIR = "search"   # TensorBoard run with the per-iteration summaries


def summary_metadata() -> summary_pb2.SummaryMetadata:
  """Metadata of the record summaries: a plugin TensorBoard does not show."""
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=PLUGIN))


def _saved_texts(summary_dir: str, tag: str) -> List[Tuple[int, str]]:
  """(step, text) of every `tag` summary in the event files of summary_dir,
  in the order written. A file cut short gives what precedes the cut."""
  found = []
  for path in sorted(glob.glob(os.path.join(summary_dir, "events.out.*"))):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.tag == tag and value.tensor.string_val:
            found.append((event.step, value.tensor.string_val[0].decode()))
    except (tf.errors.OpError, OSError, ValueError):
      continue  # a damaged or unreadable file: keep what was read
  return found


def recovered_records(summary_dir: str,
                      max_step: Optional[int] = None
                      ) -> Optional[List[IterationRecord]]:
  """The iteration records saved as summaries in `summary_dir` (the latest
  of each iteration; those after `max_step` dropped), or None when it holds
  none."""
  records: Dict[int, IterationRecord] = {}
  for _, text in _saved_texts(summary_dir, RECORD_TAG):
    try:
      record = IterationRecord.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError):
      continue
    if max_step is None or record.global_step <= max_step:
      records[record.iteration] = record
  if not records:
    return None
  # Only an unbroken run of iterations from 0 makes a search's records.
  out = []
  while len(out) in records:
    out.append(records[len(out)])
  return out or None


def recovered_config(summary_dir: str) -> Optional[dict]:
  """The config of the latest start saved in `summary_dir`, or None."""
  for _, text in reversed(_saved_texts(summary_dir, CONFIG_TAG)):
    try:
      value = json.loads(text)
    except ValueError:
      continue
    if isinstance(value, dict):
      return value
  return None


def checkpoint_damage(prefix: str) -> Optional[str]:
  """Why the checkpoint `prefix` cannot be restored (reading every tensor),
  or None when it is intact."""
  if not tf.io.gfile.exists(prefix + ".index"):
    return "its .index file is missing"
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except Exception as e:  # pylint: disable=broad-except
    # DataLossError, IndexError ("Read less bytes than requested"), ...
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) < 160 else text[:157] + "..."
  return None


def _checkpoint_list(model_dir: str) -> Tuple[List[str], Optional[str]]:
  """Checkpoint prefixes newest first, from the state file; from the .index
  files on disk (by time) when the state file is missing or does not
  parse, with why."""
  state_path = os.path.join(model_dir, STATE_FILE)
  problem = None
  if os.path.exists(state_path):
    try:
      with open(state_path) as f:
        state = checkpoint_state_pb2.CheckpointState()
        text_format.Parse(f.read(), state)
      listed = [p if os.path.isabs(p) else os.path.join(model_dir, p)
                for p in state.all_model_checkpoint_paths]
      newest = state.model_checkpoint_path
      if newest:
        newest = newest if os.path.isabs(newest) else os.path.join(
            model_dir, newest)
        listed = [p for p in listed if p != newest] + [newest]
      if listed:
        return list(reversed(listed)), None
      problem = "it lists no checkpoint"
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
      problem = " ".join(str(e).split())[:120]
  on_disk = [p[:-len(".index")] for p in
             glob.glob(os.path.join(model_dir, "*.ckpt-*.index"))]
  on_disk.sort(key=lambda p: os.path.getmtime(p + ".index"), reverse=True)
  if problem is None and not on_disk:
    return [], None
  return on_disk, problem or "it is missing"


def _move_aside(model_dir: str, prefix: str) -> None:
  target = os.path.join(model_dir, DAMAGED_DIR)
  os.makedirs(target, exist_ok=True)
  for path in glob.glob(glob.escape(prefix) + ".*"):
    os.replace(path, os.path.join(target, os.path.basename(path)))


def newest_iteration(variable_names) -> int:
  """The newest adanet iteration among variable names ("adanet/iteration_3/
  ..."), 0 when there is none: the iteration a graph or checkpoint is for."""
  return max((int(m.group(1)) for name in variable_names
              for m in [re.match(r"adanet/iteration_(\d+)/", name)] if m),
             default=0)


# The variable adanet keeps a checkpoint's iteration in.
ITERATION_VARIABLE = "current_iteration"


def _iteration_of(reader) -> int:
  """The iteration a checkpoint starts or continues: adanet's own record of
  it, or else the newest its variables belong to. (The checkpoint that
  starts an iteration, increment.ckpt-N, holds none of its variables yet.)"""
  names = reader.get_variable_to_shape_map()
  if ITERATION_VARIABLE in names:
    return int(reader.get_tensor(ITERATION_VARIABLE))
  return newest_iteration(names)


def checkpoint_iteration(model_dir: str) -> int:
  """The adanet iteration of the latest checkpoint (0 when none)."""
  if not tf.train.latest_checkpoint(model_dir):
    return 0
  return _iteration_of(tf.train.load_checkpoint(model_dir))


def latest_global_step(model_dir: Optional[str]) -> int:
  """The global step of the latest checkpoint in `model_dir` (0 if none)."""
  path = tf.train.latest_checkpoint(model_dir) if model_dir else None
  if not path:
    return 0
  # Not the number in its name: increment.ckpt-N, which starts iteration N,
  # is named after the iteration.
  return global_step_of(tf.train.load_checkpoint(path))


def global_step_of(reader) -> int:
  """The global step a checkpoint holds: adanet's variable, or the Keras
  engine's tf.train.Checkpoint attribute."""
  for key in ("global_step", "global_step/.ATTRIBUTES/VARIABLE_VALUE"):
    if reader.has_tensor(key):
      return int(reader.get_tensor(key))
  return 0


def _set_aside_later_state(model_dir: str, iteration: int) -> List[str]:
  """adanet's files about iterations `iteration` and later: which candidates
  finished training (train_manager/tN) and the grown architectures
  (architecture-N.json). They describe training the checkpoint resumed
  does not have, so they go to MODEL_DIR/damaged/stale/."""
  stale = os.path.join(model_dir, DAMAGED_DIR, "stale")
  moved = []
  for path in (glob.glob(os.path.join(model_dir, "train_manager", "t*")) +
               glob.glob(os.path.join(model_dir, "architecture-*.json"))):
    m = re.search(r"(?:/t|architecture-)(\d+)(?:\.json)?$", path)
    if m and int(m.group(1)) >= iteration:
      target = os.path.join(stale, os.path.relpath(path, model_dir))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      if os.path.exists(target):
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
      os.replace(path, target)
      moved.append(os.path.relpath(path, model_dir))
  return moved


def ensure_intact_checkpoint(model_dir: str,
                             steps_per_iteration: Optional[int] = None
                             ) -> Tuple[Optional[int], List[str]]:
  """Makes the newest intact checkpoint of `model_dir` the one to resume.

  Returns (its global step, or None without checkpoints; lines saying
  what was skipped or rebuilt). Local model_dirs only; others are left
  to TensorFlow. With `steps_per_iteration`, falling back to a checkpoint
  before the end of its iteration also sets aside adanet's record of that
  iteration's finished training, so that it is trained again.

  Raises:
    ConfigError: there are checkpoints, and none is intact (nothing is
      changed).
  """
  if "://" in model_dir or not os.path.isdir(model_dir):
    return None, []
  prefixes, state_problem = _checkpoint_list(model_dir)
  skipped = []
  for prefix in prefixes:
    damage = checkpoint_damage(prefix)
    if damage is None:
      break
    skipped.append((prefix, damage))
  else:
    if skipped:
      listing = "; ".join(f"{os.path.basename(p)}: {why}"
                          for p, why in skipped)
      raise ConfigError(
          f"--model_dir={model_dir!r} holds no intact checkpoint ({listing})"
          "; nothing was changed: restore the checkpoint files from a copy, "
          "or start over with --overwrite")
    return None, []
  notes = []
  good = prefixes[len(skipped)]
  for prefix, damage in skipped:
    _move_aside(model_dir, prefix)
    notes.append(f"skipped checkpoint {os.path.basename(prefix)} ({damage});"
                 f" its files are now in {os.path.join(model_dir, DAMAGED_DIR)}")
  if skipped or state_problem:
    state_path = os.path.join(model_dir, STATE_FILE)
    if state_problem and os.path.exists(state_path):
      os.makedirs(os.path.join(model_dir, DAMAGED_DIR), exist_ok=True)
      os.replace(state_path, os.path.join(model_dir, DAMAGED_DIR, STATE_FILE))
    older = [os.path.basename(p) for p in reversed(prefixes[len(skipped):])]
    tf.compat.v1.train.update_checkpoint_state(
        model_dir, os.path.basename(good), all_model_checkpoint_paths=older)
    if state_problem:
      notes.append(f"the checkpoint state file {state_path} was unusable "
                   f"({state_problem}); rebuilt it from the checkpoints on "
                   "disk")
    notes.append(f"resuming from {os.path.basename(good)}, the newest intact "
                 "checkpoint")
  reader = tf.train.load_checkpoint(good)
  step = global_step_of(reader)
  if skipped and steps_per_iteration:
    iteration = _iteration_of(reader)
    if step < (iteration + 1) * steps_per_iteration:
      moved = _set_aside_later_state(model_dir, iteration)
      if moved:
        notes.append(f"set aside adanet's state of iteration {iteration + 1} "
                     f"and later ({', '.join(sorted(moved))}), which that "
                     "checkpoint does not have")
  return step, notes


def saved_config(model_dir: str) -> Tuple[Optional[dict], Optional[str]]:
  """(the config.json of `model_dir` or None, a line when it was damaged
  and its copy in the TensorBoard run 'search' is used instead).

  Raises:
    DamagedFile: it is unreadable, or damaged with no copy to fall back on.
  """
  try:
    fields = load_saved_config(model_dir)
    return (None if fields is None else upgrade_saved(fields)), None
  except DamagedFile as e:
    copy = None if e.unreadable else recovered_config(
        os.path.join(model_dir, SUMMARY_DIR))
    if copy is None and e.unreadable:
      raise
    if copy is None:
      raise ConfigError(
          f"{e.path} is damaged ({e.reason}) and the TensorBoard run "
          f"'{SUMMARY_DIR}' holds no copy of it; restore it from a copy, or "
          "start over with --overwrite") from None
    return upgrade_saved(copy), (f"{e.path} was damaged ({e.reason}); using its copy from "
                  f"the TensorBoard run '{SUMMARY_DIR}'")


def saved_records(model_dir: str, checkpoint_step: Optional[int],
                  finished_iterations: int
                  ) -> Tuple[List[IterationRecord], Optional[str]]:
  """(the records of the search in `model_dir` that its checkpoint covers,
  a line when search.json was damaged or missing and they were rebuilt).

  `finished_iterations`: how many iterations the checkpoint has behind it;
  their records cannot be made again, so they must be there or be rebuilt.
  A damaged search.json is kept as search.json.damaged.

  Raises:
    DamagedFile: search.json is unreadable.
    ConfigError: records of finished iterations are lost for good.
  """
  path = os.path.join(model_dir, RECORDS_FILE)
  problem = None
  try:
    saved = load_search(model_dir)
    records = saved["records"] if saved else []
    if saved is None and finished_iterations:
      problem = "is missing"
  except DamagedFile as e:
    if e.unreadable:
      raise
    records, problem = [], f"was damaged ({e.reason})"
  if checkpoint_step is None and records:
    raise ConfigError(
        f"{path} records {len(records)} finished iteration(s), but "
        f"{model_dir!r} holds no checkpoint to resume them from; restore the "
        "checkpoint files from a copy, or start over with --overwrite")
  covered = [r for r in records
             if checkpoint_step is None or r.global_step <= checkpoint_step]
  if problem is None:
    return covered, None
  rebuilt = recovered_records(os.path.join(model_dir, SUMMARY_DIR),
                              checkpoint_step) or []
  if len(rebuilt) < finished_iterations:
    raise ConfigError(
        f"{path} {problem}, and the records of its {finished_iterations} "
        f"finished iteration(s) cannot be rebuilt (the TensorBoard run "
        f"'{SUMMARY_DIR}' holds {len(rebuilt)}); restore {RECORDS_FILE} "
        "from a copy, or start over with --overwrite")
  if os.path.exists(path):
    os.replace(path, path + ".damaged")
    problem += f"; kept as {RECORDS_FILE}.damaged"
  return rebuilt, (f"{path} {problem}; rebuilt the records of "
                   f"{len(rebuilt)} iteration(s) from the TensorBoard run "
                   f"'{SUMMARY_DIR}'")
