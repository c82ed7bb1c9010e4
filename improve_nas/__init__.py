"""improve_nas: AdaNAS, ensembles of NASNet-A towers grown with AdaNet.

Importing the package loads nothing heavy: the algorithm modules (config,
nasnet, proposals, distillation, records, report, ...) import neither adanet
nor tf.estimator, and the adanet engine is loaded when first used:

    import improve_nas
    search = improve_nas.build_search(config, model_dir)
    result = improve_nas.run_search(search)
    estimator = improve_nas.make_estimator(config, model_dir=model_dir)
"""

import os

# TensorFlow's C++ INFO lines, before anything loads TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
