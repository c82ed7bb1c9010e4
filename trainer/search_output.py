"""What improve-nas prints around a search, whichever engine runs it: the
line of each finished iteration, one line for a failure, and the table at
the end."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from typing import Callable

from improve_nas.errors import ConfigError

# What a full disk (or a quota, or a file-size limit) looks like to a writer.
_STORAGE_ERRORS = {errno.ENOSPC: "no space left on device",
                   errno.EDQUOT: "disk quota exceeded",
                   errno.EFBIG: "file too large"}


def storage_failure(error: "Exception | str") -> "str | None":
  """The reason if `error` (or a message) says the disk is full, else None."""
  if isinstance(error, OSError) and error.errno in _STORAGE_ERRORS:
    return _STORAGE_ERRORS[error.errno]
  text = str(error).lower()
  return next((reason for reason in _STORAGE_ERRORS.values()
               if reason in text), None)


def loaded_config(flags_, fail: Callable[[str], None]):
  """The --config the flags hold, or one line (`fail`) when its file did not
  load."""
  try:
    c = flags_.config
    c.get("dataset")  # A config file that failed to load raises here.
  except (OSError, AttributeError) as e:
    reason = [l.strip() for l in str(e).splitlines() if l.strip()][-1]
    fail(f"--config could not be loaded: {reason}; pass a shipped config "
         "(demo, paper:DATASET,ROW) or a config file such as "
         "my_configs/search.py")
  return c


def saved_search_config(model_dir: str, engine: str):
  """--export_only: the config the search in `model_dir` was started with.

  Raises:
    ConfigError: no search there, or one of the other engine.
  """
  # pylint: disable=g-import-not-at-top
  import ml_collections
  from improve_nas import config as config_lib
  from improve_nas import model_dir as model_dir_lib
  from improve_nas import records
  # pylint: enable=g-import-not-at-top
  fields, damaged = (model_dir_lib.saved_config(model_dir)
                     if os.path.isdir(model_dir) else (None, None))
  if fields is None:
    raise ConfigError(f"--model_dir={model_dir!r} holds no "
                      f"{records.CONFIG_FILE}; --export_only needs the "
                      "model_dir of a search")
  records.check_engine(model_dir, engine)
  if damaged:
    print(f"improve-nas: {damaged}", flush=True)
  saved = config_lib.base_config()
  saved.update(ml_collections.ConfigDict(fields))
  return saved


def wants_mirrored(flags_) -> bool:
  """Whether --distribution asks for MirroredStrategy, with --cpu_devices
  checked.

  Raises:
    ConfigError: --cpu_devices below 0, or given without mirrored.
  """
  if flags_.cpu_devices < 0:
    raise ConfigError(f"--cpu_devices={flags_.cpu_devices}: must be >= 0 "
                      "(0: the GPUs)")
  if flags_.distribution != "mirrored" and flags_.cpu_devices:
    raise ConfigError(f"--cpu_devices={flags_.cpu_devices} needs "
                      "--distribution=mirrored")
  return flags_.distribution == "mirrored"


def iteration_line(r, iterations: int) -> str:
  """'  iteration 2/3: chose nasnet_1x96 of 1; ensemble test accuracy ...'"""
  own = ("" if r.ensemble_gain is None else
         f", {r.ensemble_gain:+.4f} over its best member")
  return (f"  iteration {r.iteration + 1}/{iterations}: chose {r.chosen} of "
          f"{len(r.candidates)}; ensemble test accuracy "
          f"{r.test_accuracy:.4f}{own} ({r.seconds:.0f}s, "
          f"{r.steps_per_second:.2f} steps/s)")


@contextlib.contextmanager
def search_errors(fail: Callable[[str], None], model_dir: str):
  """Turns what can go wrong in a running search into one line: a bad
  config or model_dir (`fail`, exit 2), a full disk (exit 2), a second
  Ctrl-C (exit 130)."""
  try:
    yield
  except ConfigError as e:
    fail(str(e))
  except KeyboardInterrupt:  # a second Ctrl-C: no clean stop
    print("improve-nas: interrupted; the last checkpoint is kept: run the "
          "same command to resume", file=sys.stderr)
    sys.exit(130)
  except Exception as e:  # pylint: disable=broad-except
    # TensorFlow reports a failed write as OpError, OSError or even
    # IndexError (its event writer); the message says why.
    reason = storage_failure(e)
    if reason is None:
      raise
    fail(f"could not write to --model_dir={model_dir} ({reason}); free "
         "space there and run the same command to resume from the last "
         "checkpoint, which is intact")


def finish(result, stop, start: float, model_dir: str) -> None:
  """After a search: where it was interrupted (exit 128 + signal), or the
  table, the total time, the SavedModel, and a failure (exit 1)."""
  # pylint: disable=g-import-not-at-top
  from improve_nas import report
  from improve_nas.records import RECORDS_FILE
  # pylint: enable=g-import-not-at-top
  if result.interrupted:
    print(f"improve-nas: {result.interrupted}; run the same command to "
          "resume", file=sys.stderr, flush=True)
    sys.exit(128 + stop.signal)
  print()
  print(report.format_table(result.records, result.ended))
  print(f"\ntotal {time.time() - start:.0f}s; records in "
        f"{os.path.join(model_dir, RECORDS_FILE)}")
  if result.export_path:
    print(f"SavedModel: {result.export_path}")
  if result.diverged:  # not bad input: the run itself failed
    print(f"improve-nas: {result.ended}", file=sys.stderr, flush=True)
    sys.exit(1)
