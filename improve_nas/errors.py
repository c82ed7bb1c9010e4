"""The small error hierarchy of improve_nas."""

from __future__ import annotations

__all__ = ["ImproveNasError", "ConfigError", "SearchEnded", "SearchDiverged"]


class ImproveNasError(Exception):
  """Base class of every error improve_nas raises on purpose."""


class ConfigError(ImproveNasError, ValueError):
  """A fatal configuration error: a bad value the user must fix.

  The message is one line that names the bad value and says how to fix it.
  """


class SearchEnded(ImproveNasError):
  """The search cannot grow further (e.g. no candidate fits the budget).

  Raised by a generator when the estimator asks for the next iteration's
  candidates. Every finished iteration is already in the model_dir, so the
  ensemble found so far stays usable.
  """


class SearchDiverged(SearchEnded):
  """Every candidate of an iteration diverged (loss NaN or infinite).

  The iterations before it are kept; their ensemble stays usable.
  """
