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


def resolve_argv(argv: Sequence[str]) -> List[str]:
  """argv with the value of `--config` (`--config=V` or `--config V`)
  resolved; `--config.FIELD=...` overrides are left alone."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg in ("--config", "-config") and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
    elif arg.startswith(("--config=", "-config=")):
      flag, _, value = arg.partition("=")
      out[i] = f"{flag}={resolve(value)}"
  return out
