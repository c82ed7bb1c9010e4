"""Shared pytest setup: quiet TensorFlow, the package on sys.path, and `--runslow`."""

import importlib.util
import os
import pathlib
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

# Lets a plain `pytest` (not only `python -m pytest`) find the package when it
# is not installed. Where it is importable (pip install -e, or Bazel's
# runfiles on PYTHONPATH) that copy is the one tested.
_ROOT = str(pathlib.Path(__file__).absolute().parent.parent)
if importlib.util.find_spec("improve_nas") is None and _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

# (adanet itself is imported through improve_nas.compat, which installs
# the import alias it needs on TF 2.15.)
from improve_nas import threads  # noqa: E402  pylint: disable=g-import-not-at-top
from improve_nas.verbosity import set_tf_verbosity  # noqa: E402  pylint: disable=g-import-not-at-top

import killable  # noqa: E402  pylint: disable=g-import-not-at-top

set_tf_verbosity(False)
# The command line's threads (improve_nas/threads.py), for the searches the
# tests run in this process.
threads.configure()


def pytest_addoption(parser):
  killable.add_slow_option(parser)


def pytest_configure(config):
  killable.register_slow_marker(config)
  # adanet 0.9.0 compares versions with distutils' LooseVersion.
  config.addinivalue_line(
      "filterwarnings",
      "ignore:distutils Version classes are deprecated:DeprecationWarning")


# The modules that take longest (pytest --durations, summed per module).
LONGEST = ["test_monitoring.py", "test_resume.py", "test_search.py",
           "test_model_dir_faults.py", "test_compare.py", "test_compat.py",
           "test_paper_configs.py", "test_data.py", "test_one_pass.py",
           "test_faults.py"]


def pytest_collection_modifyitems(config, items):
  killable.skip_slow_unless_asked(config, items)
  killable.longest_modules_first(items, LONGEST)
