"""absl command-line entry points of improve_nas.

Importing this package checks that the dependencies a `pip install` of the
wheel does not bring are there, so that a command run without them prints
the one line that fixes it (exit status 2) instead of an import traceback.
"""

import importlib.util
import os
import sys

# (module, what to install). adanet 0.9.0 must come without its own
# dependencies: it pins absl-py<1.0 and protobuf<4, which TensorFlow 2.15
# cannot use.
_NEEDED = (
    ("tensorflow", "pip install 'improve_nas[cpu]' (or [gpu])"),
    ("adanet", "pip install --no-deps adanet==0.9.0"),
)


def _adanet_wanted() -> bool:
  """adanet is the default engine's, and installs on Python 3.11 only; the
  Keras engine (--engine=keras, Python 3.12 and 3.13) needs none."""
  return sys.version_info < (3, 12) and "--engine=keras" not in sys.argv


def _check_installed() -> None:
  for module, fix in _NEEDED:
    if module == "adanet" and not _adanet_wanted():
      continue
    if importlib.util.find_spec(module) is None:
      prog = os.path.basename(sys.argv[0]) if sys.argv else "improve_nas"
      print(f"{prog}: error: {module} is not installed in {sys.prefix}; "
            f"run: {fix}", file=sys.stderr)
      sys.exit(2)


def _import_tensorflow_quietly() -> None:
  """Imports TensorFlow with the process's stderr closed. TensorFlow 2.21
  (the Keras engine's) announces its oneDNN kernels on stderr as it loads,
  whatever TF_CPP_MIN_LOG_LEVEL says, and a command's one-line error would
  come with three lines more. An import that fails still raises, with its
  traceback, once stderr is back."""
  import improve_nas  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (its log level first)
  stderr = sys.stderr.fileno()
  saved = os.dup(stderr)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, stderr)
  try:
    import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  finally:
    os.dup2(saved, stderr)
    os.close(saved)
    os.close(devnull)


_check_installed()
if sys.version_info >= (3, 12):
  _import_tensorflow_quietly()
