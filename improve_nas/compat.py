"""Every shim needed to run adanet 0.9.0 on TensorFlow 2.15, and nowhere else.

Importing :mod:`improve_nas` imports this module first, before adanet is used.

Shims:
  * adanet 0.9.0 imports ``tensorflow.python.training.tracking.graph_view``
    (inside ``adanet.core.estimator``); TF 2.11 moved that module to
    ``tensorflow.python.checkpoint.graph_view``. We register the new module
    under the old name.
  * TF's deprecation warnings from adanet's TF 1 code paths are silenced unless
    the caller asks for them (:func:`set_tf_verbosity`).
  * A diverged candidate must lose, not win. adanet 0.9.0 picks the candidate
    ensemble with the smallest moving-average loss in every step, but turns a
    NaN loss into -inf first (iteration.py, `_best_candidate_index`), so one
    diverged candidate becomes "best", its NaN loss becomes the Estimator's
    loss and tf.estimator's NanTensorHook ends the whole search with
    NanLossDuringTrainingError. Its own docstring says NaN candidates should
    not be selected; we make it so (NaN and +-inf count as +inf). When every
    candidate has diverged the loss is still NaN and training still stops.
  * adanet's subnetwork context patches module globals, which breaks under
    tf.distribute replicas and kept every iteration's graph alive (see
    `_subnetwork_context_per_thread`); tf.estimator's distributed training
    loses the summary op (`_distributed_summary_op`), and adanet's step
    counters drift apart between replicas (`_mirrored_step_counters`).
  * adanet evaluates the candidates of a finished iteration for selection
    twice when the iteration is evaluated before the next one starts;
    `share_candidate_evaluation` makes the second time reuse the first.
  * adanet's `train` rebuilds a finished iteration's training graph before
    its bookkeeping; `prepare_next_iteration` does the bookkeeping without.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
import types

__all__ = ["install", "set_tf_verbosity", "evaluate_locally",
           "share_candidate_evaluation", "prepare_next_iteration"]

_OLD_GRAPH_VIEW = "tensorflow.python.training.tracking.graph_view"
_NEW_GRAPH_VIEW = "tensorflow.python.checkpoint.graph_view"


def install() -> None:
  """Installs the shims. Idempotent."""
  if _OLD_GRAPH_VIEW not in sys.modules:
    sys.modules[_OLD_GRAPH_VIEW] = importlib.import_module(_NEW_GRAPH_VIEW)
    # `from tensorflow.python.training.tracking import graph_view` needs the
    # (removed) package as well: register an empty one holding the module.
    package = _OLD_GRAPH_VIEW.rsplit(".", 1)[0]
    if package not in sys.modules:
      module = types.ModuleType(package)
      module.__path__ = []  # Marks it as a package.
      sys.modules[package] = module
    sys.modules[package].graph_view = sys.modules[_OLD_GRAPH_VIEW]


def _nan_candidates_lose() -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from adanet.core import iteration  # pylint: disable=g-import-not-at-top
  builder = iteration._IterationBuilder  # pylint: disable=protected-access
  if getattr(builder, "_improve_nas_patched", False):
    return
  original = builder._best_candidate_index  # pylint: disable=protected-access

  def best_candidate_index(self, candidates, best_ensemble_index_override):
    if best_ensemble_index_override is not None or len(candidates) == 1:
      return original(self, candidates, best_ensemble_index_override)
    with tf.compat.v1.variable_scope("best_candidate_index"):
      losses = tf.stack([c.adanet_loss for c in candidates])
      losses = tf.where(tf.math.is_finite(losses), losses,
                        tf.fill(tf.shape(losses), float("inf")))
      return tf.argmin(losses, axis=0)

  builder._best_candidate_index = best_candidate_index  # pylint: disable=protected-access
  builder._improve_nas_patched = True  # pylint: disable=protected-access


class _SummaryHandle:
  """Stands in for an adanet summary while adanet's summary functions are
  patched to it, and lets go of it when the patch ends (see below)."""

  def __init__(self, summary):
    self._summary = summary

  def __getattr__(self, name):
    if self._summary is None:
      raise RuntimeError(
          f"adanet summary used after its graph was built ({name})")
    return getattr(self._summary, name)

  def release(self) -> None:
    self._summary = None


_THREAD = threading.local()  # .patches: this thread's active subnetwork patches


def _patch_stack() -> list:
  if not hasattr(_THREAD, "patches"):
    _THREAD.patches = []
  return _THREAD.patches


def _summary_and_step_targets():
  """(module, attribute, name of the _SummaryWrapper method or "step") of
  every global adanet's subnetwork context patches (adanet 0.9.0,
  ensemble_builder._monkey_patch_context and summary.monkey_patched_summaries)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-direct-tensorflow-import,g-import-not-at-top
  from tensorflow.python.ops import summary_ops_v2
  from tensorflow.python.summary import summary as summary_lib
  from tensorflow.python.training import training
  from tensorflow.python.training import training_util
  # pylint: enable=g-direct-tensorflow-import,g-import-not-at-top
  kinds = ("scalar", "image", "histogram", "audio")
  targets = [(m, k, k) for m in (tf.compat.v1.summary, summary_lib)
             for k in kinds]
  targets += [(m, k, k + "_v3") for m in (tf.compat.v2.summary, tf.summary)
              for k in kinds]
  targets += [(summary_ops_v2, k, k + "_v2") for k in kinds]
  targets += [(m, k, "step") for m in (tf.compat.v1.train, tf.train, training,
                                       training_util)
              for k in ("get_global_step", "get_or_create_global_step")
              if hasattr(m, k)]
  return targets


def _subnetwork_context_per_thread() -> None:
  """Makes adanet's subnetwork context safe for tf.distribute replicas, and
  lets each iteration's graph be freed.

  While a subnetwork or its train op is built, adanet 0.9.0 points the
  module-global tf.summary.* and get_global_step functions at the
  subnetwork's scoped summary and iteration step, and sets the graph's
  trainable-variables collection to the subnetwork's, restoring all of it
  after (its docstring: "not thread-safe"). Under MirroredStrategy each
  replica builds the model in its own thread, and the threads take turns at
  every cross-replica merge_call, which the optimizer makes inside that
  context: the replicas' patches interleave, one replica's restore leaves
  another's patch installed, and summaries and steps go to the wrong
  subnetwork (adanet issue 87: tf.distribute is unsupported).

  Here the globals are replaced once by dispatchers that consult a stack of
  the current thread's patches, falling back to the original functions; the
  trainable collection is set and restored by the first replica only (the
  others reuse its variables, and adanet's diff of the collection then finds
  none for them: our Builder and Ensembler take their variables from their
  own layers). Outside any strategy this is adanet's behaviour.

  The scoped summary is reached through a handle released when the context
  ends: something inside TensorFlow kept adanet's summary wrapper alive past
  the restore, and through it the whole graph of every iteration (100-300
  MB each for the demo).
  """
  from adanet.core import ensemble_builder  # pylint: disable=g-import-not-at-top
  from adanet.core import summary as adanet_summary  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if getattr(ensemble_builder, "_improve_nas_patched", False):
    return

  for module, attribute, method in _summary_and_step_targets():
    original = getattr(module, attribute)

    def dispatch(*args, _original=original, _method=method, **kwargs):
      patches = _patch_stack()
      if not patches:
        return _original(*args, **kwargs)
      step_fn, wrapper = patches[-1]
      if _method == "step":
        return step_fn(*args, **kwargs)
      return getattr(wrapper, _method)(*args, **kwargs)

    setattr(module, attribute, dispatch)

  def first_replica() -> bool:
    context = tf.distribute.get_replica_context()
    replica = getattr(context, "_replica_id_in_sync_group", 0)
    return not isinstance(replica, int) or replica == 0

  @contextlib.contextmanager
  def subnetwork_context(iteration_step_scope, scoped_summary,
                         trainable_vars):
    def iteration_step(graph=None):
      graph = graph or tf.compat.v1.get_default_graph()
      with graph.as_default() as g, g.name_scope(None):
        with tf.compat.v1.variable_scope(iteration_step_scope,
                                         reuse=tf.compat.v1.AUTO_REUSE):
          return tf.compat.v1.get_variable(
              "iteration_step", shape=[], dtype=tf.int64, trainable=False,
              initializer=tf.compat.v1.zeros_initializer())

    handle = _SummaryHandle(scoped_summary)
    owner = first_replica()
    if owner:
      old_trainable = tf.compat.v1.trainable_variables()
      ensemble_builder._set_trainable_variables(trainable_vars)  # pylint: disable=protected-access
    _patch_stack().append(
        (iteration_step, adanet_summary._SummaryWrapper(handle)))  # pylint: disable=protected-access
    try:
      yield
    finally:
      _patch_stack().pop()
      handle.release()
      if owner:
        new = ensemble_builder._get_current_vars(  # pylint: disable=protected-access
            diffbase={"trainable": trainable_vars})["trainable"]
        ensemble_builder._set_trainable_variables(old_trainable + new)  # pylint: disable=protected-access

  ensemble_builder._monkey_patch_context = subnetwork_context  # pylint: disable=protected-access
  ensemble_builder._improve_nas_patched = True  # pylint: disable=protected-access


def _distributed_summary_op() -> None:
  """tf.estimator's distributed training groups the replicas' summary ops
  into one no-output op (`_combine_distributed_scaffold`), so its
  SummarySaverHook receives None and fails ("'NoneType' object has no
  attribute 'value'"). The first replica's summary op is kept instead: its
  summaries are the ones TensorBoard shows."""
  from tensorflow_estimator.python.estimator import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  original = estimator_lib._combine_distributed_scaffold  # pylint: disable=protected-access
  if getattr(original, "_improve_nas_patched", False):
    return

  def combine(grouped_scaffold, distribution):
    scaffold = original(grouped_scaffold, distribution)
    ops = [s.summary_op for s in
           distribution.experimental_local_results(grouped_scaffold)
           if s.summary_op is not None]
    if ops:
      scaffold._summary_op = ops[0]  # pylint: disable=protected-access
    return scaffold

  combine._improve_nas_patched = True  # pylint: disable=protected-access
  estimator_lib._combine_distributed_scaffold = combine  # pylint: disable=protected-access


def _mirrored_step_counters() -> None:
  """adanet's step counters (one int64 `step` per subnetwork and ensemble,
  and the iteration step) are incremented with `assign_add` in each
  replica's train op; created as plain variables, their copies drifted apart
  under MirroredStrategy (measured: 4 of 1,246 variables unequal after an
  iteration) while they drive the learning-rate schedule and drop path.
  Under a strategy, adanet's iteration builder now creates non-trainable
  integer variables with aggregation ONLY_FIRST_REPLICA, as tf.estimator
  does for the global step: the first replica's increment is applied to
  every copy. Without a strategy nothing changes."""
  from adanet.core import iteration  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  builder = iteration._IterationBuilder  # pylint: disable=protected-access
  original = builder.build_iteration
  if getattr(original, "_improve_nas_patched", False):
    return

  def counters_first_replica(next_creator, **kwargs):
    dtype = kwargs.get("dtype")
    if (not kwargs.get("trainable", True) and dtype is not None and
        tf.as_dtype(dtype).base_dtype.is_integer):
      kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    return next_creator(**kwargs)

  def build_iteration(self, *args, **kwargs):
    if not tf.distribute.has_strategy():
      return original(self, *args, **kwargs)
    with tf.variable_creator_scope(counters_first_replica):
      return original(self, *args, **kwargs)

  build_iteration._improve_nas_patched = True  # pylint: disable=protected-access
  builder.build_iteration = build_iteration


def share_candidate_evaluation(estimator) -> None:
  """Makes `estimator` (an adanet.Estimator) evaluate the candidates of a
  checkpoint for selection once, not twice.

  adanet 0.9.0 runs its candidate evaluation phase (build the iteration's
  whole graph in EVAL mode, run every candidate ensemble over the
  Evaluator's input, pick the best) in `evaluate`, to know which ensemble
  to evaluate, and again in the next `train` call's bookkeeping, to select
  the member to keep, both on the same last checkpoint of the iteration.
  A search that evaluates each finished iteration (as `run_search` does)
  paid for it twice. Here the phase's result for a (input_fn, checkpoint)
  pair is kept, with the best architecture it would have written, and the
  later call only writes that file. The Evaluator's input is the same
  unshuffled split both times, so the selection is the same.
  """
  run_phase = estimator._execute_candidate_evaluation_phase  # pylint: disable=protected-access
  save_architecture = estimator._save_architecture  # pylint: disable=protected-access
  last = {}  # (input_fn, checkpoint_path) -> (best index, architecture files)

  def phase(evaluator_input_fn, export_best_architecture, checkpoint_path,
            hooks):
    key = (evaluator_input_fn, checkpoint_path)
    if key not in last:
      exports = []
      estimator._save_architecture = lambda *args: exports.append(args)  # pylint: disable=protected-access
      try:
        index = run_phase(evaluator_input_fn, export_best_architecture=True,
                          checkpoint_path=checkpoint_path, hooks=hooks)
      finally:
        del estimator._save_architecture  # the class's method again
      last.clear()
      last[key] = (index, exports)
    index, exports = last[key]
    if export_best_architecture:
      for args in exports:
        save_architecture(*args)
    return index

  estimator._execute_candidate_evaluation_phase = phase  # pylint: disable=protected-access


def prepare_next_iteration(estimator, input_fn, hooks) -> None:
  """adanet's bookkeeping between iterations, on the chief: selects the
  best candidate of the finished iteration in the latest checkpoint and
  grows the graph and the checkpoint to the next iteration.

  adanet 0.9.0's `train` does this only after building the finished
  iteration's training graph once more and opening a session on it, which
  stops before its first step (the iteration is over): a whole graph build
  of every member and candidate for nothing. Called first, the next `train`
  call starts with the new iteration. Same placement handling as adanet's
  own call.
  """
  if not estimator.config.is_chief:
    return
  from adanet.distributed.devices import monkey_patch_default_variable_placement_strategy  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  checkpoint = tf.train.latest_checkpoint(estimator.model_dir)
  iteration = estimator._checkpoint_iteration_number(checkpoint)  # pylint: disable=protected-access
  with monkey_patch_default_variable_placement_strategy(), \
      estimator._force_replication_strategy():  # pylint: disable=protected-access
    estimator._execute_bookkeeping_phase(  # pylint: disable=protected-access
        input_fn, iteration, train_hooks=list(hooks),
        checkpoint_path=checkpoint)


def evaluate_locally(estimator, *args, **kwargs):
  """`estimator.evaluate(*args, **kwargs)` in a local session on any task.

  With adanet's RoundRobinStrategy every candidate's variables are pinned to
  a parameter server (/job:ps/task:k), also in the evaluation graph, but
  tf.estimator evaluates in a local session, which has no such device
  ("Cannot assign a device ... /job:ps/task:0"). adanet 0.9.0 switches to
  replication placement for its own bookkeeping and for exports
  (`_force_replication_strategy`), not for `evaluate`; we do the same.
  """
  with estimator._force_replication_strategy():  # pylint: disable=protected-access
    return estimator.evaluate(*args, **kwargs)


class _DropNotices(logging.Filter):
  """Drops log records holding any of `notices`."""

  def __init__(self, *notices: str):
    super().__init__()
    self._notices = notices

  def filter(self, record):
    message = record.getMessage()
    return not any(notice in message for notice in self._notices)


# tf.estimator's NanTensorHook logs "Model diverged with loss = NaN." at
# ERROR before it raises; improve_nas reports that itself, in one line.
_DIVERGED_FILTER = _DropNotices("Model diverged with loss")
# adanet warns (through absl) on every Estimator built with a placement
# strategy that the argument is experimental; config.placement chose it.
_PLACEMENT_FILTER = _DropNotices("experimental_placement_strategy is an "
                                 "experimental feature")


def set_tf_verbosity(verbose: bool) -> None:
  """Turns TensorFlow's and adanet's INFO/deprecation logging on or off."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top
  deprecation._PRINT_DEPRECATION_WARNINGS = verbose  # pylint: disable=protected-access
  tf.get_logger().setLevel(logging.INFO if verbose else logging.ERROR)
  absl_logger = logging.getLogger("absl")
  if verbose:
    tf.get_logger().removeFilter(_DIVERGED_FILTER)
    absl_logger.removeFilter(_PLACEMENT_FILTER)
  else:
    tf.get_logger().addFilter(_DIVERGED_FILTER)
    absl_logger.addFilter(_PLACEMENT_FILTER)
  tf.compat.v1.logging.set_verbosity(
      tf.compat.v1.logging.INFO if verbose else tf.compat.v1.logging.ERROR)


def _quiet_deprecations() -> None:
  # adanet's import alone triggers TF deprecation notices (its TF 1 heads);
  # they are noise for users and break one-line error output on stderr.
  from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top
  deprecation._PRINT_DEPRECATION_WARNINGS = False  # pylint: disable=protected-access


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
install()
_quiet_deprecations()
_nan_candidates_lose()
_subnetwork_context_per_thread()
_distributed_summary_op()
_mirrored_step_counters()
