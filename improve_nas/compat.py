"""Every shim needed to run adanet 0.9.0 on TensorFlow 2.15, and nowhere else.

Importing :mod:`improve_nas` imports this module first, before adanet is used.

Shims:
  * adanet 0.9.0 imports ``tensorflow.python.training.tracking.graph_view``
    (inside ``adanet.core.estimator``); TF 2.11 moved that module to
    ``tensorflow.python.checkpoint.graph_view``. We register the new module
    under the old name.
  * TF's deprecation warnings from adanet's TF 1 code paths are silenced unless
    the caller asks for them (:func:`set_tf_verbosity`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types

__all__ = ["install", "set_tf_verbosity"]

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


def set_tf_verbosity(verbose: bool) -> None:
  """Turns TensorFlow's and adanet's INFO/deprecation logging on or off."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.util import deprecation  # pylint: disable=g-import-not-at-top
  deprecation._PRINT_DEPRECATION_WARNINGS = verbose  # pylint: disable=protected-access
  tf.get_logger().setLevel(logging.INFO if verbose else logging.ERROR)
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
