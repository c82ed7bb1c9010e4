"""Variables that a checkpoint always fills, created without an initializer.

Every tower the adanet engine builds for inference (each candidate in the
selection and test evaluations, a frozen member rebuilt inside the next
iteration's training graph, the export) takes all its values from a
checkpoint: its initializers never run. Yet a graph variable with a seeded
variance-scaling initializer costs about 13 operations and 4 ms of Python
to create, so most of building such a tower went into initializers.
Inside `restored_variables()` a variable is a handle and its read (two
operations, about 0.5 ms); its `initializer` is one shared no-op, so that
the Estimator's `global_variables_initializer()` still builds.

A session that initializes such a variable without restoring it leaves it
uninitialized, and the Estimator's ready check then names it: it cannot be
used with made-up values by mistake.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf
from tensorflow.python.ops import resource_variable_ops  # pylint: disable=g-direct-tensorflow-import

__all__ = ["RestoredVariable", "restored_variables"]

_NO_INITIALIZER = "improve_nas_restored_variables_no_initializer"


class RestoredVariable(resource_variable_ops.UninitializedVariable):
  """A graph resource variable without an initial value, for a checkpoint
  to fill; `initializer` is a no-op shared by every one in the graph."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    # Made with the variable, so that a GraphDef written afterwards (the
    # MetaGraphDef of a checkpoint or an export) holds it.
    self._no_initializer = _shared_no_op(self.handle.graph)

  @property
  def initializer(self):
    return self._no_initializer


def _shared_no_op(graph: tf.Graph) -> tf.Operation:
  shared = graph.get_collection(_NO_INITIALIZER)
  if not shared:
    with graph.as_default(), tf.compat.v1.name_scope(None), \
        tf.control_dependencies(None), tf.device(None):
      shared = [tf.no_op(name="restored_variables_no_initializer")]
    graph.add_to_collection(_NO_INITIALIZER, shared[0])
  return shared[0]


def _creator(next_creator, **kwargs):
  shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
  if (shape is None or dtype is None or kwargs.get("variable_def") or
      not callable(kwargs.get("initial_value"))):
    return next_creator(**kwargs)
  return RestoredVariable(
      trainable=kwargs.get("trainable"), name=kwargs.get("name"),
      shape=shape, dtype=dtype, constraint=kwargs.get("constraint"),
      synchronization=kwargs.get("synchronization"),
      aggregation=kwargs.get("aggregation"))


@contextlib.contextmanager
def restored_variables(enabled: bool = True):
  """Variables created inside the block in graph mode (with a known shape
  and dtype and a callable initial value, as Keras layers make them) are
  `RestoredVariable`s. Under a tf.distribute strategy, eagerly, or when not
  `enabled`, the block changes nothing."""
  if (not enabled or tf.executing_eagerly() or
      tf.distribute.has_strategy()):
    yield
    return
  with tf.compat.v1.variable_creator_scope(_creator):
    yield
