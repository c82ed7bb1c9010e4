"""improve_nas: AdaNAS, ensembles of NASNet-A towers grown with AdaNet."""

# The TF 2.15 / adanet 0.9.0 shims must be in place before adanet is used.
from improve_nas import compat  # pylint: disable=unused-import

__version__ = "0.1.0"

from improve_nas.estimator import make_estimator  # pylint: disable=g-import-not-at-top

__all__ = ["make_estimator", "__version__"]
