"""improve-nas --engine=keras: the search on the Keras 3 engine, with the
command line's flags, progress lines, table, exit codes and one-line
errors."""

from __future__ import annotations

import time
from typing import Callable

from absl import logging

from improve_nas.errors import ConfigError
from trainer import search_output


def main(flags_, fail: Callable[[str], None]) -> None:
  """Runs the search `flags_` ask for on the Keras engine. `fail` prints a
  one-line error and exits 2."""
  # pylint: disable=g-import-not-at-top
  from improve_nas import progress_line
  from improve_nas import stopping
  from improve_nas.keras_engine import search
  from improve_nas.verbosity import set_tf_verbosity
  import tensorflow_datasets as tfds
  # pylint: enable=g-import-not-at-top
  set_tf_verbosity(flags_.verbosity >= 1)
  if flags_.verbosity < 1:
    logging.set_verbosity(logging.WARNING)
  tfds.disable_progress_bar()
  model_dir = flags_.model_dir
  c = search_output.loaded_config(flags_, fail)
  notice = lambda line: print(f"improve-nas: {line}", flush=True)
  try:
    if not model_dir:
      raise ConfigError("--model_dir is empty: give a directory for the run")
    strategy = _strategy(flags_)
    if flags_.export_only:
      saved = search_output.saved_search_config(model_dir, "keras")
      print(f"SavedModel: "
            f"{search.export_only(saved, model_dir, on_notice=notice)}")
      return
    if flags_.progress_secs < 0:
      raise ConfigError(f"--progress_secs={flags_.progress_secs}: must be "
                        ">= 0 (0 turns progress lines off)")
    start = time.time()
    shown = flags_.progress_secs > 0

    prepared = {}

    def header(c):
      prepared["config"] = c
      role = (f", mirrored over {strategy.num_replicas_in_sync} device(s)"
              if strategy else "")
      print(f"improve-nas: {c.generator} search on {c.dataset}, up to "
            f"{c.max_iterations} iterations of {c.steps_per_iteration} "
            f"steps, model_dir={model_dir}, keras engine{role}", flush=True)

    def iteration_done(r):
      print(search_output.iteration_line(r, prepared["config"].max_iterations),
            flush=True)

    with search_output.search_errors(fail, model_dir), \
        stopping.StopRequest() as stop:
      result = search.run_search(
          c, model_dir, overwrite=flags_.overwrite,
          on_iteration=iteration_done,
          on_progress=(lambda p: print(progress_line.format_progress(p),
                                       flush=True)) if shown else None,
          progress_secs=flags_.progress_secs, export=flags_.export,
          stop=stop, on_start=header,
          on_status=(lambda line: print(f"  {line}", flush=True))
          if shown else None,
          on_notice=notice, strategy=strategy)
  except ConfigError as e:
    fail(str(e))
  search_output.finish(result, stop, start, model_dir)


def _strategy(flags_):
  """The MirroredStrategy --distribution asks for (None: one device)."""
  # pylint: disable=g-import-not-at-top
  from improve_nas import mirrored
  from improve_nas.keras_engine import runtime
  # pylint: enable=g-import-not-at-top
  if not search_output.wants_mirrored(flags_):
    return None
  runtime.configure()  # before the devices are set up
  return mirrored.strategy(flags_.cpu_devices)
