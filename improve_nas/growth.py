"""From one iteration to the next with one graph build instead of two, and
checkpoints and graphs written once.

adanet 0.9.0 grows the graph between iterations by building the next
iteration's whole training graph in a temporary model_dir, initialising it,
restoring the previous iteration's variables into it and saving that as
`increment.ckpt-N`; the next training call then builds the same graph again
and restores it. Here the growth writes `increment.ckpt-N` straight from the
finished iteration's checkpoint (every tensor copied, the iteration number
advanced; no graph), and the next training session, finding its new
candidates missing from that checkpoint, does what the temporary session
did, in the same order: it runs every initializer, then restores what the
checkpoint holds. The values a session starts from are the same as before.

The training sessions' checkpoint hook (`SaverHook`) writes the graph to
TensorBoard once per iteration and process (the stock hook writes a
GraphDef and a MetaGraphDef at every session start). `graphs_from_saver_hook_only` keeps
the summary writers TensorFlow and adanet open in a model_dir (training
summaries, each candidate's evaluation) from writing the graph again.
"""

from __future__ import annotations

import os
from typing import Optional, Set

import numpy as np
import tensorflow as tf
from tensorflow.python.training.saving import saveable_object_util  # pylint: disable=g-direct-tensorflow-import

from improve_nas.model_dir import ITERATION_VARIABLE

__all__ = ["INCREMENT_CHECKPOINT", "ITERATION_VARIABLE",
           "write_increment_checkpoint", "GrowingSaver", "growing_saver",
           "SaverHook", "graphs_from_saver_hook_only"]

# adanet's name for the checkpoint that starts an iteration.
INCREMENT_CHECKPOINT = "increment.ckpt"


def _remove_checkpoint(prefix: str) -> None:
  for path in tf.io.gfile.glob(prefix + ".*"):
    tf.io.gfile.remove(path)


def write_increment_checkpoint(model_dir: str, checkpoint_path: str,
                               next_iteration: int,
                               keep_max: Optional[int]) -> str:
  """Writes MODEL_DIR/increment.ckpt-`next_iteration`: every tensor of
  `checkpoint_path` with the iteration number set to `next_iteration`, and
  makes it the latest checkpoint (keeping at most `keep_max`, oldest
  removed first, as a Saver does). Returns its prefix."""
  reader = tf.train.load_checkpoint(checkpoint_path)
  dtypes = reader.get_variable_to_dtype_map()
  names = sorted(dtypes)
  tensors = []
  for name in names:
    value = reader.get_tensor(name)
    if name == ITERATION_VARIABLE:
      value = np.asarray(next_iteration, dtype=dtypes[name].as_numpy_dtype)
    tensors.append(tf.convert_to_tensor(value, dtype=dtypes[name]))
  prefix = os.path.join(model_dir, f"{INCREMENT_CHECKPOINT}-{next_iteration}")
  with tf.device("/cpu:0"):
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)
  state = tf.train.get_checkpoint_state(model_dir)
  paths = [p for p in (state.all_model_checkpoint_paths if state else [])
           if os.path.join(model_dir, p) != prefix and p != prefix]
  paths.append(prefix)
  while keep_max and len(paths) > keep_max:
    _remove_checkpoint(os.path.join(model_dir, paths.pop(0)))
  tf.compat.v1.train.update_checkpoint_state(
      model_dir, prefix, all_model_checkpoint_paths=paths)
  return prefix


class GrowingSaver(tf.compat.v1.train.Saver):
  """The Saver of a training graph whose latest checkpoint lacks some of
  its variables: the first iteration-`iteration` session after the growth.

  Restoring `checkpoint` runs every variable's initializer and then
  restores the variables the checkpoint holds; any other checkpoint is
  restored whole. Saves whole, like the Estimator's default Saver.
  """

  def __init__(self, present: dict, checkpoint: str, **kwargs):
    super().__init__(defer_build=True, **kwargs)
    self._checkpoint = os.path.abspath(checkpoint)
    # Built now: the variables it restores all exist.
    self._present = tf.compat.v1.train.Saver(var_list=present, sharded=True)
    self._initialize = None

  def build(self):
    super().build()
    if self._initialize is None:
      self._initialize = tf.group(
          tf.compat.v1.global_variables_initializer(),
          tf.compat.v1.local_variables_initializer())

  def restore(self, sess, save_path):
    if os.path.abspath(save_path) != self._checkpoint:
      return super().restore(sess, save_path)
    sess.run(self._initialize)
    self._present.restore(sess, save_path)
    return None


def growing_saver(checkpoint: Optional[str], iteration: int,
                  config: tf.estimator.RunConfig) -> Optional[GrowingSaver]:
  """A GrowingSaver for the training graph being built (in the default
  graph) when `checkpoint` is the increment checkpoint of `iteration` and
  lacks variables of that iteration only; else None (the stock restore,
  whose error names any other missing variable)."""
  if not checkpoint or os.path.basename(checkpoint) != (
      f"{INCREMENT_CHECKPOINT}-{iteration}"):
    return None
  saved: Set[str] = {name for name, _ in tf.train.list_variables(checkpoint)}
  graph = tf.compat.v1.get_default_graph()
  variables = saveable_object_util.op_list_to_dict(
      graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES) +
      graph.get_collection(tf.compat.v1.GraphKeys.SAVEABLE_OBJECTS))
  missing = [name for name in variables if name not in saved]
  scope = f"adanet/iteration_{iteration}/"
  if not missing or any(not name.startswith(scope) for name in missing):
    return None
  present = {name: v for name, v in variables.items() if name in saved}
  return GrowingSaver(present, checkpoint, sharded=True,
                      max_to_keep=config.keep_checkpoint_max,
                      keep_checkpoint_every_n_hours=(
                          config.keep_checkpoint_every_n_hours),
                      save_relative_paths=True)


class SaverHook(tf.compat.v1.train.CheckpointSaverHook):
  """The Estimator's CheckpointSaverHook, which writes the graph at session
  start only when `write_graph`, and then as a GraphDef alone (the stock
  hook adds a MetaGraphDef holding the same graph again)."""

  def __init__(self, *args, write_graph: bool, **kwargs):
    super().__init__(*args, **kwargs)
    self._write_graph = write_graph

  def after_create_session(self, session, coord):
    del coord
    global_step = session.run(self._global_step_tensor)
    if self._write_graph:
      self._summary_writer.add_graph(tf.compat.v1.get_default_graph())
    # As the stock hook: the state the session starts from (for the first
    # session of an iteration, the grown one) is a checkpoint.
    self._save(session, global_step)
    self._timer.update_last_triggered_step(global_step)


_GRAPHLESS_DIRS: Set[str] = set()


def _normalized(path: str) -> str:
  return path if "://" in path else os.path.abspath(path)


def graphs_from_saver_hook_only(model_dir: str) -> None:
  """Makes the writers of TensorFlow's FileWriterCache (what the
  Estimator's summary and evaluation hooks and adanet's per-candidate
  evaluation hooks write with) for directories in `model_dir` start
  without a graph: each would write the whole graph to its own events file
  when opened, once per directory and process. The graph reaches
  TensorBoard through SaverHook, once per iteration. Idempotent."""
  from tensorflow.python.summary.writer import writer_cache  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  cache = writer_cache.FileWriterCache
  if not _GRAPHLESS_DIRS:
    original = cache.get

    def get(logdir):
      path = _normalized(str(logdir))
      if not any(path == d or path.startswith(d + "/")
                 for d in _GRAPHLESS_DIRS):
        return original(logdir)
      with cache._lock:  # pylint: disable=protected-access
        if logdir not in cache._cache:  # pylint: disable=protected-access
          cache._cache[logdir] = tf.compat.v1.summary.FileWriter(  # pylint: disable=protected-access
              logdir, graph=None)
        return cache._cache[logdir]  # pylint: disable=protected-access

    cache.get = staticmethod(get)
  _GRAPHLESS_DIRS.add(_normalized(model_dir))
