"""improve_nas: AdaNAS, ensembles of NASNet-A towers grown with AdaNet.

Importing the package loads nothing heavy: the algorithm modules (config,
nasnet, proposals, distillation, records, report, ...) import neither adanet
nor tf.estimator, and the adanet engine is loaded when first used:

    import improve_nas
    search = improve_nas.build_search(config, model_dir)
    result = improve_nas.run_search(search)
    estimator = improve_nas.make_estimator(config, model_dir=model_dir)
"""

import importlib.metadata
import os

# TensorFlow's C++ INFO lines, before anything loads TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tensorflow_version() -> tuple:
  for name in ("tensorflow-cpu", "tensorflow"):
    try:
      return tuple(int(x) for x in
                   importlib.metadata.version(name).split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
      continue
  return ()


# TensorFlow 2.21 (the Keras engine's) announces its oneDNN kernels on
# stderr whatever TF_CPP_MIN_LOG_LEVEL says, so a one-line error would come
# with two more; without them its towers trained as fast or faster (52 and
# 59 steps/s of a 1@96 tower at 8x8, 2 cores). TensorFlow 2.15 (the adanet
# engine's) keeps its default, and its recorded figures.
if _tensorflow_version() >= (2, 16):
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"

__all__ = ["make_estimator", "build_search", "run_search", "__version__"]

_ENGINE = {"make_estimator": "improve_nas.estimator",
           "build_search": "improve_nas.search",
           "run_search": "improve_nas.search"}


def __getattr__(name):
  if name in _ENGINE:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_ENGINE[name]), name)
  raise AttributeError(f"module 'improve_nas' has no attribute {name!r}")
