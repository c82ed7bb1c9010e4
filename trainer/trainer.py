"""improve-nas: run (or resume) an AdaNAS search from the command line.

With no flags it runs the offline demo search on the embedded digits dataset:

    improve-nas                       # = python -m trainer.trainer
    improve-nas --config=improve_nas/configs/demo.py \
        --config.max_iterations=2 --model_dir=runs/mine

Bad flags or config values print one line and exit with status 2.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import improve_nas
from trainer import cli
from improve_nas.errors import ConfigError

_DEMO_CONFIG = os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                            "demo.py")

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "runs/demo",
                    "Where checkpoints, summaries and search.json go. An "
                    "existing search there with the same config is resumed.")
flags.DEFINE_bool("overwrite", False,
                  "Delete model_dir first (after the config is validated).")


def _fail(message: str) -> None:
  cli.fail("improve-nas", message)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value")
  # pylint: disable=g-import-not-at-top
  from improve_nas import config as config_lib
  from improve_nas import report
  from improve_nas import search
  import tensorflow_datasets as tfds
  # pylint: enable=g-import-not-at-top
  verbose = FLAGS.verbosity >= 1
  improve_nas.compat.set_tf_verbosity(verbose)
  if not verbose:  # adanet logs through absl at INFO.
    logging.set_verbosity(logging.WARNING)
  tfds.disable_progress_bar()
  try:
    c = FLAGS.config
    c.get("dataset")  # A config file that failed to load raises here.
  except (OSError, AttributeError) as e:
    reason = [l.strip() for l in str(e).splitlines() if l.strip()][-1]
    _fail(f"--config could not be loaded: {reason}; pass a config file such "
          "as improve_nas/configs/demo.py")
  model_dir = FLAGS.model_dir
  try:
    config_lib.validate(c)
    if not model_dir:
      raise ConfigError("--model_dir is empty: give a directory for the run")
    print(f"improve-nas: {c.generator} search on {c.dataset}, up to "
          f"{c.max_iterations} iterations of {c.steps_per_iteration} steps, "
          f"model_dir={model_dir}", flush=True)
    start = time.time()

    def progress(r):
      print(f"  iteration {r.iteration}: chose {r.chosen} of "
            f"{len(r.candidates)}; ensemble test accuracy "
            f"{r.test_accuracy:.4f} ({r.seconds:.0f}s)", flush=True)

    result = search.run_search(c, model_dir, on_iteration=progress,
                               overwrite=FLAGS.overwrite)
  except ConfigError as e:
    _fail(str(e))
  print()
  print(report.format_table(result.records, result.ended))
  print(f"\ntotal {time.time() - start:.0f}s; records in "
        f"{os.path.join(model_dir, search.RECORDS_FILE)}")


def _define_config_flag():
  # ml_collections reads the config file and its --config.FIELD overrides
  # from sys.argv as soon as the flag is defined.
  try:
    config_flags.DEFINE_config_file(
        "config", _DEMO_CONFIG, "An ml_collections config file, e.g. "
        "improve_nas/configs/demo.py; override fields with "
        "--config.FIELD=VALUE.", lock_config=True)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError,
          OSError) as e:
    text = str(e).splitlines()[0] if str(e) else repr(e)
    _fail(f"bad --config or --config.FIELD override: {text} (the fields are "
          "those of improve_nas/config.py:base_config)")


def run():
  """Console-script entry point (improve-nas)."""
  _define_config_flag()
  app.run(main, flags_parser=cli.flags_parser("improve-nas"))


if __name__ == "__main__":
  run()
