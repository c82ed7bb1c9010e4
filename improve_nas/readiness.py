"""A session's readiness checks, built once per graph instead of twice.

Before a MonitoredSession runs a graph it asks which variables are still
uninitialized: all of them after initialization (`ready_op`), the global
ones before the local initializer runs (`ready_for_local_init_op`). A
worker of a cluster polls the same checks until the chief has initialized
the shared variables. TensorFlow's Scaffold builds each check with a new
VarIsInitializedOp per variable, although every variable created with an
initializer already holds one. In the adanet engine's graphs those checks
are two of the about seven operations each variable costs, and graphs are
built at every boundary between iterations (bench/README.md,
iteration_costs.py).

`ReadinessHook` here gives a session both checks built from one flag per
variable: the variable's own where it has one, a new one otherwise
(variables without an initializer, such as restored_variables.py's). The
checks report the same names in the same order as TensorFlow's.
"""

from __future__ import annotations

from typing import Tuple

import tensorflow as tf
from tensorflow.python.ops import resources  # pylint: disable=g-direct-tensorflow-import

__all__ = ["ReadinessHook", "readiness_reports"]


class ReadinessHook(tf.compat.v1.train.SessionRunHook):
  """Puts checks from `readiness_reports` in the graph's READY_OP and
  READY_FOR_LOCAL_INIT_OP collections when the session's hooks begin, after
  the Estimator has created every variable and before its Scaffold builds
  its own checks, which it then takes from there. A graph that has checks
  in those collections already keeps them."""

  def begin(self):
    keys = tf.compat.v1.GraphKeys
    if (tf.compat.v1.get_collection(keys.READY_OP) or
        tf.compat.v1.get_collection(keys.READY_FOR_LOCAL_INIT_OP)):
      return
    ready, ready_for_local = readiness_reports()
    tf.compat.v1.add_to_collection(keys.READY_OP, ready)
    tf.compat.v1.add_to_collection(keys.READY_FOR_LOCAL_INIT_OP,
                                   ready_for_local)


def _initialized(variable) -> tf.Tensor:
  flag = getattr(variable, "_is_initialized_op", None)
  if flag is not None:
    return flag
  return tf.compat.v1.is_variable_initialized(variable)


def readiness_reports() -> Tuple[tf.Tensor, tf.Tensor]:
  """(names of the uninitialized variables, global and local; names of the
  uninitialized global variables), each followed by the uninitialized
  shared resources, as tf.compat.v1.train.Scaffold's defaults report them,
  from one flag per variable of the default graph."""
  global_variables = tf.compat.v1.global_variables()
  every = global_variables + tf.compat.v1.local_variables()
  with tf.name_scope("report_uninitialized_variables"):
    with tf.device("/cpu:0"):  # where TensorFlow's own checks run
      if every:
        missing = tf.logical_not(tf.stack([_initialized(v) for v in every]))
        names = tf.constant([v.op.name for v in every])
        count = len(global_variables)
        ready = tf.boolean_mask(names, missing)
        ready_for_local = tf.boolean_mask(names[:count], missing[:count])
      else:
        ready = ready_for_local = tf.constant([], dtype=tf.string)
  return (
      tf.concat([ready, resources.report_uninitialized_resources()], 0),
      tf.concat([ready_for_local, resources.report_uninitialized_resources(
          resources.shared_resources())], 0))
