"""What every improve_nas command shares: one-line errors with exit code 2."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from absl import flags


def fail(prog: str, message: str) -> NoReturn:
  """Prints `prog: error: message` on stderr and exits with status 2."""
  print(f"{prog}: error: {message}", file=sys.stderr)
  sys.exit(2)


def flags_parser(prog: str) -> Callable:
  """An absl `flags_parser` that turns any flag or config-file error into one
  line and exit status 2 instead of a usage dump or a traceback."""

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      fail(prog, f"{str(e).splitlines()[0]} (see --helpfull)")
    except (ValueError, TypeError, OSError, KeyError) as e:
      fail(prog, f"bad flag value: {str(e).splitlines()[0] if str(e) else e!r}")

  return parse
