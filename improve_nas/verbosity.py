"""How much TensorFlow and adanet say: the commands keep it to errors."""

from __future__ import annotations

import logging

__all__ = ["set_tf_verbosity"]


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
  from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
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
