"""The config files shipped with the package, addressable by name.

`improve-nas --config=demo` and `--config=paper:cifar10,w_akd` name the files
of this folder (`demo.py`, `paper.py`); any other value is a path to an
ml_collections config file (`--config=my_configs/search.py:ARG`).
"""

from __future__ import annotations

import os
from typing import List, Sequence

__all__ = ["NAMES", "path", "resolve", "resolve_argv"]

NAMES = ("demo", "paper")
_HERE = os.path.dirname(os.path.abspath(__file__))


def path(name: str) -> str:
  """The file of the shipped config `name` (one of NAMES)."""
  if name not in NAMES:
    raise ValueError(f"no shipped config {name!r}; the names are "
                     f"{', '.join(NAMES)}")
  return os.path.join(_HERE, f"{name}.py")


def resolve(value: str) -> str:
  """`NAME[:ARG]` of a shipped config becomes `FILE[:ARG]`; anything else
  (a path, or a name that is not shipped) comes back as it was."""
  name, sep, arg = value.partition(":")
  if name in NAMES and not os.path.exists(name):
    return path(name) + sep + arg
  return value


def _override_field(arg: str):
  """FIELD of a `--config.FIELD=VALUE` (or `-config.FIELD VALUE`) argument,
  else None."""
  for prefix in ("--config.", "-config."):
    if arg.startswith(prefix):
      return arg[len(prefix):].partition("=")[0]
  return None


def resolve_argv(argv: Sequence[str]) -> List[str]:
  """argv with the value of `--config` (`--config=V` or `--config V`)
  resolved, and each `--config.FIELD` override given once: when a field is
  overridden twice the last one wins (absl's rule for repeated flags, which
  ml_collections would refuse as a flag "defined twice")."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg in ("--config", "-config") and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
    elif arg.startswith(("--config=", "-config=")):
      flag, _, value = arg.partition("=")
      out[i] = f"{flag}={resolve(value)}"
  # Overrides as (start, length) spans: `--config.F=V`, or `--config.F V`.
  spans, i = {}, 1
  while i < len(out):
    field = _override_field(out[i])
    if field is None:
      i += 1
      continue
    alone = ("=" in out[i] or i + 1 == len(out) or
             out[i + 1].startswith("-"))
    length = 1 if alone else 2
    spans.setdefault(field, []).append((i, length))
    i += length
  dropped = {j for occurrences in spans.values()
             for start, length in occurrences[:-1]
             for j in range(start, start + length)}
  return [arg for j, arg in enumerate(out) if j not in dropped]
