"""adanet 0.9.0 on TensorFlow 2.15: the import alias, and the patches the
adanet engine installs where it needs them.

Importing this module does one thing: it registers the module adanet 0.9.0
imports as ``tensorflow.python.training.tracking.graph_view`` (TF 2.11 moved
it to ``tensorflow.python.checkpoint.graph_view``) and then imports adanet,
with TF's deprecation notices off during that import (adanet's TF 1 heads
print a screenful). Engine modules import adanet from here:
``from improve_nas.compat import adanet``.

Everything else is installed explicitly by `AdaNasEstimator` (estimator.py)
when it is constructed, and only where it is needed:

* `nan_candidates_lose(iteration_builder)`, on that estimator's iteration
  builder: adanet picks the candidate with the smallest running loss in
  every step but turns NaN into -inf first, so one diverged candidate wins,
  its NaN becomes the Estimator's loss and NanTensorHook ends the search.
  Here NaN and +-inf count as +inf (adanet's own docstring's intent). An
  override with an `index_tensor(candidates)` method (one_pass.Plan)
  gives an index that the evaluation session sets.
* `install_lazy_report_store()`, process-wide: adanet's report store makes
  MODEL_DIR/report when it first writes a report, not when the Estimator
  is constructed.
* `install_subnetwork_context()`, process-wide: adanet's subnetwork context
  (which points tf.summary.* and get_global_step at the subnetwork being
  built) reaches the scoped summary through a handle released when the
  context ends: otherwise something inside TensorFlow kept adanet's summary
  wrapper, and through it every iteration's graph, alive (100-300 MB each
  for the demo).
* Under a distribution strategy only (a RunConfig with train_distribute):
  `install_replica_dispatchers()` replaces the global summary and step
  functions by per-thread dispatchers, so the replicas' threads stop
  overwriting each other's patches (adanet issue 87);
  `install_distributed_summary_op()` keeps the first replica's summary op
  where tf.estimator would keep none; `mirrored_step_counters(builder)`
  keeps adanet's step counters equal on every replica.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import types

import tensorflow as tf

__all__ = ["adanet", "install_alias", "nan_candidates_lose",
           "best_finite_index", "confusion_matrix_asserts_disabled",
           "install_lazy_report_store", "install_subnetwork_context",
           "install_replica_dispatchers",
           "install_distributed_summary_op", "mirrored_step_counters",
           "counters_on_first_replica"]

_OLD_GRAPH_VIEW = "tensorflow.python.training.tracking.graph_view"
_NEW_GRAPH_VIEW = "tensorflow.python.checkpoint.graph_view"


def install_alias() -> None:
  """Registers graph_view under its pre-2.11 name. Idempotent."""
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


def _import_adanet():
  from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  install_alias()
  printing = deprecation._PRINT_DEPRECATION_WARNINGS  # pylint: disable=protected-access
  deprecation._PRINT_DEPRECATION_WARNINGS = False  # pylint: disable=protected-access
  try:
    return importlib.import_module("adanet")
  finally:
    deprecation._PRINT_DEPRECATION_WARNINGS = printing  # pylint: disable=protected-access


adanet = _import_adanet()
# pylint: disable=g-import-not-at-top,g-bad-import-order
from adanet.core import ensemble_builder
from adanet.core import summary as adanet_summary
# pylint: enable=g-import-not-at-top,g-bad-import-order


def best_finite_index(losses: tf.Tensor) -> tf.Tensor:
  """Index of the smallest loss, NaN and +-inf counting as +inf."""
  losses = tf.where(tf.math.is_finite(losses), losses,
                    tf.fill(tf.shape(losses), float("inf")))
  return tf.argmin(losses, axis=0)


def confusion_matrix_asserts_disabled():
  """The context adanet's `evaluate` runs the Estimator's in (NaN
  predictions of a diverged candidate do not fail its metrics)."""
  from adanet.core import estimator as adanet_estimator  # pylint: disable=g-import-not-at-top
  return adanet_estimator._disable_asserts_for_confusion_matrix_at_thresholds()  # pylint: disable=protected-access


def nan_candidates_lose(iteration_builder) -> None:
  """Makes this adanet `_IterationBuilder` never pick a diverged candidate
  while another has a finite loss."""
  original = iteration_builder._best_candidate_index  # pylint: disable=protected-access

  def best_candidate_index(candidates, best_ensemble_index_override):
    # An index chosen in the session (one_pass.Plan).
    dynamic = getattr(best_ensemble_index_override, "index_tensor", None)
    if dynamic is not None:
      with tf.compat.v1.variable_scope("best_candidate_index"):
        return dynamic(candidates)
    if best_ensemble_index_override is not None or len(candidates) == 1:
      return original(candidates, best_ensemble_index_override)
    with tf.compat.v1.variable_scope("best_candidate_index"):
      return best_finite_index(tf.stack([c.adanet_loss for c in candidates]))

  iteration_builder._best_candidate_index = best_candidate_index  # pylint: disable=protected-access


class _SummaryHandle:
  """Stands in for an adanet summary while a subnetwork is built, and lets
  go of it when the context ends."""

  def __init__(self, summary):
    self._summary = summary

  def __getattr__(self, name):
    if self._summary is None:
      raise RuntimeError(
          f"adanet summary used after its graph was built ({name})")
    return getattr(self._summary, name)

  def release(self) -> None:
    self._summary = None


_ADANET_CONTEXT = ensemble_builder._monkey_patch_context  # pylint: disable=protected-access
_THREAD = threading.local()  # .patches: this thread's active subnetwork patches
_DISPATCHING = threading.Event()  # set once the dispatchers are installed
_INSTALL_LOCK = threading.Lock()


def _patch_stack() -> list:
  if not hasattr(_THREAD, "patches"):
    _THREAD.patches = []
  return _THREAD.patches


@contextlib.contextmanager
def _released_context(iteration_step_scope, scoped_summary, trainable_vars):
  """adanet's own context, on a handle released at the end."""
  handle = _SummaryHandle(scoped_summary)
  try:
    with _ADANET_CONTEXT(iteration_step_scope, handle, trainable_vars):
      yield
  finally:
    handle.release()


def _first_replica() -> bool:
  context = tf.distribute.get_replica_context()
  replica = getattr(context, "_replica_id_in_sync_group", 0)
  return not isinstance(replica, int) or replica == 0


@contextlib.contextmanager
def _per_thread_context(iteration_step_scope, scoped_summary, trainable_vars):
  """The context for a replica's thread: the patch goes on this thread's
  stack, which the dispatchers consult; the trainable-variables collection
  is set and restored by the first replica only (the others reuse its
  variables, and our Builder and Ensembler take theirs from their layers)."""

  def iteration_step(graph=None):
    graph = graph or tf.compat.v1.get_default_graph()
    with graph.as_default() as g, g.name_scope(None):
      with tf.compat.v1.variable_scope(iteration_step_scope,
                                       reuse=tf.compat.v1.AUTO_REUSE):
        return tf.compat.v1.get_variable(
            "iteration_step", shape=[], dtype=tf.int64, trainable=False,
            initializer=tf.compat.v1.zeros_initializer())

  handle = _SummaryHandle(scoped_summary)
  owner = _first_replica()
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


@contextlib.contextmanager
def subnetwork_context(iteration_step_scope, scoped_summary, trainable_vars):
  """What replaces adanet's `_monkey_patch_context`."""
  if _DISPATCHING.is_set() and tf.distribute.has_strategy():
    context = _per_thread_context
  else:
    context = _released_context
  with context(iteration_step_scope, scoped_summary, trainable_vars):
    yield


def install_lazy_report_store() -> None:
  """adanet's Estimator makes MODEL_DIR/report when it is constructed, for
  the reports of a report materializer (a search has none). Its store now
  makes that directory when it first writes a report instead, so building
  a search writes nothing: removing the directory again raced the other
  processes of a cluster, which start on one model_dir at the same moment
  (one removed what another had just found). Process-wide; idempotent."""
  from adanet.core import estimator as adanet_estimator  # pylint: disable=g-import-not-at-top
  from adanet.core import report_accessor  # pylint: disable=g-import-not-at-top
  original = report_accessor._ReportAccessor  # pylint: disable=protected-access
  if adanet_estimator._ReportAccessor is not original:  # pylint: disable=protected-access
    return  # installed already

  class LazyReportAccessor(original):

    def __init__(self, report_dir, filename="iteration_reports.json"):  # pylint: disable=super-init-not-called
      self._report_dir = report_dir
      self._full_filepath = os.path.join(report_dir, filename)

    def write_iteration_report(self, iteration_number, materialized_reports):
      tf.io.gfile.makedirs(self._report_dir)
      super().write_iteration_report(iteration_number, materialized_reports)

  adanet_estimator._ReportAccessor = LazyReportAccessor  # pylint: disable=protected-access


def install_subnetwork_context() -> None:
  """Points adanet at `subnetwork_context`. Idempotent."""
  ensemble_builder._monkey_patch_context = subnetwork_context  # pylint: disable=protected-access


def _summary_and_step_targets():
  """(module, attribute, name of the _SummaryWrapper method or "step") of
  every global adanet's subnetwork context patches (adanet 0.9.0,
  ensemble_builder._monkey_patch_context and summary.monkey_patched_summaries)."""
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


def install_replica_dispatchers() -> None:
  """Replaces the global summary and step functions adanet patches by
  dispatchers that consult the current thread's patches and otherwise call
  the original. Under MirroredStrategy each replica builds the model in a
  thread of its own and the threads take turns at every merge_call, which
  the optimizer makes inside adanet's context: with adanet's global swaps
  one replica's restore left another's patch installed. Idempotent; call
  it from the main thread before training."""
  with _INSTALL_LOCK:
    if _DISPATCHING.is_set():
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
    _DISPATCHING.set()


def install_distributed_summary_op() -> None:
  """tf.estimator's distributed training groups the replicas' summary ops
  into one no-output op (`_combine_distributed_scaffold`), so its
  SummarySaverHook receives None and fails ("'NoneType' object has no
  attribute 'value'"). The first replica's summary op is kept instead: its
  summaries are the ones TensorBoard shows. Idempotent."""
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


def counters_on_first_replica(next_creator, **kwargs):
  """A variable creator: integer non-trainable variables (adanet's step
  counters) get aggregation ONLY_FIRST_REPLICA, as tf.estimator gives its
  global step, so the first replica's increment applies to every copy."""
  dtype = kwargs.get("dtype")
  if (not kwargs.get("trainable", True) and dtype is not None and
      tf.as_dtype(dtype).base_dtype.is_integer):
    kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
  return next_creator(**kwargs)


def mirrored_step_counters(iteration_builder) -> None:
  """adanet's step counters (one int64 `step` per subnetwork and ensemble,
  and the iteration step) are incremented with `assign_add` in each
  replica's train op; as plain variables their copies drifted apart under
  MirroredStrategy (measured: 4 of 1,246 variables unequal after an
  iteration) while they drive the learning-rate schedule and drop path.
  This builder creates them with `counters_on_first_replica` under a
  strategy."""
  original = iteration_builder.build_iteration

  def build_iteration(*args, **kwargs):
    if not tf.distribute.has_strategy():
      return original(*args, **kwargs)
    with tf.variable_creator_scope(counters_on_first_replica):
      return original(*args, **kwargs)

  iteration_builder.build_iteration = build_iteration
