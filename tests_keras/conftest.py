"""Shared pytest setup of the Keras engine's tests (Python 3.12 / 3.13,
TensorFlow 2.21, Keras 3): quiet TensorFlow, the package on sys.path,
`--runslow`, and one search run from the command line for the module."""

import importlib.util
import os
import pathlib
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

_ROOT = str(pathlib.Path(__file__).absolute().parent.parent)
if importlib.util.find_spec("improve_nas") is None and _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

# Sets TensorFlow's environment (improve_nas/__init__.py) before the tests
# load TensorFlow, as the command line does.
import improve_nas  # noqa: E402,F401  pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.join(_ROOT, "tests"))  # the helpers both suites share
import killable  # noqa: E402  pylint: disable=g-import-not-at-top


def pytest_addoption(parser):
  killable.add_slow_option(parser)


def pytest_configure(config):
  killable.register_slow_marker(config)


def pytest_collection_modifyitems(config, items):
  killable.skip_slow_unless_asked(config, items)
  killable.longest_modules_first(items, [
      "test_keras_search.py", "test_keras_refusals.py",
      "test_keras_mirrored.py", "test_keras_towers.py"])
